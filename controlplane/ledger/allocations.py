"""Allocations: a tenant's footprint in (themed cloud, region), created with its ledger node.

A node exists once its allocation exists, and only below an existing parent node: the
parent of (t, c, r) is (parent(t), c, r); the province's parent is the region node.
Registers the tenant checks: a live allocation in a subtree pins its codes (they name
projects outside the database) and blocks retirement.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select, tuple_
from sqlmodel import Session, col

from controlplane.audit.record import AuditRecord
from controlplane.catalogue.models import CloudRow
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Conflict, NotFound, ValidationFailed
from controlplane.ledger import access
from controlplane.ledger.chain import apply_changes, limits_json, load_chain, over_limit
from controlplane.ledger.errors import AllocationMissing
from controlplane.ledger.models import Allocation, AllocationMode, AllocationStatus, LimitSource, QuotaNode
from controlplane.ledger.service import checked_limits, refused
from controlplane.tenants import service as tenants
from controlplane.tenants.models import Tenant, TenantStatus
from quotas import ZERO, LedgerNode, Limit, LimitSet, NodeKey, NodeMode, Refused, check_set_limit


def create_allocation(
    uow: UnitOfWork,
    tenant_path: str,
    cloud: str,
    region: str,
    mode: AllocationMode,
    limits: Mapping[str, Limit],
    direct_access: bool = False,
) -> Allocation:
    """Create the allocation and its ledger node (authorised like setting the node's limits).

    409 ``allocation-missing`` naming the parent when the parent tenant has no allocation
    in (cloud, region); 409 ``quota-exceeded`` when a slice is more than the chain can give.
    """
    principal = access.principal_of(uow)
    access.authorize_set_limit(principal, tenant_path)
    return insert_allocation(
        uow, tenant_path, cloud, region, mode, limits, direct_access=direct_access, actor=principal.name
    )


def insert_allocation(
    uow: UnitOfWork,
    tenant_path: str,
    cloud: str,
    region: str,
    mode: AllocationMode,
    limits: Mapping[str, Limit],
    *,
    direct_access: bool = False,
    actor: str | None = None,
) -> Allocation:
    """``create_allocation`` without the authorisation, for trusted callers (seeding)."""
    mode = AllocationMode(mode)
    if direct_access and mode is not AllocationMode.SLICE:
        raise ValidationFailed("direct access is only for slice allocations", field="direct_access")
    checked_limits(limits)
    tenant = uow.session.scalars(select(Tenant).where(col(Tenant.path) == tenant_path)).first()
    if tenant is None:
        raise NotFound(f"tenant '{tenant_path}' not found", tenant=tenant_path)
    if tenant.status != TenantStatus.ACTIVE:
        raise Conflict(f"tenant '{tenant_path}' is {tenant.status}", current_state=tenant.status, field="tenant")
    cloud_row = uow.session.get(CloudRow, cloud)
    if cloud_row is None:
        raise ValidationFailed(f"unknown themed cloud '{cloud}'", field="cloud")
    if region not in cloud_row.spec.get("regions", []):
        raise ValidationFailed(f"themed cloud '{cloud}' is not offered in region '{region}'", field="region")
    key = NodeKey(tenant_path, cloud, region)
    parent_key = (
        NodeKey.for_region(region) if tenant.parent_id is None else NodeKey(_parent(tenant_path), cloud, region)
    )
    try:
        parent_chain = load_chain(uow, parent_key, lock=True)
    except AllocationMissing as exc:
        raise AllocationMissing(
            str(parent_key),
            f"{parent_key} has no allocation: allocate it before {key}",
            parent=str(parent_key),
            tenant=tenant_path,
        ) from exc
    if parent_chain.allocation_status not in (None, AllocationStatus.ACTIVE.value):
        raise Conflict(
            f"{parent_key} is {parent_chain.allocation_status}: it takes no new allocations below it",
            node=str(parent_key),
            current_state=parent_chain.allocation_status,
        )
    if uow.session.scalars(select(QuotaNode.id).where(*_key_clause(tenant.id, cloud, region))).first():
        raise Conflict(f"{key} already has an allocation", node=str(key))
    # Decide first: a refused slice leaves nothing behind in the session.
    node_mode = NodeMode.SLICE if mode is AllocationMode.SLICE else NodeMode.SHARED
    fresh = LedgerNode(key, node_mode, {}, ZERO, ZERO, ZERO)
    outcome = check_set_limit([fresh, *parent_chain.nodes()], limits)
    if isinstance(outcome, Refused):
        raise refused(outcome, what=f"the {mode.value} of {key}")
    assert isinstance(outcome, LimitSet)  # nothing is consumed yet, so never below consumption
    now = uow.now()
    allocation = Allocation(
        tenant_id=tenant.id,
        cloud=cloud,
        region=region,
        mode=mode.value,
        direct_access=direct_access,
        status=AllocationStatus.ACTIVE.value,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(allocation)
    uow.session.flush()
    node_limits = limits_json(outcome.limits)
    node = QuotaNode(
        tenant_id=tenant.id,
        cloud=cloud,
        region=region,
        allocation_id=allocation.id,
        depth=tenant.depth + 1,
        mode=node_mode.value,
        limits=node_limits,
        limits_source=LimitSource.OPERATOR.value,
        over_limit=over_limit(node_limits, {}),
        updated_at=now,
    )
    uow.session.add(node)
    apply_changes(uow, parent_chain, {k: v for k, v in outcome.changes.items() if k != key})
    uow.session.flush()
    uow.audit(
        AuditRecord(
            "allocation.create",
            "allocation",
            str(key),
            tenant_path=tenant_path,
            after={"mode": mode.value, "direct_access": direct_access, "limits": node_limits},
        )
    )
    return allocation


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0]


def _key_clause(tenant_id: uuid.UUID, cloud: str, region: str) -> list[object]:
    return [col(QuotaNode.tenant_id) == tenant_id, col(QuotaNode.cloud) == cloud, col(QuotaNode.region) == region]


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllocationFilter:
    subtree: str | None = None
    cloud: str | None = None
    region: str | None = None
    status: AllocationStatus | None = None


def get_allocation(uow: UnitOfWork, allocation_id: uuid.UUID) -> tuple[Allocation, str]:
    principal = access.principal_of(uow)
    row = uow.session.execute(
        select(Allocation, Tenant.path)
        .join(Tenant, col(Tenant.id) == col(Allocation.tenant_id))
        .where(col(Allocation.id) == allocation_id)
    ).first()
    if row is None or not principal.scope.allows(row[1]):
        raise NotFound(f"allocation '{allocation_id}' not found", allocation=str(allocation_id))
    access.authorize_read(principal, NodeKey(row[1], row[0].cloud, row[0].region))
    return row[0], row[1]


def list_allocations(
    uow: UnitOfWork, flt: AllocationFilter, *, after: tuple[str, str, str] | None, limit: int
) -> tuple[Sequence[tuple[Allocation, str]], tuple[str, str, str] | None]:
    """Ordered by (tenant path, cloud, region); ``after`` is the last triple of the previous page."""
    principal = access.principal_of(uow)
    stmt = (
        select(Allocation, Tenant.path)
        .join(Tenant, col(Tenant.id) == col(Allocation.tenant_id))
        .where(tenants.scope_clause(principal.scope))
    )
    if flt.subtree is not None:
        stmt = stmt.where(tenants.subtree_clause(flt.subtree))
    if flt.cloud is not None:
        stmt = stmt.where(col(Allocation.cloud) == flt.cloud)
    if flt.region is not None:
        stmt = stmt.where(col(Allocation.region) == flt.region)
    if flt.status is not None:
        stmt = stmt.where(col(Allocation.status) == flt.status.value)
    order = (col(Tenant.path), col(Allocation.cloud), col(Allocation.region))
    if after is not None:
        stmt = stmt.where(tuple_(*order) > tuple_(*after))
    rows = [(a, p) for a, p in uow.session.execute(stmt.order_by(*order).limit(limit + 1))]
    nxt = None
    if len(rows) > limit:
        last, path = rows[limit - 1]
        nxt = (path, last.cloud, last.region)
    return rows[:limit], nxt


# --- tenant checks ------------------------------------------------------------------------------


def _first_live_allocation(session: Session, tenant: Tenant) -> str | None:
    row = session.execute(
        select(Tenant.path, Allocation.cloud, Allocation.region)
        .join(Allocation, col(Allocation.tenant_id) == col(Tenant.id))
        .where(tenants.subtree_clause(tenant.path), col(Allocation.status) != AllocationStatus.RETIRED.value)
        .order_by(col(Tenant.path), col(Allocation.cloud), col(Allocation.region))
        .limit(1)
    ).first()
    return None if row is None else f"{row[0]}/{row[1]}/{row[2]}"


def live_allocation_check(session: Session, tenant: Tenant) -> str | None:
    first = _first_live_allocation(session, tenant)
    return None if first is None else f"a live allocation ({first})"


def code_pin_check(session: Session, tenant: Tenant) -> str | None:
    first = _first_live_allocation(session, tenant)
    return None if first is None else f"allocations exist under this name ({first})"


if live_allocation_check not in tenants.LIVE_DEPENDENT_CHECKS:
    tenants.LIVE_DEPENDENT_CHECKS.append(live_allocation_check)
if code_pin_check not in tenants.CODE_PIN_CHECKS:
    tenants.CODE_PIN_CHECKS.append(code_pin_check)
