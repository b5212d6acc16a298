"""`GET /v1/audit`: the trail, for auditors, limited to the subtrees they audit."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from controlplane.api.deps import PrincipalDep, UnitOfWorkDep
from controlplane.api.pagination import Cursor, Limit, Page, decode_cursor, next_link
from controlplane.audit import service
from controlplane.audit.service import AuditFilter
from controlplane.errors import ValidationFailed
from controlplane.tenants.schemas import TenantPath

router = APIRouter(prefix="/v1", tags=["audit"])


class AuditEventPublic(BaseModel):
    seq: int
    occurred_at: datetime
    actor: str
    action: str
    target_type: str
    target: str
    tenant: str | None
    request_id: str | None
    client_addr: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    extra: dict[str, Any] | None
    before_digest: str | None
    after_digest: str | None
    hash: str


@router.get("/audit", response_model=Page[AuditEventPublic])
def list_audit(
    request: Request,
    uow: UnitOfWorkDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    tenant: Annotated[TenantPath | None, Query(description="Only this subtree")] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=80, pattern=r"^[a-z0-9.-]+$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[AuditEventPublic]:
    after = decode_cursor(cursor)
    if after is not None and not after.isdigit():
        raise ValidationFailed("cursor is not one this API issued", field="cursor")
    flt = AuditFilter(tenant=tenant, actor=actor, action=action, since=since, until=until)
    rows, nxt = service.list_events(uow, who, flt, after=int(after) if after else None, limit=limit)
    items = [
        AuditEventPublic(
            seq=e.seq,
            occurred_at=e.occurred_at,
            actor=e.actor,
            action=e.action,
            target_type=e.target_type,
            target=e.target,
            tenant=e.tenant_path,
            request_id=e.request_id,
            client_addr=e.client_addr,
            before=e.before,
            after=e.after,
            extra=e.extra,
            before_digest=e.before_digest,
            after_digest=e.after_digest,
            hash=e.hash,
        )
        for e in rows
    ]
    return Page(items=items, next=next_link(request, nxt))
