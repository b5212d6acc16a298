"""Reading the audit trail, limited to the subtrees the caller audits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlmodel import col

from controlplane.audit.models import AuditEvent
from controlplane.auth.models import Role
from controlplane.auth.policy import PERMISSIONS, authorize
from controlplane.auth.principal import Principal
from controlplane.db.uow import UnitOfWork


@dataclass(frozen=True)
class AuditFilter:
    tenant: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _subtree(path: str) -> Any:
    return or_(AuditEvent.tenant_path == path, col(AuditEvent.tenant_path).startswith(path + "."))


def list_events(
    uow: UnitOfWork, who: Principal, flt: AuditFilter, *, after: int | None, limit: int
) -> tuple[Sequence[AuditEvent], str | None]:
    audit_roots = [p for r, p in who.bindings if Role(r) in PERMISSIONS["audit.read"]]
    if not audit_roots:
        authorize(who, "audit.read", flt.tenant)  # 404 outside scope, otherwise 403
    clauses = []
    for root in audit_roots:
        clauses.append(_subtree(root))
        if "." not in root:  # auditors of the whole province also see system-wide events
            clauses.append(col(AuditEvent.tenant_path).is_(None))
    stmt = select(AuditEvent).where(or_(*clauses))
    if flt.tenant is not None:
        stmt = stmt.where(_subtree(flt.tenant))
    if flt.actor is not None:
        stmt = stmt.where(AuditEvent.actor == flt.actor)
    if flt.action is not None:
        stmt = stmt.where(AuditEvent.action == flt.action)
    if flt.since is not None:
        stmt = stmt.where(AuditEvent.occurred_at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(AuditEvent.occurred_at < flt.until)
    if after is not None:
        stmt = stmt.where(AuditEvent.seq > after)
    rows = list(uow.session.scalars(stmt.order_by(AuditEvent.seq).limit(limit + 1)))
    nxt = str(rows[limit - 1].seq) if len(rows) > limit else None
    return rows[:limit], nxt
