"""GFS retention: which recovery points to keep and which to forget, and why.

The rules are restic's ``forget --keep-last/--keep-daily/--keep-weekly/--keep-monthly``
(so the DR side can hand restic the explicit forget list and get the same result as its own
policy flags): points are taken newest first; ``last`` keeps the newest N; each calendar
rule keeps the newest point of each of the N most recent periods (calendar day, ISO week,
month in Asia/Shanghai) that have a point.  The kept set is the union of the rules' sets.

On top of restic: the newest *verified* point is always kept, even when the rules would
forget it (a run of unverified points must never push the last good copy out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final

from backup.errors import InvalidInput
from backup.schedule import SHANGHAI


class KeepReason(StrEnum):
    LAST = "last"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    NEWEST_VERIFIED = "newest_verified"


@dataclass(frozen=True)
class RecoveryPoint:
    """A snapshot at a site: ``id`` (restic's snapshot id), when it was taken, whether verified."""

    id: str
    time: datetime
    verified: bool = False
    site: str | None = None

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise InvalidInput("time", f"recovery point {self.id!r}: must be a timezone-aware datetime")


@dataclass(frozen=True)
class RetentionPolicy:
    """Keep the newest ``last`` points and the newest point of that many days/ISO weeks/months."""

    last: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def __post_init__(self) -> None:
        for name in ("last", "daily", "weekly", "monthly"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidInput(f"retention.{name}", f"must be a non-negative integer, got {value!r}")

    def restic_args(self) -> list[str]:
        """The equivalent ``restic forget`` flags (zero counts are left out, as restic ignores them)."""
        args: list[str] = []
        for name in ("last", "daily", "weekly", "monthly"):
            count = getattr(self, name)
            if count:
                args += [f"--keep-{name}", str(count)]
        return args


@dataclass(frozen=True)
class Kept:
    point: RecoveryPoint
    reasons: frozenset[KeepReason] = field(default_factory=frozenset)


@dataclass(frozen=True)
class RetentionDecision:
    """``keep`` and ``forget``, both newest first; every kept point says why."""

    keep: tuple[Kept, ...]
    forget: tuple[RecoveryPoint, ...]

    @property
    def keep_ids(self) -> frozenset[str]:
        return frozenset(k.point.id for k in self.keep)

    @property
    def forget_ids(self) -> frozenset[str]:
        return frozenset(p.id for p in self.forget)


def _day(t: datetime) -> tuple[int, ...]:
    local = t.astimezone(SHANGHAI)
    return (local.year, local.month, local.day)


def _iso_week(t: datetime) -> tuple[int, ...]:
    year, week, _ = t.astimezone(SHANGHAI).isocalendar()
    return (year, week)


def _month(t: datetime) -> tuple[int, ...]:
    local = t.astimezone(SHANGHAI)
    return (local.year, local.month)


BUCKETS: Final[Mapping[KeepReason, Callable[[datetime], tuple[int, ...]]]] = {
    KeepReason.DAILY: _day,
    KeepReason.WEEKLY: _iso_week,
    KeepReason.MONTHLY: _month,
}


def newest_first(points: Iterable[RecoveryPoint]) -> list[RecoveryPoint]:
    """Newest first; equal times are ordered by id (descending) so the result is deterministic."""
    return sorted(points, key=lambda p: (p.time, p.id), reverse=True)


def apply_retention(points: Sequence[RecoveryPoint], policy: RetentionPolicy) -> RetentionDecision:
    ids = [p.id for p in points]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise InvalidInput("points", f"duplicate recovery point ids: {', '.join(dupes)}")
    ordered = newest_first(points)
    reasons: dict[str, set[KeepReason]] = {p.id: set() for p in ordered}
    for point in ordered[: policy.last]:
        reasons[point.id].add(KeepReason.LAST)
    counts = {KeepReason.DAILY: policy.daily, KeepReason.WEEKLY: policy.weekly, KeepReason.MONTHLY: policy.monthly}
    for reason, bucket_of in BUCKETS.items():
        remaining = counts[reason]
        previous: tuple[int, ...] | None = None
        for point in ordered:
            if remaining == 0:
                break
            bucket = bucket_of(point.time)
            if bucket != previous:
                reasons[point.id].add(reason)
                remaining -= 1
                previous = bucket
    newest_verified = next((p for p in ordered if p.verified), None)
    if newest_verified is not None:
        reasons[newest_verified.id].add(KeepReason.NEWEST_VERIFIED)
    keep = tuple(Kept(p, frozenset(reasons[p.id])) for p in ordered if reasons[p.id])
    forget = tuple(p for p in ordered if not reasons[p.id])
    return RetentionDecision(keep=keep, forget=forget)
