"""RPO: now minus the newest verified point at the target site; nothing verified is no RPO."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from backup import InvalidInput, RecoveryPoint, achieved_rpo, newest_verified, rpo_status
from backup.schedule import SHANGHAI

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=SHANGHAI)
H = timedelta(hours=1)


def point(name: str, age: timedelta, verified: bool = True, site: str | None = "yichang") -> RecoveryPoint:
    return RecoveryPoint(name, NOW - age, verified, site)


@pytest.mark.parametrize(
    ("points", "target", "achieved", "compliant"),
    [
        # newest verified point 40 min old, target 1 h: compliant
        ([point("a", 3 * H), point("b", timedelta(minutes=40))], H, timedelta(minutes=40), True),
        # exactly at the target still complies (achieved <= target)
        ([point("a", H)], H, H, True),
        # a newer *unverified* point does not count: the verified one is 3 h old
        ([point("a", 3 * H), point("b", timedelta(minutes=5), verified=False)], H, 3 * H, False),
        # a point at another site does not count either
        ([point("a", 2 * H), point("b", timedelta(minutes=5), site="xiangyang")], H, 2 * H, False),
        # nothing verified: no RPO at all, never compliant
        ([point("a", timedelta(minutes=5), verified=False)], H, None, False),
        ([], H, None, False),
        # a point stamped ahead of now (clock skew) counts as 0, never negative
        ([point("a", -timedelta(minutes=3))], H, timedelta(0), True),
    ],
)
def test_rpo_status(
    points: list[RecoveryPoint], target: timedelta, achieved: timedelta | None, compliant: bool
) -> None:
    status = rpo_status(points, target=target, now=NOW, site="yichang")
    assert status.achieved == achieved
    assert status.compliant is compliant
    assert status.target == target
    if achieved is None:
        assert status.newest_verified is None
        assert math.isinf(status.achieved_seconds)
    else:
        assert status.achieved_seconds == achieved.total_seconds()


def test_without_a_site_every_site_counts() -> None:
    points = [point("a", 2 * H), point("b", H, site="xiangyang")]
    assert achieved_rpo(points, now=NOW) == H
    assert achieved_rpo(points, now=NOW, site="yichang") == 2 * H
    newest = newest_verified(points)
    assert newest is not None and newest.id == "b"


def test_rpo_needs_an_aware_now_and_a_positive_target() -> None:
    with pytest.raises(InvalidInput, match="now"):
        achieved_rpo([], now=datetime(2024, 3, 1))
    with pytest.raises(InvalidInput, match="rpo_target"):
        rpo_status([], target=timedelta(0), now=NOW)
