"""Tokens, role bindings and who-am-i."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from controlplane.api.deps import PrincipalDep, UnitOfWorkDep, app_context
from controlplane.api.pagination import Cursor, Limit, Page, decode_cursor, next_link
from controlplane.auth import bindings, tokens
from controlplane.auth.schemas import (
    BindingCreate,
    BindingPublic,
    Subject,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    WhoAmI,
)
from controlplane.errors import ValidationFailed
from controlplane.tenants.schemas import TenantPath

router = APIRouter(prefix="/v1", tags=["identity"])


@router.get("/whoami", response_model=WhoAmI)
def whoami(who: PrincipalDep) -> WhoAmI:
    return WhoAmI(subject=who.name, via=who.via, bindings=[{"role": r, "tenant": p} for r, p in who.bindings])


@router.post("/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenCreated)
def create_token(body: TokenCreate, request: Request, uow: UnitOfWorkDep, who: PrincipalDep) -> TokenCreated:
    subject = body.subject or who.name
    tokens.check_can_mint_for(who, subject)
    days = body.expires_in_days or app_context(request).settings.token_default_ttl_days
    row, secret = tokens.mint(
        uow, subject=subject, name=body.name, kind=body.kind, created_by=who.name, ttl=timedelta(days=days)
    )
    return TokenCreated(**TokenPublic.from_row(row).model_dump(), token=secret)


@router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(
    uow: UnitOfWorkDep, who: PrincipalDep, subject: Annotated[str | None, Query(max_length=200)] = None
) -> list[TokenPublic]:
    return [TokenPublic.from_row(r) for r in tokens.visible(uow, who, subject=subject)]


@router.get("/tokens/{token_id}", response_model=TokenPublic)
def get_token(token_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep) -> TokenPublic:
    return TokenPublic.from_row(tokens.get_visible(uow, who, token_id))


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep) -> Response:
    tokens.revoke(uow, who, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/role-bindings", status_code=status.HTTP_201_CREATED, response_model=BindingPublic)
def create_binding(body: BindingCreate, uow: UnitOfWorkDep, who: PrincipalDep) -> BindingPublic:
    row, path = bindings.grant(uow, who, subject=body.subject, role=body.role, tenant_path=body.tenant)
    return BindingPublic.from_row(row, path)


@router.get("/role-bindings", response_model=Page[BindingPublic])
def list_bindings(
    request: Request,
    uow: UnitOfWorkDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    tenant: Annotated[TenantPath | None, Query()] = None,
    subject: Annotated[Subject | None, Query()] = None,
) -> Page[BindingPublic]:
    after = decode_cursor(cursor)
    if after is not None:
        try:
            uuid.UUID(after)
        except ValueError:
            raise ValidationFailed("cursor is not one this API issued", field="cursor") from None
    rows, nxt = bindings.listed(uow, who, tenant_path=tenant, subject=subject, after=after, limit=limit)
    return Page(items=[BindingPublic.from_row(b, p) for b, p in rows], next=next_link(request, nxt))


@router.get("/role-bindings/{binding_id}", response_model=BindingPublic)
def get_binding(binding_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep) -> BindingPublic:
    row, path = bindings.get(uow, who, binding_id)
    return BindingPublic.from_row(row, path)


@router.delete("/role-bindings/{binding_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_binding(binding_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep) -> Response:
    bindings.revoke(uow, who, binding_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
