"""Loading, locking and writing back ledger chains.

A chain is leaf -> ... -> province -> region. On PostgreSQL it is locked with ONE
``SELECT … FOR UPDATE OF quota_nodes ORDER BY depth DESC``: rows are locked in the order the
sort emits them, leaf first and the region (every admission's hottest row) last. Two chains
share only a suffix (ancestors), which both take in the same order, so they cannot deadlock;
and a unit waits for a busy county (a commit holds only the leaf) *before* it holds the
region, never while it does, so the region lock is held only for the writes and the commit.
(Root first, as before, made every admission in the region queue behind any commit on any
county.) On SQLite a write unit holds the database write lock from ``BEGIN IMMEDIATE`` on,
and ``FOR UPDATE`` is not rendered. Lock order across the ledger: reservation row (by owner)
-> chain (leaf to root). A unit that changes two chains of one region may deadlock with
another doing the same in the other order; PostgreSQL aborts one and the unit is retried once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from controlplane.db.uow import UnitOfWork
from controlplane.ledger.errors import AllocationMissing
from controlplane.ledger.models import Allocation, QuotaNode
from controlplane.tenants.models import Tenant
from quotas import LedgerNode, NodeKey, NodeMode, ResourceVector


def vector(data: Mapping[str, Any] | None) -> ResourceVector:
    return ResourceVector(dict(data or {}))


def as_json(v: Mapping[str, int]) -> dict[str, int]:
    """Sparse and sorted, so equal vectors store (and audit) identically."""
    return {r: int(a) for r, a in sorted(v.items()) if a}


def limits_json(limits: Mapping[str, int | None]) -> dict[str, int]:
    """Only real limits are stored; a missing resource is unlimited."""
    return {r: int(a) for r, a in sorted(limits.items()) if a is not None}


def prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def node_key(row: QuotaNode, path: str | None) -> NodeKey:
    if row.tenant_id is None:
        return NodeKey.for_region(row.region)
    return NodeKey(path, row.cloud, row.region)


def to_ledger(row: QuotaNode, key: NodeKey) -> LedgerNode:
    return LedgerNode(
        key, NodeMode(row.mode), dict(row.limits), vector(row.used), vector(row.reserved), vector(row.consumption)
    )


def over_limit(limits: Mapping[str, Any], consumption: Mapping[str, Any]) -> list[str]:
    return sorted(r for r, limit in limits.items() if limit is not None and int(consumption.get(r, 0)) > int(limit))


@dataclass
class Chain:
    """Rows leaf first, with their keys; ``allocation_status`` is the leaf's allocation status."""

    rows: list[QuotaNode]
    keys: list[NodeKey]
    allocation_status: str | None

    @property
    def leaf(self) -> QuotaNode:
        return self.rows[0]

    @property
    def key(self) -> NodeKey:
        return self.keys[0]

    def nodes(self) -> list[LedgerNode]:
        return [to_ledger(row, key) for row, key in zip(self.rows, self.keys, strict=True)]


def _chain_statement(*, region_only: bool, lock: bool) -> Any:
    """Built once (building a statement costs more than running it): parameters
    ``region``, and unless ``region_only`` also ``cloud`` and ``prefixes`` (the tenant path's)."""
    stmt = select(QuotaNode, Tenant.path, Allocation.status).outerjoin(
        Tenant, col(Tenant.id) == col(QuotaNode.tenant_id)
    )
    stmt = stmt.outerjoin(Allocation, col(Allocation.id) == col(QuotaNode.allocation_id))
    region_node = col(QuotaNode.tenant_id).is_(None)
    in_region = col(QuotaNode.region) == bindparam("region")
    if region_only:
        stmt = stmt.where(in_region, region_node)
    else:
        in_chain = and_(
            col(QuotaNode.cloud) == bindparam("cloud"), col(Tenant.path).in_(bindparam("prefixes", expanding=True))
        )
        stmt = stmt.where(in_region, or_(region_node, in_chain))
    stmt = stmt.order_by(col(QuotaNode.depth).desc())
    if lock:
        stmt = stmt.with_for_update(of=QuotaNode)
    # Re-read rows the session may hold already: what was read before the lock may be stale.
    return stmt.execution_options(populate_existing=True)


