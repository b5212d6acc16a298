"""Information systems and requests: create (idempotent), edit, read, list and the verbs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import JSONResponse

from controlplane.api.deps import PrincipalDep, UnitOfWorkDep, app_context
from controlplane.api.pagination import Cursor, Limit, Page, decode_cursor, next_link
from controlplane.errors import ValidationFailed
from controlplane.requests import idempotency, service, workflow
from controlplane.requests import provisioning as _provisioning  # noqa: F401  (steps and hooks)
from controlplane.requests.schemas import (
    RequestCreate,
    RequestPublic,
    RequestUpdate,
    SystemCreate,
    SystemPublic,
    VerbBody,
)
from controlplane.requests.specs import RequestKind
from controlplane.requests.states import RequestState
from controlplane.tenants.schemas import TenantPath

router = APIRouter(prefix="/v1", tags=["requests"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=8, max_length=200)]


def _public(uow: UnitOfWorkDep, seen: service.Visible) -> RequestPublic:
    return RequestPublic.from_row(
        seen.request,
        seen.path,
        steps=service.steps_of(uow, seen.request.id),
        transitions=service.transitions_of(uow, seen.request.id),
    )


@router.post("/systems", status_code=status.HTTP_201_CREATED, response_model=SystemPublic)
def create_system(body: SystemCreate, uow: UnitOfWorkDep, who: PrincipalDep) -> SystemPublic:
    row, path = service.create_system(uow, who, body)
    return SystemPublic.from_row(row, path)


@router.get("/systems", response_model=list[SystemPublic])
def list_systems(
    uow: UnitOfWorkDep, who: PrincipalDep, tenant: Annotated[TenantPath | None, Query()] = None
) -> list[SystemPublic]:
    return [SystemPublic.from_row(s, p) for s, p in service.list_systems(uow, who, tenant=tenant)]


@router.get("/systems/{system_id}", response_model=SystemPublic)
def get_system(system_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep) -> SystemPublic:
    row, path = service.get_system(uow, who, system_id)
    return SystemPublic.from_row(row, path)


@router.post("/requests", status_code=status.HTTP_201_CREATED, response_model=RequestPublic)
def create_request(
    body: RequestCreate, request: Request, uow: UnitOfWorkDep, who: PrincipalDep, idempotency_key: IdempotencyKey = None
) -> RequestPublic | JSONResponse:
    ctx = app_context(request)
    if idempotency_key is not None:
        digest = idempotency.body_hash(body.model_dump(mode="json"))
        replay = idempotency.begin(
            ctx.engine,
            principal=who.name,
            key=idempotency_key,
            route="POST /v1/requests",
            digest=digest,
            clock=ctx.clock,
        )
        if replay is not None:
            return JSONResponse(replay[1], status_code=replay[0], headers={"Idempotent-Replayed": "true"})
    try:
        row, path = service.create_request(uow, who, body)
        public = RequestPublic.from_row(row, path)
        if idempotency_key is not None:
            idempotency.finish(
                uow, principal=who.name, key=idempotency_key, status=201, response=public.model_dump(mode="json")
            )
        return public
    except BaseException:
        if idempotency_key is not None:
            idempotency.abandon(ctx.engine, principal=who.name, key=idempotency_key)
        raise


@router.get("/requests", response_model=Page[RequestPublic])
def list_requests(
    request: Request,
    uow: UnitOfWorkDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    state: RequestState | None = None,
    kind: RequestKind | None = None,
    tenant: Annotated[TenantPath | None, Query()] = None,
    inbox: Annotated[bool, Query(description="Only requests waiting for my decision")] = False,
    mine: Annotated[bool, Query(description="Only requests I created")] = False,
) -> Page[RequestPublic]:
    after = decode_cursor(cursor)
    if after is not None:
        try:
            uuid.UUID(after)
        except ValueError:
            raise ValidationFailed("cursor is not one this API issued", field="cursor") from None
    flt = service.RequestFilter(state=state, kind=kind.value if kind else None, tenant=tenant, inbox=inbox, mine=mine)
    rows, nxt = service.list_requests(uow, who, flt, after=after, limit=limit)
    return Page(items=[RequestPublic.from_row(r, p) for r, p in rows], next=next_link(request, nxt))


@router.get("/requests/{request_id}", response_model=RequestPublic)
def get_request(request_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep) -> RequestPublic:
    return _public(uow, service.get_visible(uow, who, request_id))


@router.patch("/requests/{request_id}", response_model=RequestPublic)
def update_request(request_id: uuid.UUID, body: RequestUpdate, uow: UnitOfWorkDep, who: PrincipalDep) -> RequestPublic:
    return _public(uow, service.update_request(uow, who, request_id, body))


def _verb(name: str):  # type: ignore[no-untyped-def]
    action = workflow.decide_verbs()[name]

    def handler(
        request_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep, body: VerbBody | None = None
    ) -> RequestPublic:
        return _public(uow, action(uow, who, request_id, body.reason if body else None))

    handler.__name__ = f"{name}_request"
    return handler


for _name in ("submit", "approve", "reject", "return", "cancel", "retry"):
    router.add_api_route(
        f"/requests/{{request_id}}:{_name}",
        _verb(_name),
        methods=["POST"],
        response_model=RequestPublic,
        name=f"{_name}_request",
        summary=f"{_name.capitalize()} a request",
    )
