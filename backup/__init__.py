"""Pure DR logic for remote backup (远程灾备): schedules, retention, run states, RPO, feasibility.

No I/O, no clock, no framework: the control plane loads rows, calls a function here with
``now`` and writes back what it returns.  Standard library plus croniter only.
"""

from backup.errors import BackupError, InvalidInput, InvalidSchedule, InvalidTransition, RpoInfeasible
from backup.feasibility import Feasibility, assess_link, format_duration, require_feasible
from backup.retention import (
    KeepReason,
    Kept,
    RecoveryPoint,
    RetentionDecision,
    RetentionPolicy,
    apply_retention,
    newest_first,
)
from backup.rpo import RpoStatus, achieved_rpo, newest_verified, rpo_status
from backup.schedule import (
    SHANGHAI,
    DueRuns,
    Jitter,
    PlannedRun,
    due_runs,
    next_runs,
    no_jitter,
    seeded_jitter,
    validate,
)
from backup.states import TERMINAL, TRANSITIONS, RunState, is_terminal, transition

__all__ = [
    "SHANGHAI",
    "TERMINAL",
    "TRANSITIONS",
    "BackupError",
    "DueRuns",
    "Feasibility",
    "InvalidInput",
    "InvalidSchedule",
    "InvalidTransition",
    "Jitter",
    "KeepReason",
    "Kept",
    "PlannedRun",
    "RecoveryPoint",
    "RetentionDecision",
    "RetentionPolicy",
    "RpoInfeasible",
    "RpoStatus",
    "RunState",
    "achieved_rpo",
    "apply_retention",
    "assess_link",
    "due_runs",
    "format_duration",
    "is_terminal",
    "newest_first",
    "newest_verified",
    "next_runs",
    "no_jitter",
    "require_feasible",
    "rpo_status",
    "seeded_jitter",
    "transition",
    "validate",
]
