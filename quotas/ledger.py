"""Operations on a locked chain: admission, release, commit, forced changes, set-limit.

Every function takes the chain leaf-first (the node acted on first, the region node
last), as loaded and locked by the persistence layer, and returns the consumption
change to *add* to every chain node's stored consumption (``changes``, keyed by node,
in chain order, zero vectors included).  A change at a node travels up the chain via
``carried``; a node's limit is checked only for resources whose consumption the
change *increases* there, so a node that is over its limit (after a forced change)
still lets a slice child use its already-counted slice, but admits nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeAlias

from quotas.errors import BelowConsumption, Refused
from quotas.nodes import LedgerNode, NodeKey, NodeMode, carried, contribution
from quotas.vector import ZERO, Limit, Limits, ResourceVector, nonnegative

Changes: TypeAlias = Mapping[NodeKey, ResourceVector]
"""Consumption change per chain node, to be added to its stored consumption."""


@dataclass(frozen=True)
class Overage:
    """``node`` ends with ``consumption`` of ``resource`` above its ``limit``."""

    node: NodeKey
    resource: str
    consumption: int
    limit: int


@dataclass(frozen=True)
class Admitted:
    changes: Changes


@dataclass(frozen=True)
class Forced:
    """A change applied regardless of limits (usage sync records reality)."""

    changes: Changes
    over_limit: tuple[Overage, ...]


@dataclass(frozen=True)
class LimitSet:
    """``limits``: the node's complete new limits; ``over_limit``: only when forced below consumption."""

    limits: Limits
    changes: Changes
    over_limit: tuple[Overage, ...]


def _check_chain(chain: Sequence[LedgerNode]) -> None:
    """Catch chains that were loaded wrongly: they would silently corrupt the ledger."""
    if not chain or chain[-1].mode is not NodeMode.ROOT:
        raise ValueError("a chain must end at its region node")
    region = chain[-1].key.region
    cloud = chain[0].key.cloud
    for node in chain[:-1]:
        if node.mode is NodeMode.ROOT or node.key.cloud != cloud or node.key.region != region:
            raise ValueError(f"{node.key} does not belong in a chain of {cloud}/{region}")
    if len({node.key for node in chain}) != len(chain):
        raise ValueError("a chain must not repeat a node")


def _carry(chain: Sequence[LedgerNode], delta: ResourceVector) -> list[ResourceVector]:
    """The consumption change at each chain node when the first one's changes by ``delta``."""
    deltas = [delta]
    for node in chain[:-1]:
        deltas.append(carried(node, deltas[-1]))
    return deltas


def _changes(chain: Sequence[LedgerNode], deltas: Sequence[ResourceVector]) -> Changes:
    return MappingProxyType({node.key: d for node, d in zip(chain, deltas, strict=True)})


def _first_refusal(chain: Sequence[LedgerNode], deltas: Sequence[ResourceVector]) -> Refused | None:
    """Lowest node, then first resource, where an increase would exceed the limit."""
    for node, delta in zip(chain, deltas, strict=True):
        for resource, amount in delta.items():
            limit = node.limit(resource)
            consumption = node.consumption.get(resource, 0)
            if amount > 0 and limit is not None and consumption + amount > limit:
                return Refused(node.key, resource, amount, max(0, limit - consumption))
    return None


def _overages(chain: Sequence[LedgerNode], deltas: Sequence[ResourceVector]) -> tuple[Overage, ...]:
    result = []
    for node, delta in zip(chain, deltas, strict=True):
        after = node.consumption + delta
        for resource, limit in sorted(node.limits.items()):
            if limit is not None and after.get(resource, 0) > limit:
                result.append(Overage(node.key, resource, after.get(resource, 0), limit))
    return tuple(result)


def admit(chain: Sequence[LedgerNode], delta: Mapping[str, int]) -> Admitted | Refused:
    """Admit reserving (or otherwise adding) ``delta`` at ``chain[0]``, or say where it is refused.

    On ``Admitted`` the caller adds ``delta`` to chain[0]'s reserved and ``changes`` to
    the stored consumptions.
    """
    _check_chain(chain)
    deltas = _carry(chain, nonnegative("delta", delta))
    refusal = _first_refusal(chain, deltas)
    return refusal if refusal is not None else Admitted(_changes(chain, deltas))


