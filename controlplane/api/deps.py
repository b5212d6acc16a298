"""Request-scoped dependencies: who is asking, and the unit of work that commits *before*
the response is sent.

`Depends(..., scope="function")` runs the code after `yield` when the path operation
returns, before FastAPI sends anything, so a failed commit becomes problem+json and
never a 2xx. `controlplane.api.retry.RetryMiddleware` replays the whole request once on a
serialization failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from controlplane.api.context import AppContext
from controlplane.auth.authn import authenticate
from controlplane.auth.principal import Principal
from controlplane.db.uow import UnitOfWork

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_bearer = HTTPBearer(auto_error=False, description="An API token (ctk_…) or an OIDC access token")


def app_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Every non-public route depends on this: 401 problem+json without a valid credential."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    ctx = app_context(request)
    header = f"Bearer {credentials.credentials}" if credentials else request.headers.get("authorization")
    principal = authenticate(ctx.engine, header, oidc=ctx.extras.get("oidc"), clock=ctx.clock)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def open_uow(request: Request, principal: Principal) -> Iterator[UnitOfWork]:
    """The request's unit: read-only for reads, committed before the response for writes.
    Shared by the API and the portal, so both commit (and audit) the same way."""
    ctx = app_context(request)
    readonly = request.method in READ_METHODS
    uow = UnitOfWork(
        ctx.engine,
        dispatcher=ctx.dispatcher,
        clock=ctx.clock,
        readonly=readonly,
        before_commit=ctx.before_commit,
        principal=principal,
        request_id=getattr(request.state, "request_id", None),
        client_addr=request.client.host if request.client else None,
    )
    try:
        yield uow
        if readonly:
            uow.rollback()
        else:
            uow.commit()
    except BaseException:
        uow.rollback()
        raise
    finally:
        uow.close()


def get_uow(request: Request, principal: PrincipalDep) -> Iterator[UnitOfWork]:
    yield from open_uow(request, principal)


UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_uow, scope="function")]
