"""Resource vectors: immutable, sparse integer amounts keyed by resource name.

Resource names are plain strings so that a new resource (a GPU model, say) needs no
code change; the standard set is provided as constants.  Zero amounts are never
stored, so two vectors that mean the same thing compare (and hash) equal.  Amounts
are signed because deltas are vectors too (a release is a negative change); the
places where a negative amount makes no sense validate that themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final, TypeAlias

VCPUS: Final = "vcpus"
RAM_MB: Final = "ram_mb"
INSTANCES: Final = "instances"
VOLUME_GB: Final = "volume_gb"
VOLUMES: Final = "volumes"
OBJECT_GB: Final = "object_gb"
K8S_CPU_M: Final = "k8s_cpu_m"
K8S_MEMORY_MB: Final = "k8s_memory_mb"
BACKUP_GB: Final = "backup_gb"

STANDARD_RESOURCES: Final[tuple[str, ...]] = (
    VCPUS,
    RAM_MB,
    INSTANCES,
    VOLUME_GB,
    VOLUMES,
    OBJECT_GB,
    K8S_CPU_M,
    K8S_MEMORY_MB,
    BACKUP_GB,
)

UNLIMITED: Final = None
"""The explicit "no limit" value.  A limit is an ``int`` or ``UNLIMITED``, never a magic number."""

Limit: TypeAlias = int | None
Limits: TypeAlias = Mapping[str, Limit]
"""Per-resource limits of one node; a missing resource is unlimited, like ``UNLIMITED``."""


def check_amount(name: str, value: object, *, allow_negative: bool = True) -> int:
    """Return ``value`` if it is a proper amount; bools are rejected although they are ints."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name}: amount must be an int, got {value!r}")
    if value < 0 and not allow_negative:
        raise ValueError(f"{name}: amount must not be negative, got {value}")
    return value


def check_resource(name: object) -> str:
    """Return ``name`` if it can name a resource (a non-empty string)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"resource name must be a non-empty string, got {name!r}")
    return name


class ResourceVector(Mapping[str, int]):
    """Immutable mapping resource -> amount, with componentwise arithmetic.

    Missing resources are zero: use ``vector.get(resource, 0)``.  Iteration is in
    sorted resource order so that refusals and reports are deterministic.
    """

    __slots__ = ("_amounts",)
    _amounts: dict[str, int]

    def __init__(self, amounts: Mapping[str, int] | None = None, /, **named: int) -> None:
        merged = {**(amounts or {}), **named}
        for resource, amount in merged.items():
            check_amount(check_resource(resource), amount)
        self._amounts = {r: a for r, a in sorted(merged.items()) if a != 0}

    def __getitem__(self, resource: str) -> int:
        return self._amounts[resource]

    def __iter__(self) -> Iterator[str]:
        return iter(self._amounts)

    def __len__(self) -> int:
        return len(self._amounts)

    def __hash__(self) -> int:
        return hash(frozenset(self._amounts.items()))

    def __repr__(self) -> str:
        return f"ResourceVector({self._amounts!r})"

    def _combine(self, other: Mapping[str, int], sign: int) -> ResourceVector:
        result = dict(self._amounts)
        for resource, amount in other.items():
            result[resource] = result.get(resource, 0) + sign * amount
        return ResourceVector(result)

    def __add__(self, other: Mapping[str, int]) -> ResourceVector:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self._combine(other, 1)

    def __sub__(self, other: Mapping[str, int]) -> ResourceVector:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self._combine(other, -1)

    def __neg__(self) -> ResourceVector:
        return ResourceVector({r: -a for r, a in self._amounts.items()})

    def maximum(self, other: Mapping[str, int]) -> ResourceVector:
        """Componentwise max (a missing resource counts as zero)."""
        keys = set(self._amounts) | set(other)
        return ResourceVector({r: max(self.get(r, 0), other.get(r, 0)) for r in keys})

    def positive_part(self) -> ResourceVector:
        """Only the strictly positive amounts (componentwise max with zero)."""
        return ResourceVector({r: a for r, a in self._amounts.items() if a > 0})

    def is_nonnegative(self) -> bool:
        return all(a >= 0 for a in self._amounts.values())

    def fits_within(self, other: Mapping[str, int]) -> bool:
        """True iff every amount is <= the corresponding amount of ``other``."""
        return all(self.get(r, 0) <= other.get(r, 0) for r in set(self._amounts) | set(other))


ZERO: Final = ResourceVector()


def nonnegative(name: str, vector: Mapping[str, int]) -> ResourceVector:
    """Coerce to a ResourceVector and reject negative amounts (used, reserved, requests)."""
    result = vector if isinstance(vector, ResourceVector) else ResourceVector(vector)
    for resource, amount in result.items():
        check_amount(f"{name}[{resource}]", amount, allow_negative=False)
    return result
