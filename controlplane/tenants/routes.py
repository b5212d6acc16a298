"""Tenant tree endpoints. Paths name tenants (`hubei.wuhan.jiangan`), never ids."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, status

from controlplane.api.deps import PrincipalDep, UnitOfWorkDep
from controlplane.api.pagination import Cursor, Limit, Page, decode_cursor, next_link
from controlplane.tenants import service
from controlplane.tenants.models import TenantKind, TenantStatus
from controlplane.tenants.schemas import (
    PATH_PATTERN,
    StatusChange,
    TenantCreate,
    TenantPublic,
    TenantUpdate,
)

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])

TenantPathParam = Annotated[str, Path(pattern=PATH_PATTERN, max_length=400, description="e.g. hubei.wuhan")]
PathQuery = Annotated[str | None, Query(pattern=PATH_PATTERN, max_length=400)]


@router.get("", response_model=Page[TenantPublic])
def list_tenants(
    request: Request,
    uow: UnitOfWorkDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    parent: PathQuery = None,
    subtree: PathQuery = None,
    kind: TenantKind | None = None,
    status_: Annotated[TenantStatus | None, Query(alias="status")] = None,
    code: Annotated[str | None, Query(max_length=20)] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=100, description="Name contains")] = None,
) -> Page[TenantPublic]:
    flt = service.TenantFilter(parent=parent, subtree=subtree, kind=kind, status=status_, q=q, code=code)
    rows, after = service.list_tenants(uow, who.scope, flt, after=decode_cursor(cursor), limit=limit)
    return Page(items=[TenantPublic.from_row(r) for r in rows], next=next_link(request, after))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TenantPublic)
def create_tenant(body: TenantCreate, uow: UnitOfWorkDep, who: PrincipalDep) -> TenantPublic:
    return TenantPublic.from_row(service.create(uow, who, body))


def _status_change(target: TenantStatus):  # type: ignore[no-untyped-def]
    def change(path: TenantPathParam, body: StatusChange, uow: UnitOfWorkDep, who: PrincipalDep) -> TenantPublic:
        return TenantPublic.from_row(service.change_status(uow, who, path, target, body.reason))

    return change


router.add_api_route(
    "/{path}:suspend",
    _status_change(TenantStatus.SUSPENDED),
    methods=["POST"],
    response_model=TenantPublic,
    name="suspend_tenant",
    summary="Suspend a tenant",
)
router.add_api_route(
    "/{path}:reactivate",
    _status_change(TenantStatus.ACTIVE),
    methods=["POST"],
    response_model=TenantPublic,
    name="reactivate_tenant",
    summary="Reactivate a suspended tenant",
)
router.add_api_route(
    "/{path}:retire",
    _status_change(TenantStatus.RETIRED),
    methods=["POST"],
    response_model=TenantPublic,
    name="retire_tenant",
    summary="Retire a tenant (nothing live may remain below it)",
)


@router.get("/{path}/ancestors", response_model=list[TenantPublic])
def get_ancestors(path: TenantPathParam, uow: UnitOfWorkDep, who: PrincipalDep) -> list[TenantPublic]:
    return [TenantPublic.from_row(r) for r in service.ancestors(uow, who.scope, path)]


@router.get("/{path}", response_model=TenantPublic)
def get_tenant(path: TenantPathParam, uow: UnitOfWorkDep, who: PrincipalDep) -> TenantPublic:
    return TenantPublic.from_row(service.get(uow, who.scope, path))


@router.patch("/{path}", response_model=TenantPublic)
def update_tenant(
    path: TenantPathParam,
    body: TenantUpdate,
    uow: UnitOfWorkDep,
    who: PrincipalDep,
    if_match: Annotated[str | None, Header(pattern=r'^"?\d+"?$', description="Expected version")] = None,
) -> TenantPublic:
    version = int(if_match.strip('"')) if if_match else None
    return TenantPublic.from_row(service.update(uow, who, path, body, if_version=version))
