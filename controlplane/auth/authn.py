"""Turns a request's bearer credential into a Principal (or a 401)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine

from controlplane.auth import tokens
from controlplane.auth.models import RoleBinding
from controlplane.auth.oidc import OidcVerifier
from controlplane.auth.principal import Principal
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Unauthenticated
from controlplane.tenants.models import Tenant, TenantStatus


def bindings_of(uow: UnitOfWork, subject: str) -> tuple[tuple[str, str], ...]:
    """(role, tenant path) pairs; bindings on suspended or retired tenants confer nothing."""
    rows = uow.session.execute(
        select(RoleBinding.role, Tenant.path)
        .join(Tenant, Tenant.id == RoleBinding.tenant_id)
        .where(RoleBinding.subject == subject, Tenant.status == TenantStatus.ACTIVE.value)
        .order_by(Tenant.path, RoleBinding.role)
    )
    return tuple((role, path) for role, path in rows)


def authenticate(engine: Engine, authorization: str | None, *, oidc: OidcVerifier | None, clock: object) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    credential = authorization[7:].strip()
    if credential.startswith(tokens.TOKEN_PREFIX):
        uow = UnitOfWork(engine, readonly=True, clock=clock)
        try:
            row = tokens.resolve(uow, credential, uow.now())
            if row is None:
                raise Unauthenticated("the token is unknown, expired or revoked")
            return Principal.with_bindings(
                row.subject, bindings_of(uow, row.subject), kind=row.kind, token_id=str(row.id), via="token"
            )
        finally:
            uow.rollback()
            uow.close()
    if oidc is not None and oidc.enabled:
        principal = oidc.principal(credential)
        if principal is not None:
            return principal
    raise Unauthenticated("the bearer token is not valid")
