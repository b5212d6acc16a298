"""Schedules: cron in Asia/Shanghai, injected jitter, and the missed-run detector."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backup import InvalidInput, InvalidSchedule, PlannedRun, due_runs, next_runs, no_jitter, seeded_jitter, validate
from backup.schedule import SHANGHAI


def sh(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2024, month, day, hour, minute, second, tzinfo=SHANGHAI)


def at(run: PlannedRun | None) -> datetime | None:
    return None if run is None else run.nominal


@pytest.mark.parametrize(
    ("expr", "normalised"),
    [
        ("0 2 * * *", "0 2 * * *"),
        ("  */15   1-5 * * mon-fri ", "*/15 1-5 * * mon-fri"),
        ("@daily", "@daily"),
        ("@hourly", "@hourly"),
    ],
)
def test_valid_schedules_are_normalised(expr: str, normalised: str) -> None:
    assert validate(expr) == normalised


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("@reboot", "unknown alias"),
        ("0 2 * *", "expected five fields"),
        ("0 0 2 * * *", "expected five fields (minute hour day-of-month month day-of-week), got 6"),
        ("61 * * * *", "out of range"),
        ("0 0 30 2 *", "failed to find next date"),  # 30 February never comes
    ],
)
def test_invalid_schedules_say_why(expr: str, reason: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        validate(expr)
    assert reason in str(caught.value)
    assert caught.value.expr == expr


def test_a_non_string_is_not_a_schedule() -> None:
    with pytest.raises(InvalidSchedule, match="empty"):
        validate(None)  # type: ignore[arg-type]


def test_cron_fires_at_shanghai_wall_clock_time() -> None:
    # 02:00 in Shanghai is 18:00 UTC the day before: "after" given in UTC must not shift the schedule
    runs = next_runs("0 2 * * *", datetime(2024, 3, 1, 17, 0, tzinfo=UTC), 3)
    assert [r.nominal for r in runs] == [sh(3, 2, 2), sh(3, 3, 2), sh(3, 4, 2)]
    assert all(r.due == r.nominal for r in runs)  # no jitter by default
    assert runs[0].nominal.utcoffset() == timedelta(hours=8)


def test_next_runs_is_strictly_after() -> None:
    assert [r.nominal for r in next_runs("0 2 * * *", sh(3, 1, 2), 1)] == [sh(3, 2, 2)]
    assert next_runs("0 2 * * *", sh(3, 1, 2), 0) == []


@pytest.mark.parametrize("n", [-1])
def test_next_runs_refuses_a_negative_count(n: int) -> None:
    with pytest.raises(InvalidInput, match="n: must not be negative"):
        next_runs("0 2 * * *", sh(3, 1), n)


def test_naive_times_are_refused() -> None:
    with pytest.raises(InvalidInput, match="after: must be a timezone-aware datetime"):
        next_runs("0 2 * * *", datetime(2024, 3, 1), 1)
    with pytest.raises(InvalidInput, match="now: must be a timezone-aware"):
        due_runs("0 2 * * *", last_claimed=sh(3, 1), now=datetime(2024, 3, 2))


def test_seeded_jitter_is_stable_per_run_and_within_its_spread() -> None:
    jitter = seeded_jitter("policy-42", timedelta(minutes=10))
    runs = next_runs("0 2 * * *", sh(3, 1), 30, jitter=jitter)
    offsets = [r.due - r.nominal for r in runs]
    assert all(timedelta(0) <= o < timedelta(minutes=10) for o in offsets)
    assert len(set(offsets)) > 20  # spread out, not one constant offset
    # the same policy and run always get the same due time (any scheduler, any restart)...
    assert next_runs("0 2 * * *", sh(3, 1), 30, jitter=seeded_jitter("policy-42", timedelta(minutes=10))) == runs
    # ...and another policy gets other ones
    other = next_runs("0 2 * * *", sh(3, 1), 30, jitter=seeded_jitter("policy-43", timedelta(minutes=10)))
    assert [r.due for r in other] != [r.due for r in runs]


def test_zero_spread_means_no_jitter_and_a_negative_one_is_refused() -> None:
    assert seeded_jitter("p", timedelta(0))(sh(3, 1)) == timedelta(0)
    assert no_jitter(sh(3, 1)) == timedelta(0)
    with pytest.raises(InvalidInput, match="jitter: spread must not be negative"):
        seeded_jitter("p", timedelta(seconds=-1))


def test_a_jitter_function_may_not_move_a_run_earlier() -> None:
    with pytest.raises(InvalidInput, match="offset must not be negative"):
        next_runs("0 2 * * *", sh(3, 1), 1, jitter=lambda _nominal: timedelta(seconds=-5))


# ---------------------------------------------------------------- the missed-run detector

HOURLY = "0 * * * *"


@pytest.mark.parametrize(
    ("last", "now", "run_now", "missed", "next_run"),
    [
        # claimed 10:00, now 10:59:59: nothing due; next is 11:00
        (sh(3, 1, 10), sh(3, 1, 10, 59, 59), None, [], sh(3, 1, 11)),
        # now exactly 11:00: 11:00 is due (a run is due at its own time, not after)
        (sh(3, 1, 10), sh(3, 1, 11), sh(3, 1, 11), [], sh(3, 1, 12)),
        # a tick 30 s late still runs 11:00, nothing missed
        (sh(3, 1, 10), sh(3, 1, 11, 0, 30), sh(3, 1, 11), [], sh(3, 1, 12)),
        # scheduler down from 10:30 to 13:20: 11:00 and 12:00 are missed, 13:00 runs now
        (sh(3, 1, 10), sh(3, 1, 13, 20), sh(3, 1, 13), [sh(3, 1, 11), sh(3, 1, 12)], sh(3, 1, 14)),
        # a new policy: its enrolment time stands for the last claim
        (sh(3, 1, 9, 45), sh(3, 1, 10, 5), sh(3, 1, 10), [], sh(3, 1, 11)),
        # a last claim ahead of now (clock skew): nothing due, next after the claim
        (sh(3, 1, 12), sh(3, 1, 11, 30), None, [], sh(3, 1, 13)),
    ],
)
def test_due_runs_without_jitter(
    last: datetime, now: datetime, run_now: datetime | None, missed: list[datetime], next_run: datetime
) -> None:
    due = due_runs(HOURLY, last_claimed=last, now=now)
    assert at(due.run_now) == run_now
    assert [r.nominal for r in due.missed] == missed
    assert due.next_run.nominal == next_run
    assert not due.truncated


def test_every_minute_schedule_at_a_tick_between_minutes() -> None:
    # cron every minute, now 10:00:30 (the look-back starts at 10:01:30 and skips 10:01)
    due = due_runs("* * * * *", last_claimed=sh(3, 1, 9, 58), now=sh(3, 1, 10, 0, 30))
    assert at(due.run_now) == sh(3, 1, 10)
    assert [r.nominal for r in due.missed] == [sh(3, 1, 9, 59)]
    assert due.next_run.nominal == sh(3, 1, 10, 1)


def test_a_long_outage_lists_the_newest_missed_runs_and_says_it_truncated() -> None:
    # down for 10 days on an hourly schedule: 240 runs; 239 missed, only the newest 5 listed
    due = due_runs(HOURLY, last_claimed=sh(3, 1), now=sh(3, 11, 0, 10), limit=5)
    assert at(due.run_now) == sh(3, 11)
    assert [r.nominal for r in due.missed] == [sh(3, 10, h) for h in range(19, 24)]
    assert due.truncated
    exact = due_runs(HOURLY, last_claimed=sh(3, 10, 18), now=sh(3, 11, 0, 10), limit=5)
    assert len(exact.missed) == 5 and not exact.truncated  # exactly `limit` missed: all listed


def test_due_runs_refuses_a_negative_limit() -> None:
    with pytest.raises(InvalidInput, match="limit"):
        due_runs(HOURLY, last_claimed=sh(3, 1), now=sh(3, 2), limit=-1)


def test_jitter_delays_a_run_without_dropping_it() -> None:
    # 11:00 fires but its jitter (20 min) makes it due at 11:20
    def twenty_minutes(_nominal: datetime) -> timedelta:
        return timedelta(minutes=20)

    early = due_runs(HOURLY, last_claimed=sh(3, 1, 10), now=sh(3, 1, 11, 10), jitter=twenty_minutes)
    assert early.run_now is None and early.missed == ()
    assert early.next_run == PlannedRun(sh(3, 1, 11), sh(3, 1, 11, 20))
    late = due_runs(HOURLY, last_claimed=sh(3, 1, 10), now=sh(3, 1, 12, 10), jitter=twenty_minutes)
    # 11:00 (due 11:20) runs; 12:00 (due 12:20) is next, not missed
    assert late.run_now == PlannedRun(sh(3, 1, 11), sh(3, 1, 11, 20))
    assert late.next_run == PlannedRun(sh(3, 1, 12), sh(3, 1, 12, 20))


def test_a_run_overtaken_by_a_newer_due_run_is_recorded_as_missed() -> None:
    # a (misbehaving) jitter longer than the interval for 11:00 only: 12:00 becomes due first.
    # 11:00 can never run before it any more: it must show up as missed, not vanish.
    def uneven(nominal: datetime) -> timedelta:
        return timedelta(minutes=90) if nominal.hour == 11 else timedelta(0)

    due = due_runs(HOURLY, last_claimed=sh(3, 1, 10), now=sh(3, 1, 12, 5), jitter=uneven)
    assert at(due.run_now) == sh(3, 1, 12)
    assert [r.nominal for r in due.missed] == [sh(3, 1, 11)]
