"""Operation rows: created in the caller's unit, claimed by workers with a conditional UPDATE."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select

from controlplane.auth.policy import authorize, can
from controlplane.auth.principal import Principal
from controlplane.db.uow import Job, UnitOfWork
from controlplane.errors import NotFound
from controlplane.operations.models import Operation, OperationState
from controlplane.tenants import service as tenants
from controlplane.tenants.models import Tenant

OPERATION_TASK = "chutian.operations.run"


def start(
    uow: UnitOfWork, kind: str, *, params: dict[str, Any] | None = None, tenant_id: uuid.UUID | None = None
) -> Operation:
    """Create the row and queue its job; the job leaves only if the unit commits."""
    now = uow.now()
    op = Operation(
        kind=kind,
        params=params or {},
        tenant_id=tenant_id,
        created_at=now,
        updated_at=now,
        created_by=getattr(uow.principal, "name", None),
    )
    uow.session.add(op)
    uow.session.flush()
    uow.enqueue(Job(OPERATION_TASK, {"operation_id": str(op.id)}))
    return op


def get(uow: UnitOfWork, operation_id: uuid.UUID) -> Operation:
    row = uow.session.get(Operation, operation_id)
    if row is None:
        raise NotFound(f"operation '{operation_id}' not found", operation=str(operation_id))
    return row


def get_visible(uow: UnitOfWork, who: Principal, operation_id: uuid.UUID) -> Operation:
    """An operation belongs to its tenant's subtree; system operations to province-level roles."""
    row = uow.session.get(Operation, operation_id)
    path = _tenant_path(uow, row.tenant_id) if row is not None and row.tenant_id else None
    if row is None or (path is None and not can(who, "operations.read", None)):
        raise NotFound(f"operation '{operation_id}' not found", operation=str(operation_id))
    if path is not None:
        authorize(who, "operations.read", path, what=f"operation '{operation_id}'")
    return row


def _tenant_path(uow: UnitOfWork, tenant_id: uuid.UUID) -> str | None:
    return uow.session.scalar(select(Tenant.path).where(Tenant.id == tenant_id))


def list_operations(
    uow: UnitOfWork,
    who: Principal,
    *,
    state: OperationState | None,
    kind: str | None,
    tenant: str | None,
    after: str | None,
    limit: int,
) -> tuple[Sequence[Operation], str | None]:
    visible = [tenants.scope_clause(who.scope)]
    if can(who, "operations.read", None):
        visible.append(Operation.tenant_id.is_(None))  # type: ignore[union-attr]
    stmt = select(Operation).outerjoin(Tenant, Tenant.id == Operation.tenant_id).where(or_(*visible))
    if tenant is not None:
        stmt = stmt.where(tenants.subtree_clause(tenant))
    if state is not None:
        stmt = stmt.where(Operation.state == state.value)
    if kind is not None:
        stmt = stmt.where(Operation.kind == kind)
    if after is not None:
        stmt = stmt.where(Operation.id > uuid.UUID(after))
    rows = list(uow.session.scalars(stmt.order_by(Operation.id).limit(limit + 1)))
    return rows[:limit], (str(rows[limit - 1].id) if len(rows) > limit else None)
