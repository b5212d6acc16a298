"""Backup schedules: five-field cron expressions evaluated in Asia/Shanghai.

A run is identified by its *nominal* time (when the cron expression fires); it becomes
*due* at ``nominal + jitter(nominal)``, so a province's worth of policies on ``0 2 * * *``
does not hit the DR link in the same second.  Jitter is injected: ``seeded_jitter`` derives
a stable offset from a seed (the policy's id) and the nominal time, so every scheduler
process, before and after a restart, computes the same due time for the same run.

All times are timezone-aware; results are in Asia/Shanghai.  Nothing here reads the clock:
``after`` and ``now`` are parameters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, TypeAlias
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

from backup.errors import InvalidInput, InvalidSchedule

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")
"""The province's time zone (UTC+8, no daylight saving): schedules and calendar days use it."""

ALIASES: Final = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
FIELDS: Final = "minute hour day-of-month month day-of-week"
DEFAULT_MISSED_LIMIT: Final = 1000

Jitter: TypeAlias = Callable[[datetime], timedelta]
"""Offset (>= 0) added to a run's nominal time to get its due time."""


def no_jitter(nominal: datetime) -> timedelta:
    """Every run is due exactly when its cron expression fires."""
    return timedelta(0)


def seeded_jitter(seed: str, spread: timedelta) -> Jitter:
    """A stable pseudo-random offset in ``[0, spread)`` per (seed, nominal time).

    Keep ``spread`` below the schedule's shortest interval: a run never becomes due after
    the next one's nominal time then.
    """
    if spread < timedelta(0):
        raise InvalidInput("jitter", f"spread must not be negative, got {spread}")
    spread_us = spread // timedelta(microseconds=1)

    def jitter(nominal: datetime) -> timedelta:
        if spread_us == 0:
            return timedelta(0)
        digest = hashlib.sha256(f"{seed}|{nominal.astimezone(SHANGHAI).isoformat()}".encode()).digest()
        return timedelta(microseconds=int.from_bytes(digest[:8], "big") % spread_us)

    return jitter


@dataclass(frozen=True, order=True)
class PlannedRun:
    """One execution of a schedule: ``nominal`` identifies it, ``due`` is when to start it."""

    nominal: datetime
    due: datetime


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(name, "must be a timezone-aware datetime")
    return value.astimezone(SHANGHAI)


def validate(expr: str) -> str:
    """Return the normalised expression (single spaces) or raise ``InvalidSchedule`` saying why."""
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidSchedule(str(expr), f"empty; expected five fields ({FIELDS}) or an alias like @daily")
    normalised = " ".join(expr.split())
    if normalised.startswith("@"):
        if normalised not in ALIASES:
            raise InvalidSchedule(expr, f"unknown alias; use one of {', '.join(sorted(ALIASES))}")
        return normalised
    fields = normalised.split(" ")
    if len(fields) != 5:
        raise InvalidSchedule(expr, f"expected five fields ({FIELDS}), got {len(fields)}")
    try:
        croniter(normalised, datetime(2000, 1, 1, tzinfo=SHANGHAI)).get_next(datetime)
    except CroniterError as err:  # bad field, or a date that never exists (30 February)
        raise InvalidSchedule(expr, str(err) or type(err).__name__) from err
    return normalised


def _iter(expr: str, start: datetime) -> croniter:
    return croniter(validate(expr), start)


def _planned(nominal: datetime, jitter: Jitter) -> PlannedRun:
    offset = jitter(nominal)
    if offset < timedelta(0):
        raise InvalidInput("jitter", f"offset must not be negative, got {offset} for {nominal.isoformat()}")
    return PlannedRun(nominal, nominal + offset)


def next_runs(expr: str, after: datetime, n: int, *, jitter: Jitter = no_jitter) -> list[PlannedRun]:
    """The ``n`` runs whose nominal time is strictly after ``after``, in order."""
    if n < 0:
        raise InvalidInput("n", f"must not be negative, got {n}")
    it = _iter(expr, _aware("after", after))
    return [_planned(it.get_next(datetime), jitter) for _ in range(n)]


@dataclass(frozen=True)
class DueRuns:
    """What a scheduler tick must do for one policy.

    ``run_now``: the newest due run, to start now (``None``: nothing is due).  ``missed``:
    every other run after the last claim and before ``run_now``, oldest first, to be
    recorded as missed, never dropped; when there are more than ``limit`` of them only the
    newest ``limit`` are listed and ``truncated`` is true.  ``next_run``: the first run after
    ``run_now`` (or after the last claim) that is not due yet.
    """

    run_now: PlannedRun | None
    missed: tuple[PlannedRun, ...]
    truncated: bool
    next_run: PlannedRun


def due_runs(
    expr: str,
    *,
    last_claimed: datetime,
    now: datetime,
    jitter: Jitter = no_jitter,
    limit: int = DEFAULT_MISSED_LIMIT,
) -> DueRuns:
    """Split the runs after ``last_claimed`` (nominal time) into run-now, missed and next.

    For a policy that never ran, pass its enrolment time as ``last_claimed``.  Claiming the
    result means storing ``run_now.nominal`` as the new last claimed time (with a conditional
    update, so two schedulers never both claim it).
    """
    if limit < 0:
        raise InvalidInput("limit", f"must not be negative, got {limit}")
    last = _aware("last_claimed", last_claimed)
    at = _aware("now", now)
    # Walk back from the newest nominal time <= now down to the last claim, newest first.
    back = _iter(expr, at + timedelta(minutes=1))
    due: list[PlannedRun] = []
    pending: list[PlannedRun] = []  # nominal <= now, pushed past now by jitter, newer than any due run
    truncated = False
    while True:
        nominal = back.get_prev(datetime)
        if nominal > at:
            continue
        if nominal <= last:
            break
        run = _planned(nominal, jitter)
        if run.due <= at or due:  # due, or older than a due run: it can never run before that one
            if len(due) > limit:  # run_now and `limit` missed runs are listed already
                truncated = True
                break
            due.append(run)
        else:
            pending.append(run)
    run_now = due[0] if due else None
    missed = tuple(sorted(due[1:]))
    if pending:
        next_run = min(pending)
    else:
        start = max(at, last)
        next_run = _planned(_iter(expr, start).get_next(datetime), jitter)
    return DueRuns(run_now=run_now, missed=missed, truncated=truncated, next_run=next_run)
