"""The backup run state machine: one table, read by the API, the services and the tests.

``scheduled → running → uploaded → verified | failed | partially_failed``, plus ``failed``
from ``scheduled``/``running`` (could not start, killed, restic error) and ``missed`` from
``scheduled`` (its time passed while no scheduler claimed it: recorded, never dropped).
``uploaded`` means restic reported a snapshot; only the DR side's view (listed there and a
later ``restic check`` passed) makes it ``verified``.  ``partially_failed``: verified, but
restic could not read some source files (exit 3), so the point is incomplete.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from backup.errors import InvalidTransition


class RunState(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    UPLOADED = "uploaded"
    VERIFIED = "verified"
    FAILED = "failed"
    PARTIALLY_FAILED = "partially_failed"
    MISSED = "missed"


TRANSITIONS: Final[Mapping[RunState, frozenset[RunState]]] = {
    RunState.SCHEDULED: frozenset({RunState.RUNNING, RunState.FAILED, RunState.MISSED}),
    RunState.RUNNING: frozenset({RunState.UPLOADED, RunState.FAILED}),
    RunState.UPLOADED: frozenset({RunState.VERIFIED, RunState.FAILED, RunState.PARTIALLY_FAILED}),
    RunState.VERIFIED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.PARTIALLY_FAILED: frozenset(),
    RunState.MISSED: frozenset(),
}

TERMINAL: Final = frozenset(state for state, targets in TRANSITIONS.items() if not targets)


def transition(current: RunState | str, target: RunState | str) -> RunState:
    """Return ``target`` as a ``RunState`` if a run may go there from ``current``; else raise."""
    try:
        source, goal = RunState(current), RunState(target)
    except ValueError:
        raise InvalidTransition(str(current), str(target)) from None
    if goal not in TRANSITIONS[source]:
        raise InvalidTransition(source.value, goal.value)
    return goal


def is_terminal(state: RunState | str) -> bool:
    return RunState(state) in TERMINAL