def apply_release(chain: Sequence[LedgerNode], amount: Mapping[str, int]) -> Changes:
    """Changes (negative) for removing ``amount`` of chain[0]'s own used/reserved.

    Symmetric to admission: a slice passes max(L, c - δ) - max(L, c) upwards, i.e.
    only the part released above its limit line reaches the parent.  Always allowed.
    """
    _check_chain(chain)
    amount = nonnegative("amount", amount)
    if not amount.fits_within(chain[0].own):
        raise ValueError(f"{chain[0].key}: cannot release {amount}, own used + reserved is {chain[0].own}")
    return _changes(chain, _carry(chain, -amount))


def commit(chain: Sequence[LedgerNode], amount: Mapping[str, int]) -> Changes:
    """Changes for moving ``amount`` of chain[0] from reserved to used: none, consumption counts both.

    Exists to validate the move and keep every operation shaped alike.  If the real
    usage differs from the reservation, commit the reservation and then ``sync_used``.
    """
    _check_chain(chain)
    amount = nonnegative("amount", amount)
    if not amount.fits_within(chain[0].reserved):
        raise ValueError(f"{chain[0].key}: cannot commit {amount}, reserved is {chain[0].reserved}")
    return _changes(chain, [ZERO] * len(chain))


def apply_forced(chain: Sequence[LedgerNode], delta: Mapping[str, int]) -> Forced:
    """Apply a signed change of chain[0]'s own used/reserved regardless of limits.

    For recording reality (usage sync, measured capacity): the change is never refused,
    but every chain node that ends over a limit is reported, and admits nothing more
    of that resource until it is back under.
    """
    _check_chain(chain)
    delta = ResourceVector(delta)
    if not (chain[0].own + delta).is_nonnegative():
        raise ValueError(f"{chain[0].key}: {delta} would make own used + reserved negative")
    deltas = _carry(chain, delta)
    return Forced(_changes(chain, deltas), _overages(chain, deltas))


def sync_used(chain: Sequence[LedgerNode], used: Mapping[str, int]) -> Forced:
    """Replace chain[0]'s used by the measured ``used`` (complete: missing resources are 0)."""
    return apply_forced(chain, nonnegative("used", used) - chain[0].used)


def check_set_limit(
    chain: Sequence[LedgerNode], new_limits: Mapping[str, Limit], *, force: bool = False
) -> LimitSet | Refused | BelowConsumption:
    """Check changing chain[0]'s limits for the resources in ``new_limits`` (``UNLIMITED`` removes one).

    Below the node's own consumption needs ``force``.  For a slice, the parent's
    consumption changes by max(L', c) - max(L, c), carried upwards and checked at every
    ancestor like an admission; ancestors can only refuse a raise, and ``force`` does not
    override them.  A shared node's limit concerns only itself.
    """
    _check_chain(chain)
    node = chain[0]
    # Rebuilding the node validates the new limits before anything is compared.
    retargeted = LedgerNode(
        node.key, node.mode, {**node.limits, **new_limits}, node.used, node.reserved, node.consumption
    )
    limits = retargeted.limits
    for resource in sorted(new_limits):
        limit = limits[resource]
        consumption = node.consumption.get(resource, 0)
        if limit is not None and limit < consumption and not force:
            return BelowConsumption(node.key, resource, consumption, limit)
    deltas = [ZERO] * len(chain)
    if node.mode is NodeMode.SLICE:
        growth = contribution(limits, node.consumption) - contribution(node.limits, node.consumption)
        deltas = [ZERO, *_carry(chain[1:], growth)]
        refusal = _first_refusal(chain, deltas)
        if refusal is not None:
            return refusal
    return LimitSet(limits, _changes(chain, deltas), _overages([retargeted], [ZERO]))
