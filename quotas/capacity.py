"""Region limits from raw capacity × overcommit.

Configuration gives capacity now; measured capacity replaces it later through the
same function.  A resource without known capacity gets an explicit ``UNLIMITED``,
so "we don't know" is never confused with a large number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from fractions import Fraction

from quotas.vector import STANDARD_RESOURCES, UNLIMITED, Limit, check_amount, check_resource

Overcommit = int | float | Fraction


def _ratio(resource: str, value: Overcommit) -> Fraction:
    # Through str() so that 1.1 means 11/10, not the nearest binary float.
    ratio = Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    if ratio <= 0:
        raise ValueError(f"overcommit[{resource}] must be positive, got {value}")
    return ratio


def region_limits(
    capacity: Mapping[str, int],
    overcommit: Mapping[str, Overcommit] | None = None,
    resources: Iterable[str] = STANDARD_RESOURCES,
) -> dict[str, Limit]:
    """floor(capacity × overcommit) per resource (overcommit defaults to 1).

    Every resource in ``resources`` or ``capacity`` appears in the result;
    those without a capacity are ``UNLIMITED``.
    """
    overcommit = overcommit or {}
    limits: dict[str, Limit] = {check_resource(r): UNLIMITED for r in resources}
    for resource, raw in capacity.items():
        check_amount(f"capacity[{check_resource(resource)}]", raw, allow_negative=False)
        limits[resource] = math.floor(raw * _ratio(resource, overcommit.get(resource, 1)))
    return limits
