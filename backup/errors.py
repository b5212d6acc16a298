"""Typed errors of the pure DR logic.

They carry no HTTP codes: ``controlplane`` maps them (an invalid schedule or retention is a
422, an illegal run transition a 409).  Fields are kept in ``args`` as well, so the
exceptions survive pickling (task queues pickle exceptions).
"""

from __future__ import annotations


class BackupError(Exception):
    """Base class of the DR domain errors."""


class InvalidSchedule(BackupError, ValueError):
    """A cron expression that cannot be used as a backup schedule."""

    def __init__(self, expr: str, reason: str) -> None:
        super().__init__(expr, reason)
        self.expr = expr
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid schedule {self.expr!r}: {self.reason}"


class InvalidInput(BackupError, ValueError):
    """A parameter (retention count, data size, bandwidth, RPO…) out of its domain; names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class InvalidTransition(BackupError):
    """A backup run may not go from ``current`` to ``target``."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(current, target)
        self.current = current
        self.target = target

    def __str__(self) -> str:
        return f"a backup run cannot go from {self.current!r} to {self.target!r}"


class RpoInfeasible(BackupError):
    """The DR link cannot sustain the requested RPO; the message says what it can do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
