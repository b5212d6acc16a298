"""What every portal page shares: who is asking (session cookie or bearer), the CSRF check,
the unit of work, the templates in the caller's language, and domain errors as pages.

Permission and state checks are never made here: pages call the same service functions as
the REST verbs, which raise the same domain errors; this module only renders them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from controlplane.api.deps import app_context, open_uow
from controlplane.api.problems import status_for
from controlplane.auth.authn import authenticate
from controlplane.auth.policy import can
from controlplane.auth.principal import Principal
from controlplane.db.uow import UnitOfWork
from controlplane.errors import DomainError, NotFound, Unauthenticated
from controlplane.portal import i18n, problems, session
from controlplane.site_config import RESOURCES

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).parent / "templates"
STATIC_URL = "/static/portal"
HTMX = "htmx-2.0.7.min.js"
PICO = "pico-2.1.1.min.css"


class LoginRequired(Exception):
    """No valid session: the handler sends the browser to the log-in page."""


class FormProblem(Exception):
    """A form field the page itself rejects before calling a service (named by ``args[0]``)."""


class CsrfRejected(Exception):
    """A cookie-authenticated POST without the session's CSRF token."""


@lru_cache(maxsize=4)
def environment(lang: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.filters["ts"] = _ts
    gettext = i18n.translations(lang).gettext

    def label(value: object) -> str:
        return gettext(i18n.LABELS.get(str(value), str(value)))

    env.filters["label"] = label
    env.globals["resource_options"] = lambda: [(r, label(r)) for r in RESOURCES]
    env.filters["pair"] = lambda value: (value, value)
    env.filters["flavor_pair"] = lambda f: (f.name, f"{f.name} ({f.vcpus} vCPU, {f.ram_mb // 1024} GB)")
    env.filters["rpo_pair"] = lambda s: (s, problems.duration(s, gettext))
    env.filters["sharing_pair"] = lambda value: (value, label(value))
    env.globals["tenant_options"] = lambda rows, lang: [(t.path, f"{_name(t, lang)} ({t.path})") for t in rows]
    env.globals["cloud_options"] = lambda rows, lang: [
        (c["code"], c.get("name_en" if lang == "en" else "name_zh") or c["code"]) for c in rows
    ]
    env.globals["region_options"] = lambda codes, names, lang: [
        (c, f"{(names.get(c) or (None, None))[1 if lang == 'en' else 0] or c} ({c})") for c in codes
    ]
    env.globals["system_options"] = lambda rows: [(str(s.id), f"{s.name} (MLPS {s.mlps_level})") for s, _ in rows]
    return env


def _name(row: Any, lang: str) -> str:
    return str(row.name_en if lang == "en" else row.name_zh)


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def gettext_for(request: Request) -> Any:
    return i18n.translations(i18n.lang_of(request)).gettext


async def portal_principal(request: Request) -> Principal:
    """The session cookie's credential (CSRF-checked on POST), or a bearer header (scripts and
    tests; no ambient credential, so no CSRF). Authenticated exactly as the API does."""
    ctx = app_context(request)
    sess = session.read(ctx, request)
    header = f"Bearer {sess.credential}" if sess else request.headers.get("authorization")
    if not header:
        raise LoginRequired
    try:
        principal = authenticate(ctx.engine, header, oidc=ctx.extras.get("oidc"), clock=ctx.clock)
    except Unauthenticated:
        raise LoginRequired from None
    if sess is not None and request.method == "POST":
        form = await request.form()
        presented = form.get("csrf") or request.headers.get("x-csrf-token")
        if not session.csrf_ok(sess, presented if isinstance(presented, str) else None):
            raise CsrfRejected
    request.state.principal = principal
    request.state.portal_session = sess
    return principal


Who = Annotated[Principal, Depends(portal_principal)]


def portal_uow(request: Request, principal: Who) -> Iterator[UnitOfWork]:
    yield from open_uow(request, principal)


Uow = Annotated[UnitOfWork, Depends(portal_uow, scope="function")]


def nav(who: Principal) -> list[tuple[str, str]]:
    """Menu entries this caller can use (the pages themselves check again)."""
    items = [("/", "Home"), ("/catalogue", "Catalogue"), ("/requests", "Requests"), ("/quotas", "Quotas")]
    items.append(("/backups", "Backup compliance"))
    if any(role in ("operator", "platform-admin") for role, _ in who.bindings):
        items.append(("/ops", "Operator console"))
    if can(who, "audit.read", None) or any(role == "auditor" for role, _ in who.bindings):
        items.append(("/audit", "Audit log"))
    return items


def render(request: Request, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
    lang = i18n.lang_of(request)
    who: Principal | None = getattr(request.state, "principal", None)
    sess = getattr(request.state, "portal_session", None)
    html = (
        environment(lang)
        .get_template(template)
        .render(
            lang=lang,
            who=who,
            nav=nav(who) if who else [],
            csrf=sess.csrf if sess else "",
            page_path=request.url.path,
            here=str(request.url.path) + (("?" + request.url.query) if request.url.query else ""),
            static=STATIC_URL,
            htmx=HTMX,
            pico=PICO,
            qs=query_string,
            **values,
        )
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def query_string(base: Mapping[str, Any], **changes: Any) -> str:
    """The current list state with some parameters changed (filters and sort live in the URL)."""
    merged = {k: v for k, v in {**base, **changes}.items() if v not in (None, "")}
    return "?" + urlencode(merged) if merged else "?"


def error_page(request: Request, exc: DomainError, *, uow: UnitOfWork | None = None) -> HTMLResponse:
    """A domain error as a page, in the user's language; rolls the unit back so nothing half-made
    is committed. Not-found pages never repeat what the service said (it may name the object)."""
    if uow is not None:
        uow.rollback()
    status = status_for(exc)
    detail = None if isinstance(exc, NotFound) else problems.texts(problems.describe(exc, gettext_for(request)))
    return render(request, "error.html", status=status, status_code=status, detail=detail)


def redirect(url: str, *, request: Request | None = None) -> Response:
    if request is not None and request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def login_redirect(request: Request, _: Exception) -> Response:
    target = request.url.path + (("?" + request.url.query) if request.url.query else "")
    return redirect(f"/login?next={quote(target, safe='')}", request=request)


def csrf_rejected(request: Request, _: Exception) -> Response:
    return render(request, "error.html", status=403, status_code=403, detail=None, csrf_failed=True)


def page_number(raw: str, *, last: int) -> int:
    """A page number from the URL; anything odd is the first page (lists never fail on it)."""
    return min(int(raw), last) if raw.isascii() and raw.isdigit() and int(raw) > 0 else 1


def safe_next(target: str | None) -> str:
    """Only local paths: a log-in link cannot send the user to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
