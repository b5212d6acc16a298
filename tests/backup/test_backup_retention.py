"""GFS retention: table-driven cases and properties against an independent reference."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup import InvalidInput, KeepReason, RecoveryPoint, RetentionPolicy, apply_retention
from backup.schedule import SHANGHAI

R = KeepReason


def sh(month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=SHANGHAI)


def pt(name: str, when: datetime, verified: bool = False) -> RecoveryPoint:
    return RecoveryPoint(name, when, verified)


def reasons(points: Sequence[RecoveryPoint], policy: RetentionPolicy) -> dict[str, set[str]]:
    decision = apply_retention(points, policy)
    assert decision.keep_ids.isdisjoint(decision.forget_ids)
    assert decision.keep_ids | decision.forget_ids == {p.id for p in points}
    return {k.point.id: {r.value for r in k.reasons} for k in decision.keep}


def test_last_keeps_the_newest_n() -> None:
    points = [pt(f"s{i}", sh(3, 1, i)) for i in range(5)]
    assert reasons(points, RetentionPolicy(last=2)) == {"s4": {"last"}, "s3": {"last"}}


def test_daily_keeps_the_newest_point_of_each_recent_day_that_has_one() -> None:
    points = [
        pt("mar1-am", sh(3, 1, 9)),
        pt("mar1-pm", sh(3, 1, 21)),  # newest of 1 March
        pt("mar3", sh(3, 3)),  # 2 March has no point: it uses no slot
        pt("mar4-early", sh(3, 4, 0, 30)),
        pt("mar4-late", sh(3, 4, 23, 59)),
    ]
    assert reasons(points, RetentionPolicy(daily=3)) == {
        "mar4-late": {"daily"},
        "mar3": {"daily"},
        "mar1-pm": {"daily"},
    }


def test_days_are_shanghai_calendar_days_not_utc_days() -> None:
    # 07:30 and 09:30 on 5 March in Shanghai are 23:30 (4 March) and 01:30 (5 March) UTC:
    # one Shanghai day, so daily=2 keeps the 09:30 one and the 4 March one.
    points = [pt("mar4", sh(3, 4, 12)), pt("mar5-0730", sh(3, 5, 7, 30)), pt("mar5-0930", sh(3, 5, 9, 30))]
    assert reasons(points, RetentionPolicy(daily=2)) == {"mar5-0930": {"daily"}, "mar4": {"daily"}}
    # the same instants given in UTC decide the same way
    as_utc = [RecoveryPoint(p.id, p.time.astimezone(UTC)) for p in points]
    assert reasons(as_utc, RetentionPolicy(daily=2)) == {"mar5-0930": {"daily"}, "mar4": {"daily"}}


def test_weekly_uses_iso_weeks_and_monthly_calendar_months() -> None:
    points = [
        pt("sun-dec31", datetime(2023, 12, 31, 12, tzinfo=SHANGHAI)),  # ISO 2023-W52
        pt("mon-jan1", datetime(2024, 1, 1, 12, tzinfo=SHANGHAI)),  # ISO 2024-W01, and January
        pt("sun-jan7", datetime(2024, 1, 7, 12, tzinfo=SHANGHAI)),  # still 2024-W01
        pt("feb29", sh(2, 29)),
    ]
    assert reasons(points, RetentionPolicy(weekly=2)) == {"feb29": {"weekly"}, "sun-jan7": {"weekly"}}
    assert reasons(points, RetentionPolicy(monthly=3)) == {
        "feb29": {"monthly"},
        "sun-jan7": {"monthly"},
        "sun-dec31": {"monthly"},
    }


def test_kept_is_the_union_and_each_point_says_every_reason() -> None:
    points = [pt("a", sh(1, 15)), pt("b", sh(2, 10)), pt("c", sh(3, 1)), pt("d", sh(3, 2))]
    assert reasons(points, RetentionPolicy(last=1, daily=2, weekly=1, monthly=2)) == {
        "d": {"last", "daily", "weekly", "monthly"},
        "c": {"daily"},
        "b": {"monthly"},
    }


def test_the_newest_verified_point_is_kept_even_when_the_rules_would_forget_it() -> None:
    points = [pt("old-ok", sh(3, 1), verified=True), pt("new1", sh(3, 2)), pt("new2", sh(3, 3))]
    decision = apply_retention(points, RetentionPolicy(last=2))
    assert {k.point.id: k.reasons for k in decision.keep} == {
        "new2": {R.LAST},
        "new1": {R.LAST},
        "old-ok": {R.NEWEST_VERIFIED},
    }
    assert decision.forget == ()
    # and it is the only thing an empty policy keeps
    assert reasons(points, RetentionPolicy()) == {"old-ok": {"newest_verified"}}
    assert reasons([pt("x", sh(3, 1))], RetentionPolicy()) == {}


def test_output_is_newest_first() -> None:
    points = [pt("b", sh(3, 2)), pt("a", sh(3, 1)), pt("c", sh(3, 3))]
    decision = apply_retention(points, RetentionPolicy(last=1))
    assert [k.point.id for k in decision.keep] == ["c"]
    assert [p.id for p in decision.forget] == ["b", "a"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"last": -1}, "retention.last"), ({"daily": True}, "retention.daily"), ({"monthly": 1.5}, "retention.monthly")],
)
def test_policy_counts_are_validated(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        RetentionPolicy(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_policy_as_restic_flags() -> None:
    assert RetentionPolicy(last=3, weekly=4).restic_args() == ["--keep-last", "3", "--keep-weekly", "4"]
    assert RetentionPolicy().restic_args() == []


def test_points_must_be_aware_and_unique() -> None:
    with pytest.raises(InvalidInput, match="timezone-aware"):
        RecoveryPoint("x", datetime(2024, 3, 1))
    with pytest.raises(InvalidInput, match="duplicate recovery point ids: a"):
        apply_retention([pt("a", sh(3, 1)), pt("a", sh(3, 2))], RetentionPolicy(last=1))


# ---------------------------------------------------------------- properties


def _reference(points: Sequence[RecoveryPoint], policy: RetentionPolicy) -> dict[str, set[str]]:
    """Written from the definition, not from the implementation: for each rule, group the points
    by period, take the N most recent periods, keep the newest point of each."""
    newest_first = sorted(points, key=lambda p: (p.time, p.id), reverse=True)
    kept: dict[str, set[str]] = {}
    for p in newest_first[: policy.last]:
        kept.setdefault(p.id, set()).add("last")
    periods: dict[str, Callable[[datetime], Hashable]] = {
        "daily": lambda t: t.astimezone(SHANGHAI).date(),
        "weekly": lambda t: t.astimezone(SHANGHAI).isocalendar()[:2],
        "monthly": lambda t: (t.astimezone(SHANGHAI).year, t.astimezone(SHANGHAI).month),
    }
    for rule, period in periods.items():
        groups: dict[Hashable, list[RecoveryPoint]] = {}
        for p in points:
            groups.setdefault(period(p.time), []).append(p)
        for key in sorted(groups, reverse=True)[: getattr(policy, rule)]:  # type: ignore[type-var]
            newest = max(groups[key], key=lambda p: (p.time, p.id))
            kept.setdefault(newest.id, set()).add(rule)
    verified = [p for p in points if p.verified]
    if verified:
        kept.setdefault(max(verified, key=lambda p: (p.time, p.id)).id, set()).add("newest_verified")
    return kept


START = datetime(2023, 12, 1, tzinfo=UTC)
minutes = st.integers(min_value=0, max_value=150 * 24 * 60)  # five months, across a year end
point_lists = st.lists(st.tuples(minutes, st.booleans()), max_size=60, unique_by=lambda t: t[0]).map(
    lambda items: [
        RecoveryPoint(f"p{i:03d}", START + timedelta(minutes=m), verified) for i, (m, verified) in enumerate(items)
    ]
)
policies = st.builds(
    RetentionPolicy,
    last=st.integers(0, 5),
    daily=st.integers(0, 10),
    weekly=st.integers(0, 6),
    monthly=st.integers(0, 4),
)


@settings(max_examples=300, deadline=None)
@given(point_lists, policies)
def test_keeps_exactly_the_gfs_set_of_the_reference(points: list[RecoveryPoint], policy: RetentionPolicy) -> None:
    assert reasons(points, policy) == _reference(points, policy)


@settings(max_examples=300, deadline=None)
@given(point_lists, policies)
def test_never_forgets_the_newest_verified_point(points: list[RecoveryPoint], policy: RetentionPolicy) -> None:
    decision = apply_retention(points, policy)
    verified = [p for p in points if p.verified]
    if verified:
        newest = max(verified, key=lambda p: (p.time, p.id))
        assert newest.id in decision.keep_ids
        assert newest not in decision.forget
    # and whatever is kept, a kept point always has a reason
    assert all(k.reasons for k in decision.keep)
