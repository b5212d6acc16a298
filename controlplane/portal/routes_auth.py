"""Log-in (paste an API token, or an OIDC access token when OIDC is configured), log-out and
the language switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from controlplane.api.deps import app_context
from controlplane.auth.authn import authenticate
from controlplane.errors import Unauthenticated
from controlplane.portal import i18n, session, web

router = APIRouter(include_in_schema=False)
LANG_MAX_AGE_S = 365 * 86400


@router.get("/login")
def login_page(request: Request, next: Annotated[str | None, Query(max_length=500)] = None) -> Response:
    ctx = app_context(request)
    oidc = ctx.extras.get("oidc")
    return web.render(
        request, "login.html", next=web.safe_next(next), error=None, oidc=bool(oidc and getattr(oidc, "enabled", False))
    )


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=4096)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    """Checks the credential as the API would; the cookie holds it only encrypted."""
    ctx = app_context(request)
    credential = token.strip()
    try:
        if not credential:
            raise Unauthenticated("empty")
        authenticate(ctx.engine, f"Bearer {credential}", oidc=ctx.extras.get("oidc"), clock=ctx.clock)
    except Unauthenticated:
        oidc = ctx.extras.get("oidc")
        return web.render(
            request,
            "login.html",
            status=401,
            next=web.safe_next(next),
            error="invalid",
            oidc=bool(oidc and getattr(oidc, "enabled", False)),
        )
    sealed, _ = session.seal(ctx, credential)
    response = web.redirect(web.safe_next(next))
    response.set_cookie(
        session.COOKIE,
        sealed,
        max_age=session.MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, who: web.Who) -> Response:
    response = web.redirect("/login")
    response.delete_cookie(session.COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
def switch_language(request: Request, lang: str, next: Annotated[str | None, Query(max_length=500)] = None) -> Response:
    """A preference, not a change of state: a plain link, remembered for a year."""
    response = web.redirect(web.safe_next(next))
    if lang in i18n.LANGS:
        response.set_cookie(i18n.COOKIE, lang, max_age=LANG_MAX_AGE_S, httponly=True, samesite="lax", path="/")
    return response