_CHAIN_STATEMENTS = {
    (region_only, lock): _chain_statement(region_only=region_only, lock=lock)
    for region_only in (False, True)
    for lock in (False, True)
}


def load_chain(uow: UnitOfWork, key: NodeKey, *, lock: bool) -> Chain:
    """The chain of ``key``, leaf first; ``lock`` takes the row locks root to leaf.

    A missing leaf is ``allocation-missing`` naming it; a missing ancestor (which only a
    broken invariant could cause) names the ancestor.
    """
    params: dict[str, Any] = {"region": key.region}
    if not key.is_region:
        assert key.tenant is not None
        params |= {"cloud": key.cloud, "prefixes": prefixes(key.tenant)}
    found = list(uow.session.execute(_CHAIN_STATEMENTS[(key.is_region, lock)], params))
    expected = [NodeKey.for_region(key.region)]
    if not key.is_region:
        assert key.tenant is not None
        expected += [NodeKey(p, key.cloud, key.region) for p in prefixes(key.tenant)]
    by_key = {node_key(row, path): (row, status) for row, path, status in found}
    for i, want in enumerate(reversed(expected)):
        if want not in by_key:
            if i == 0:
                raise AllocationMissing(str(want))
            raise AllocationMissing(
                str(want),
                f"no allocation exists for {want}, which {key} needs above it",
                requested_node=str(key),
            )
    ordered = list(reversed(expected))
    rows = [by_key[k][0] for k in ordered]
    return Chain(rows=rows, keys=ordered, allocation_status=by_key[ordered[0]][1])


_WRITTEN = ("limits", "limits_source", "used", "reserved", "consumption", "over_limit", "updated_at")
_NODES = QuotaNode.__table__  # type: ignore[attr-defined]
_UPDATE_NODE = (
    update(_NODES).where(_NODES.c.id == bindparam("node_id")).values({name: bindparam(name) for name in _WRITTEN})
)


def write_nodes(uow: UnitOfWork, rows: Sequence[QuotaNode], values: Sequence[dict[str, Any]]) -> None:
    """One executemany for every changed node; the loaded objects take the same values as
    already committed ones, so the ORM flush (slow, and inside the lock) has nothing to do."""
    if not rows:
        return
    params = []
    for row, changed in zip(rows, values, strict=True):
        for name, value in changed.items():
            set_committed_value(row, name, value)
        params.append({"node_id": row.id, **{name: getattr(row, name) for name in _WRITTEN}})
    uow.session.execute(_UPDATE_NODE, params)


def apply_changes(
    uow: UnitOfWork,
    chain: Chain,
    changes: Mapping[NodeKey, Mapping[str, int]],
    *,
    used: Mapping[str, int] | None = None,
    reserved: Mapping[str, int] | None = None,
    limits: Mapping[str, int | None] | None = None,
    limits_source: str | None = None,
) -> list[QuotaNode]:
    """Add ``changes`` to the stored consumptions; replace the leaf's used/reserved/limits if given.

    Returns the rows that changed. ``over_limit`` is recomputed for every changed row.
    """
    now = uow.now()
    rows: list[QuotaNode] = []
    values: list[dict[str, Any]] = []
    for index, (row, key) in enumerate(zip(chain.rows, chain.keys, strict=True)):
        new: dict[str, Any] = {}
        delta = changes.get(key)
        if delta:
            new["consumption"] = as_json(vector(row.consumption) + delta)
        if index == 0:
            if used is not None:
                new["used"] = as_json(used)
            if reserved is not None:
                new["reserved"] = as_json(reserved)
            if limits is not None:
                new["limits"] = limits_json(limits)
            if limits_source is not None:
                new["limits_source"] = limits_source
        if new:
            new["over_limit"] = over_limit(new.get("limits", row.limits), new.get("consumption", row.consumption))
            new["updated_at"] = now
            rows.append(row)
            values.append(new)
    write_nodes(uow, rows, values)
    return rows


def snapshot(row: QuotaNode) -> dict[str, Any]:
    """What an audit record keeps of a node."""
    return {
        "limits": dict(row.limits),
        "used": dict(row.used),
        "reserved": dict(row.reserved),
        "consumption": dict(row.consumption),
        "over_limit": list(row.over_limit),
    }
