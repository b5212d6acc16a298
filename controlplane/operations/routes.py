from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from controlplane.api.deps import PrincipalDep, UnitOfWorkDep
from controlplane.api.pagination import Cursor, Limit, Page, decode_cursor, next_link
from controlplane.auth.policy import authorize
from controlplane.errors import ValidationFailed
from controlplane.operations import service
from controlplane.operations.models import OperationState
from controlplane.operations.schemas import OperationPublic
from controlplane.tenants.schemas import TenantPath

router = APIRouter(prefix="/v1", tags=["operations"])


@router.get("/operations", response_model=Page[OperationPublic])
def list_operations(
    request: Request,
    uow: UnitOfWorkDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    state: OperationState | None = None,
    kind: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z0-9.-]+$")] = None,
    tenant: Annotated[TenantPath | None, Query(description="Only this subtree")] = None,
) -> Page[OperationPublic]:
    after = decode_cursor(cursor)
    if after is not None:
        try:
            uuid.UUID(after)
        except ValueError:
            raise ValidationFailed("cursor is not one this API issued", field="cursor") from None
    rows, nxt = service.list_operations(uow, who, state=state, kind=kind, tenant=tenant, after=after, limit=limit)
    return Page(items=[OperationPublic.from_row(r) for r in rows], next=next_link(request, nxt))


@router.get("/operations/{operation_id}", response_model=OperationPublic)
def get_operation(operation_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep) -> OperationPublic:
    return OperationPublic.from_row(service.get_visible(uow, who, operation_id))


@router.post("/system:selftest", status_code=202, response_model=OperationPublic, tags=["system"])
def selftest(uow: UnitOfWorkDep, who: PrincipalDep) -> OperationPublic:
    """Queue a job the worker runs and signs with its pid: proves the queue path end to end."""
    authorize(who, "system.selftest", None)
    return OperationPublic.from_row(service.start(uow, "selftest"))
