"""Ledger nodes and the two formulas everything else is built on.

A node is keyed (tenant, themed cloud, region).  The parent of (t, c, r) is
(parent(t), c, r); the parent of (province, c, r) is the region node r, the root
of every chain.  Each non-root node is either a *slice* of its parent (its limit
is carved out of the parent and guaranteed to it) or *shared* (it competes for the
parent's pool).  ``consumption_of`` says what a node consumes; ``carried`` says how
a change at a node shows up at its parent.  Both are per resource.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from quotas.vector import ZERO, Limit, Limits, ResourceVector, check_amount, check_resource, nonnegative


class NodeMode(StrEnum):
    SLICE = "slice"
    SHARED = "shared"
    ROOT = "root"


@dataclass(frozen=True)
class NodeKey:
    """(tenant, cloud, region); the region node has ``tenant`` and ``cloud`` both ``None``.

    Printed as ``tenant/cloud/region`` (region nodes as just ``region``); ``/`` is
    therefore not allowed inside the parts, which keeps the printed form unambiguous.
    """

    tenant: str | None
    cloud: str | None
    region: str

    def __post_init__(self) -> None:
        if (self.tenant is None) != (self.cloud is None):
            raise ValueError("tenant and cloud are either both set or both None (region node)")
        for part in (self.tenant, self.cloud, self.region):
            if part is not None and (not isinstance(part, str) or not part or "/" in part):
                raise ValueError(f"invalid key part {part!r}: non-empty string without '/' expected")

    @classmethod
    def for_region(cls, region: str) -> NodeKey:
        return cls(None, None, region)

    @property
    def is_region(self) -> bool:
        return self.tenant is None

    def __str__(self) -> str:
        if self.is_region:
            return self.region
        return f"{self.tenant}/{self.cloud}/{self.region}"


def chain_keys(tenants: Sequence[str], cloud: str, region: str) -> tuple[NodeKey, ...]:
    """Keys of a chain: ``tenants`` runs leaf -> ... -> province; the region node is appended."""
    return (*(NodeKey(t, cloud, region) for t in tenants), NodeKey.for_region(region))


def effective(limit: Limit, consumption: int) -> int:
    """What a slice child counts for in its parent: max(limit, consumption), or consumption if unlimited."""
    return consumption if limit is None else max(limit, consumption)


def contribution(limits: Limits, consumption: Mapping[str, int]) -> ResourceVector:
    """The slice-child term of ``consumption_of`` for every resource."""
    resources = set(consumption) | {r for r, limit in limits.items() if limit is not None}
    return ResourceVector({r: effective(limits.get(r), consumption.get(r, 0)) for r in resources})


def consumption_of(
    own: Mapping[str, int],
    slice_children: Iterable[tuple[Limits, Mapping[str, int]]] = (),
    shared_children: Iterable[Mapping[str, int]] = (),
) -> ResourceVector:
    """own used + reserved, + Σ slices max(limit, consumption), + Σ shared consumption.

    ``slice_children`` are (limits, consumption) pairs.  This is the definition the
    incremental bookkeeping (``carried``) must agree with; use it to recompute or verify.
    """
    total = ResourceVector(own)
    for limits, consumption in slice_children:
        total += contribution(limits, consumption)
    for consumption in shared_children:
        total += consumption
    return total


def _freeze_limits(limits: Limits) -> Mapping[str, Limit]:
    for resource, limit in limits.items():
        check_resource(resource)
        if limit is not None:
            check_amount(f"limit[{resource}]", limit, allow_negative=False)
    return MappingProxyType(dict(limits))


@dataclass(frozen=True)
class LedgerNode:
    """One ledger row as loaded by the persistence layer, with its *stored* consumption.

    Storing consumption (rather than summing the subtree on every request) is what
    makes admission O(depth); the functions here return the changes that keep it exact.
    """

    key: NodeKey
    mode: NodeMode
    limits: Limits = field(default_factory=dict)
    used: ResourceVector = ZERO
    reserved: ResourceVector = ZERO
    consumption: ResourceVector = ZERO

    def __post_init__(self) -> None:
        if (self.mode is NodeMode.ROOT) != self.key.is_region:
            raise ValueError(f"{self.key}: region nodes, and only they, have mode 'root'")
        object.__setattr__(self, "limits", _freeze_limits(self.limits))
        object.__setattr__(self, "used", nonnegative("used", self.used))
        object.__setattr__(self, "reserved", nonnegative("reserved", self.reserved))
        object.__setattr__(self, "consumption", nonnegative("consumption", self.consumption))
        if not self.own.fits_within(self.consumption):
            raise ValueError(f"{self.key}: stored consumption {self.consumption} < own used + reserved")

    @property
    def own(self) -> ResourceVector:
        return self.used + self.reserved

    def limit(self, resource: str) -> Limit:
        return self.limits.get(resource)

    def headroom(self, resource: str) -> int | None:
        """limit - consumption floored at 0; ``None`` when the node itself is unlimited."""
        limit = self.limit(resource)
        return None if limit is None else max(0, limit - self.consumption.get(resource, 0))

    def over_limit(self) -> tuple[str, ...]:
        """Resources whose consumption exceeds the limit (only after forced changes)."""
        return tuple(
            r for r, limit in sorted(self.limits.items()) if limit is not None and self.consumption.get(r, 0) > limit
        )


def carried(node: LedgerNode, delta: Mapping[str, int]) -> ResourceVector:
    """The change a change of ``delta`` in ``node``'s consumption makes to its parent's.

    Shared: passed unchanged.  Slice with limit L and consumption c: max(L, c+δ) - max(L, c),
    i.e. nothing while the node stays inside its slice (δ may be negative: a release).
    Root: nothing, it has no parent.
    """
    if node.mode is NodeMode.ROOT:
        return ZERO
    if node.mode is NodeMode.SHARED:
        return ResourceVector(delta)
    result: dict[str, int] = {}
    for resource, amount in delta.items():
        c = node.consumption.get(resource, 0)
        limit = node.limit(resource)
        result[resource] = effective(limit, c + amount) - effective(limit, c)
    return ResourceVector(result)
