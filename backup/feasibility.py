"""Can the DR link keep an RPO?  Decided before approval, from what the tenant declares.

Model (all rates in bits per second; GiB = 2^30 bytes, Mbit/s = 10^6 bit/s):

- usable bandwidth ``B = link_mbps · 10^6 · efficiency`` (protocol overhead, other traffic);
- seeding the first full copy takes ``size · 8 / B``;
- changes accrue evenly over the day: ``c = size · 8 · change_pct / 100 / 86 400``;
  ``k = c / B`` is the share of the link the changes need;
- a run every ``I`` seconds ships ``c · I`` bits plus a fixed per-run overhead ``o``
  (start-up, index, snapshot, verification): ``T(I) = o + k · I``; the link keeps up iff
  ``T(I) ≤ I``, i.e. ``I ≥ I* = o / (1 − k)`` (no interval at all when ``k ≥ 1``);
- RPO is measured against the newest *completed* point: just before a run completes, the
  newest point is the previous run's, ``I + T(I)`` old.  The worst case grows with ``I``,
  so the smallest sustainable RPO is at ``I*``: ``RPO_min = I* + T(I*) = 2 · o / (1 − k)``;
- a requested RPO ``R ≥ RPO_min`` is met by any interval up to ``(R − o) / (1 + k)``;
- the usable bandwidth ``R`` needs: ``B ≥ c / (1 − 2o / R)`` (no bandwidth helps when ``R ≤ 2o``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from backup.errors import InvalidInput, RpoInfeasible

GIB: Final = 2**30
SECONDS_PER_DAY: Final = 86_400
DEFAULT_EFFICIENCY: Final = 0.8
DEFAULT_RUN_OVERHEAD: Final = timedelta(minutes=5)


def format_duration(value: timedelta, *, round_up: bool = True) -> str:
    """``31 d 1 h 40 min``, ``2 h 5 min``, ``11 min 30 s``, ``45 s``, rounded at the last unit shown.

    Rounded up by default (a bound we state must hold); ``round_up=False`` for "at least every".
    """
    seconds = max(value.total_seconds(), 0.0)
    rnd = math.ceil if round_up else math.floor
    units: tuple[tuple[int, str], ...]
    if seconds >= SECONDS_PER_DAY:
        total, units = rnd(seconds / 60), ((1440, "d"), (60, "h"), (1, "min"))
    elif seconds >= 3600:
        total, units = rnd(seconds / 60), ((60, "h"), (1, "min"))
    elif seconds >= 60:
        total, units = rnd(seconds), ((60, "min"), (1, "s"))
    else:
        return f"{rnd(seconds)} s"
    parts = []
    for size, name in units:
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count} {name}")
    return " ".join(parts)


def _number(field: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(field, f"must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Feasibility:
    requested_rpo: timedelta
    data_gib: float
    daily_change_pct: float
    link_mbps: float
    efficiency: float
    run_overhead: timedelta
    seeding_time: timedelta
    min_rpo: timedelta | None
    """The smallest RPO the link sustains; ``None``: the changes alone exceed the link."""
    min_interval: timedelta | None
    """The shortest run interval the link keeps up with."""
    max_interval: timedelta | None
    """The longest run interval that meets the requested RPO (``None`` when infeasible)."""
    required_link_mbps: float | None
    """Raw link speed the requested RPO needs at this efficiency (``None``: overhead alone exceeds it)."""

    @property
    def usable_mbps(self) -> float:
        return self.link_mbps * self.efficiency

    @property
    def change_mbps(self) -> float:
        return self.data_gib * GIB * 8 * self.daily_change_pct / 100 / SECONDS_PER_DAY / 1e6

    @property
    def feasible(self) -> bool:
        return self.min_rpo is not None and self.requested_rpo >= self.min_rpo

    @property
    def message(self) -> str:
        what = (
            f"RPO {format_duration(self.requested_rpo)} for {self.data_gib:g} GiB at "
            f"{self.daily_change_pct:g} % daily change over {self.link_mbps:g} Mbit/s "
            f"({self.usable_mbps:.2f} Mbit/s usable at {self.efficiency:.0%})"
        )
        seeding = f"seeding the first full copy takes {format_duration(self.seeding_time)}"
        if self.feasible:
            assert self.max_interval is not None
            every = format_duration(self.max_interval, round_up=False)
            return f"{what} is feasible: run at least every {every}; {seeding}."
        if self.min_rpo is None:
            can = f"the daily change alone needs {self.change_mbps:.2f} Mbit/s, so this link can sustain no RPO at all"
        else:
            assert self.min_interval is not None
            can = (
                f"the smallest RPO this link can sustain is {format_duration(self.min_rpo)} "
                f"(a run every {format_duration(self.min_interval)})"
            )
        if self.required_link_mbps is None:
            need = (
                f"no link can meet it with a per-run overhead of {format_duration(self.run_overhead)} "
                f"(the RPO must exceed twice the overhead)"
            )
        else:
            need = f"RPO {format_duration(self.requested_rpo)} needs at least {self.required_link_mbps:.2f} Mbit/s"
        return f"{what} is not feasible: {can}; {need}; {seeding}."

    def as_error(self) -> RpoInfeasible:
        return RpoInfeasible(self.message)


def assess_link(
    *,
    data_gib: float,
    daily_change_pct: float,
    link_mbps: float,
    rpo: timedelta,
    efficiency: float = DEFAULT_EFFICIENCY,
    run_overhead: timedelta = DEFAULT_RUN_OVERHEAD,
) -> Feasibility:
    """Assess a declared workload against the tenant's DR link (see the module docstring)."""
    size = _number("data_gib", data_gib)
    pct = _number("daily_change_pct", daily_change_pct)
    link = _number("link_mbps", link_mbps)
    eff = _number("efficiency", efficiency)
    if size <= 0:
        raise InvalidInput("data_gib", f"must be positive, got {data_gib}")
    if not 0 <= pct <= 100:
        raise InvalidInput("daily_change_pct", f"must be between 0 and 100, got {daily_change_pct}")
    if link <= 0:
        raise InvalidInput("link_mbps", f"must be positive, got {link_mbps}")
    if not 0 < eff <= 1:
        raise InvalidInput("efficiency", f"must be in (0, 1], got {efficiency}")
    if rpo <= timedelta(0):
        raise InvalidInput("rpo", f"must be positive, got {rpo}")
    if run_overhead < timedelta(0):
        raise InvalidInput("run_overhead", f"must not be negative, got {run_overhead}")

    usable_bps = link * 1e6 * eff
    size_bits = size * GIB * 8
    change_bps = size_bits * pct / 100 / SECONDS_PER_DAY
    k = change_bps / usable_bps
    o = run_overhead.total_seconds()
    r = rpo.total_seconds()

    seeding = timedelta(seconds=size_bits / usable_bps)
    min_rpo = min_interval = max_interval = None
    if k < 1:
        min_interval = timedelta(seconds=o / (1 - k))
        min_rpo = 2 * min_interval
        if rpo >= min_rpo:
            max_interval = max(timedelta(seconds=(r - o) / (1 + k)), min_interval)
    required = None if r <= 2 * o else change_bps / (1 - 2 * o / r) / eff / 1e6
    return Feasibility(
        requested_rpo=rpo,
        data_gib=size,
        daily_change_pct=pct,
        link_mbps=link,
        efficiency=eff,
        run_overhead=run_overhead,
        seeding_time=seeding,
        min_rpo=min_rpo,
        min_interval=min_interval,
        max_interval=max_interval,
        required_link_mbps=required,
    )


def require_feasible(
    *,
    data_gib: float,
    daily_change_pct: float,
    link_mbps: float,
    rpo: timedelta,
    efficiency: float = DEFAULT_EFFICIENCY,
    run_overhead: timedelta = DEFAULT_RUN_OVERHEAD,
) -> Feasibility:
    """``assess_link`` that raises ``RpoInfeasible`` (with the full explanation) when refused."""
    result = assess_link(
        data_gib=data_gib,
        daily_change_pct=daily_change_pct,
        link_mbps=link_mbps,
        rpo=rpo,
        efficiency=efficiency,
        run_overhead=run_overhead,
    )
    if not result.feasible:
        raise result.as_error()
    return result
