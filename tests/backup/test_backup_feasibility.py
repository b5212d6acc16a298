"""Feasibility of an RPO over a tenant's DR link, with the arithmetic written out.

Units: GiB = 2^30 bytes; Mbit/s = 10^6 bit/s; usable = link x efficiency (0.8); per-run
overhead o = 5 min = 300 s unless said otherwise.  See backup/feasibility.py for the model:
k = change rate / usable bandwidth; I* = o / (1 - k); RPO_min = 2 I*.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from backup import InvalidInput, RpoInfeasible, assess_link, format_duration, require_feasible

MIN = timedelta(minutes=1)
H = timedelta(hours=1)


def test_issue_case_rpo_1h_500gib_10pct_over_2mbps_is_refused_with_what_the_link_can_do() -> None:
    # size     = 500 GiB = 500 x 2^30 x 8 bit         = 4 294 967 296 000 bit
    # usable   = 2 Mbit/s x 0.8                        = 1 600 000 bit/s
    # seeding  = 4 294 967 296 000 / 1 600 000         = 2 684 354.56 s = 31 d 1 h 39 min 14.56 s
    # changes  = 4 294 967 296 000 x 10 % / 86 400 s   = 4 971 026.96 bit/s (4.97 Mbit/s, 50 GiB a day)
    # k        = 4.97 / 1.6 = 3.1 >= 1: the link cannot even carry the daily change: no RPO at all
    # for 1 h  : usable >= changes / (1 - 2o/R) = 4 971 026.96 / (1 - 600/3600) = 5 965 232.4 bit/s
    #            raw    = 5 965 232.4 / 0.8 = 7 456 540.4 bit/s = 7.46 Mbit/s
    result = assess_link(data_gib=500, daily_change_pct=10, link_mbps=2, rpo=H)
    assert not result.feasible
    assert result.seeding_time.total_seconds() == pytest.approx(2_684_354.56)
    assert result.change_mbps == pytest.approx(4.971027, rel=1e-6)
    assert result.min_rpo is None and result.min_interval is None and result.max_interval is None
    assert result.required_link_mbps == pytest.approx(7.456540, rel=1e-6)
    assert result.message == (
        "RPO 1 h for 500 GiB at 10 % daily change over 2 Mbit/s (1.60 Mbit/s usable at 80%) is not feasible: "
        "the daily change alone needs 4.97 Mbit/s, so this link can sustain no RPO at all; "
        "RPO 1 h needs at least 7.46 Mbit/s; seeding the first full copy takes 31 d 1 h 40 min."
    )
    with pytest.raises(RpoInfeasible) as caught:
        require_feasible(data_gib=500, daily_change_pct=10, link_mbps=2, rpo=H)
    assert str(caught.value) == result.message


def test_refused_with_the_smallest_rpo_the_link_can_sustain() -> None:
    # 500 GiB, 10 %/day over 10 Mbit/s: usable 8 000 000 bit/s; changes 4 971 026.96 bit/s
    # k       = 4 971 026.96 / 8 000 000 = 0.621378
    # I*      = 300 / (1 - 0.621378) = 792.35 s (13 min 12.35 s): shorter runs cannot keep up
    # RPO_min = 2 x 792.35 = 1 584.70 s (26 min 24.7 s) > 15 min: refused
    # 15 min  : usable >= 4 971 026.96 / (1 - 600/900) = 14 913 080.9 -> raw 18 641 351 bit/s = 18.64 Mbit/s
    # seeding = 4 294 967 296 000 / 8 000 000 = 536 870.9 s = 6 d 5 h 7 min 50.9 s
    result = assess_link(data_gib=500, daily_change_pct=10, link_mbps=10, rpo=15 * MIN)
    assert not result.feasible
    assert result.min_interval is not None and result.min_rpo is not None
    assert result.min_interval.total_seconds() == pytest.approx(792.35, abs=0.01)
    assert result.min_rpo.total_seconds() == pytest.approx(1584.70, abs=0.01)
    assert result.required_link_mbps == pytest.approx(18.641351, rel=1e-6)
    assert result.message == (
        "RPO 15 min for 500 GiB at 10 % daily change over 10 Mbit/s (8.00 Mbit/s usable at 80%) is not feasible: "
        "the smallest RPO this link can sustain is 26 min 25 s (a run every 13 min 13 s); "
        "RPO 15 min needs at least 18.64 Mbit/s; seeding the first full copy takes 6 d 5 h 8 min."
    )


def test_feasible_with_the_longest_interval_that_keeps_the_rpo() -> None:
    # 500 GiB, 1 %/day over 100 Mbit/s: usable 80 000 000; changes 497 102.70 bit/s; k = 0.0062138
    # RPO_min = 2 x 300 / (1 - 0.0062138) = 603.75 s; RPO 1 h is feasible
    # longest interval = (3600 - 300) / (1 + 0.0062138) = 3 279.62 s = 54 min 39.6 s (shown rounded down)
    # seeding = 4 294 967 296 000 / 80 000 000 = 53 687.09 s = 14 h 54 min 47 s
    result = require_feasible(data_gib=500, daily_change_pct=1, link_mbps=100, rpo=H)
    assert result.feasible
    assert result.max_interval is not None
    assert result.max_interval.total_seconds() == pytest.approx(3279.62, abs=0.01)
    assert result.message == (
        "RPO 1 h for 500 GiB at 1 % daily change over 100 Mbit/s (80.00 Mbit/s usable at 80%) is feasible: "
        "run at least every 54 min 39 s; seeding the first full copy takes 14 h 55 min."
    )


def test_an_rpo_within_twice_the_run_overhead_needs_no_faster_link_but_a_lighter_run() -> None:
    # RPO 5 min <= 2 x 5 min overhead: no bandwidth helps; the link's own floor is 603.75 s = 10 min 4 s
    result = assess_link(data_gib=500, daily_change_pct=1, link_mbps=100, rpo=5 * MIN)
    assert not result.feasible and result.required_link_mbps is None
    assert "smallest RPO this link can sustain is 10 min 4 s" in result.message
    assert "no link can meet it with a per-run overhead of 5 min" in result.message
    # with a 1 min overhead: RPO_min = 2 x 60 / 0.9937862 = 120.75 s: 5 min is feasible
    assert assess_link(data_gib=500, daily_change_pct=1, link_mbps=100, rpo=5 * MIN, run_overhead=MIN).feasible


def test_no_change_no_overhead_any_rpo_holds() -> None:
    result = assess_link(data_gib=1, daily_change_pct=0, link_mbps=1, rpo=MIN, run_overhead=timedelta(0))
    assert result.feasible and result.min_rpo == timedelta(0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"data_gib": 0}, "data_gib"),
        ({"data_gib": float("nan")}, "data_gib"),
        ({"data_gib": "500"}, "data_gib"),
        ({"daily_change_pct": 101}, "daily_change_pct"),
        ({"daily_change_pct": -1}, "daily_change_pct"),
        ({"link_mbps": 0}, "link_mbps"),
        ({"link_mbps": True}, "link_mbps"),
        ({"efficiency": 0}, "efficiency"),
        ({"efficiency": 1.2}, "efficiency"),
        ({"rpo": timedelta(0)}, "rpo"),
        ({"run_overhead": -MIN}, "run_overhead"),
    ],
)
def test_inputs_are_validated_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"data_gib": 500, "daily_change_pct": 10, "link_mbps": 2, "rpo": H, **kwargs}
    with pytest.raises(InvalidInput) as caught:
        assess_link(**args)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("value", "round_up", "text"),
    [
        (timedelta(seconds=0), True, "0 s"),
        (timedelta(seconds=44.2), True, "45 s"),
        (timedelta(seconds=44.8), False, "44 s"),
        (timedelta(minutes=10, seconds=3.1), True, "10 min 4 s"),
        (timedelta(minutes=10), True, "10 min"),
        (timedelta(hours=2, seconds=1), True, "2 h 1 min"),
        (timedelta(hours=2, seconds=59), False, "2 h"),
        (timedelta(days=31, hours=1, minutes=39, seconds=14.56), True, "31 d 1 h 40 min"),
        (timedelta(days=2, minutes=5), True, "2 d 5 min"),
        (timedelta(seconds=-3), True, "0 s"),
    ],
)
def test_format_duration(value: timedelta, round_up: bool, text: str) -> None:
    assert format_duration(value, round_up=round_up) == text
