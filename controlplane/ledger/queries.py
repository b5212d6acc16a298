"""Listing ledger nodes (cursor-paginated, scoped to what the caller may see)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, false, func, or_, select, true, tuple_
from sqlmodel import col

from controlplane.db.uow import UnitOfWork
from controlplane.ledger import access
from controlplane.ledger.chain import node_key
from controlplane.ledger.models import QuotaNode
from controlplane.tenants import service as tenants
from controlplane.tenants.models import Tenant
from quotas import NodeKey

Cursor = tuple[str, str, str]


@dataclass(frozen=True)
class NodeFilter:
    region: str | None = None
    cloud: str | None = None
    subtree: str | None = None


def list_nodes(
    uow: UnitOfWork, flt: NodeFilter, *, after: Cursor | None, limit: int
) -> tuple[Sequence[tuple[QuotaNode, NodeKey]], Cursor | None]:
    """By (region, cloud, tenant path); a region's own node comes first within it."""
    principal = access.principal_of(uow)
    region_node = col(QuotaNode.tenant_id).is_(None)
    roots = principal.scope.roots
    sees_regions = roots is None or any("." not in r for r in roots)
    stmt = select(QuotaNode, Tenant.path).outerjoin(Tenant, col(Tenant.id) == col(QuotaNode.tenant_id))
    stmt = stmt.where(
        or_(
            and_(region_node, true() if sees_regions else false()),
            and_(~region_node, tenants.scope_clause(principal.scope)),
        )
    )
    if flt.region is not None:
        stmt = stmt.where(col(QuotaNode.region) == flt.region)
    if flt.cloud is not None:
        stmt = stmt.where(col(QuotaNode.cloud) == flt.cloud)
    if flt.subtree is not None:
        stmt = stmt.where(tenants.subtree_clause(flt.subtree))
    order = (col(QuotaNode.region), func.coalesce(col(QuotaNode.cloud), ""), func.coalesce(col(Tenant.path), ""))
    if after is not None:
        stmt = stmt.where(tuple_(*order) > tuple_(*after))
    rows = [(row, node_key(row, path)) for row, path in uow.session.execute(stmt.order_by(*order).limit(limit + 1))]
    nxt = None
    if len(rows) > limit:
        last, key = rows[limit - 1]
        nxt = (last.region, last.cloud or "", key.tenant or "")
    return rows[:limit], nxt
