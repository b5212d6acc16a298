"""Recovery point objective: the promise we can prove.

A policy's *achieved* RPO is ``now`` minus the time of its newest **verified** recovery point
at the target (DR) site: not "the job ran", but "a checked copy this old exists there now".
No verified point means no RPO at all (``None``, shown as infinite), which never complies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from backup.errors import InvalidInput
from backup.retention import RecoveryPoint


@dataclass(frozen=True)
class RpoStatus:
    target: timedelta
    achieved: timedelta | None
    newest_verified: RecoveryPoint | None

    @property
    def compliant(self) -> bool:
        return self.achieved is not None and self.achieved <= self.target

    @property
    def achieved_seconds(self) -> float:
        """For gauges: ``inf`` when there is no verified point."""
        return float("inf") if self.achieved is None else self.achieved.total_seconds()


def newest_verified(points: Iterable[RecoveryPoint], *, site: str | None = None) -> RecoveryPoint | None:
    """The newest verified point (at ``site`` when given: other sites' points don't count)."""
    candidates = [p for p in points if p.verified and (site is None or p.site == site)]
    return max(candidates, key=lambda p: (p.time, p.id), default=None)


def achieved_rpo(points: Iterable[RecoveryPoint], *, now: datetime, site: str | None = None) -> timedelta | None:
    """``now`` − newest verified point; never negative (a point stamped ahead of ``now`` counts as 0)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidInput("now", "must be a timezone-aware datetime")
    newest = newest_verified(points, site=site)
    if newest is None:
        return None
    return max(now - newest.time, timedelta(0))


def rpo_status(
    points: Iterable[RecoveryPoint], *, target: timedelta, now: datetime, site: str | None = None
) -> RpoStatus:
    if target <= timedelta(0):
        raise InvalidInput("rpo_target", f"must be positive, got {target}")
    materialised = list(points)
    return RpoStatus(
        target=target,
        achieved=achieved_rpo(materialised, now=now, site=site),
        newest_verified=newest_verified(materialised, site=site),
    )
