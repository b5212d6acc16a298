"""Catalogue, request lists (inbox tabs), request detail and edit, the verbs and the progress
fragment (the new-request forms are in ``routes_forms``). Every call goes through
``controlplane.requests`` services; their errors are shown through ``problems``."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select

from controlplane.api.problems import status_for
from controlplane.auth.policy import can
from controlplane.auth.principal import Principal
from controlplane.catalogue import service as catalogue
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Conflict, DomainError, Forbidden, NotFound
from controlplane.operations.models import Operation
from controlplane.portal import forms, problems, web
from controlplane.portal.routes_forms import chain_of, form_context
from controlplane.requests import service, workflow
from controlplane.requests.models import InformationSystem
from controlplane.requests.schemas import RequestUpdate
from controlplane.requests.states import TERMINAL, RequestState
from controlplane.tenants.models import Tenant
from quotas import NodeKey

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 20
TABS = ("inbox", "decided", "mine", "all")
VERBS = ("submit", "approve", "reject", "return", "cancel", "retry")
ACTIVE_STATES = frozenset({RequestState.APPROVED, RequestState.PROVISIONING})


@router.get("/catalogue")
def catalogue_page(request: Request, uow: web.Uow, who: web.Who) -> Response:
    clouds = [dict(c.spec, code=c.code) for c in catalogue.clouds(uow)]
    return web.render(request, "catalogue.html", kinds=forms.FORM_KINDS, clouds=clouds)


@router.get("/requests")
def list_page(
    request: Request,
    uow: web.Uow,
    who: web.Who,
    tab: str = "mine",
    state: str | None = None,
    kind: str | None = None,
    sort: str = "newest",
    page: str = "1",
) -> Response:
    page_no = web.page_number(page, last=10_000)
    tab = tab if tab in TABS else "mine"
    sort = sort if sort in service.SORTS else "newest"
    chosen_state = RequestState(state) if state in {s.value for s in RequestState} else None
    chosen_kind = kind if kind in forms.KINDS else None
    flt = service.RequestFilter(
        state=chosen_state,
        kind=chosen_kind,
        inbox=tab == "inbox",
        mine=tab == "mine",
        decided=tab == "decided",
    )
    rows, total = service.page_requests(uow, who, flt, sort=sort, offset=(page_no - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    params = {"tab": tab, "state": chosen_state.value if chosen_state else "", "kind": chosen_kind or "", "sort": sort}
    return web.render(
        request,
        "requests.html",
        rows=rows,
        total=total,
        page=page_no,
        pages=max(1, -(-total // PAGE_SIZE)),
        tab=tab,
        tabs=TABS,
        params=params,
        states=[s.value for s in RequestState],
        kinds=forms.KINDS,
        sorts=list(service.SORTS),
    )


def _parse_id(request_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(request_id)
    except ValueError:
        raise NotFound("request not found") from None


def _detail_context(uow: UnitOfWork, who: Principal, seen: service.Visible) -> dict[str, Any]:
    req, path = seen.request, seen.path
    steps = service.steps_of(uow, req.id)
    state = RequestState(req.state)
    system = uow.session.get(InformationSystem, req.system_id)
    tenant = uow.session.scalars(select(Tenant).where(Tenant.path == path)).one()
    with service.as_system(uow):  # a step holder sees the impact on every level it decides on
        key_region = str(req.spec.get("target_region", req.region))
        chain, _ = chain_of(uow, who, NodeKey(path, req.cloud, key_region))
    mine = service.current_steps_among(steps, who, req) if state == RequestState.PENDING_APPROVAL else []
    creator = seen.in_scope and can(who, "requests.create", path)
    may_retry = (state == RequestState.ERRORED and can(who, "requests.retry-errored", path)) or (
        state == RequestState.FAILED and creator
    )
    rounds: dict[int, list[Any]] = {}
    for step in steps:
        rounds.setdefault(step.round, []).append(step)
    return {
        "req": req,
        "path": path,
        "tenant": tenant,
        "system": system,
        "rounds": rounds,
        "transitions": service.transitions_of(uow, req.id),
        "can_decide": bool(mine),
        "can_edit": creator and state in (RequestState.DRAFT, RequestState.RETURNED),
        "can_submit": creator and state in (RequestState.DRAFT, RequestState.RETURNED),
        "can_cancel": creator and state in (RequestState.DRAFT, RequestState.RETURNED, RequestState.PENDING_APPROVAL),
        "can_retry": may_retry,
        "chain": chain,
        "current_step": min((s.order for s in steps if s.round == req.round and s.decision == "pending"), default=None),
        "step_count": max((s.order for s in steps if s.round == req.round), default=0),
        **_progress_context(uow, req),
    }


def _progress_context(uow: UnitOfWork, req: Any) -> dict[str, Any]:
    op = uow.session.get(Operation, req.operation_id) if req.operation_id else None
    state = RequestState(req.state)
    return {"req": req, "op": op, "polling": state in ACTIVE_STATES, "terminal": state in TERMINAL}


@router.get("/requests/{request_id}")
def detail_page(request: Request, request_id: str, uow: web.Uow, who: web.Who) -> Response:
    try:
        seen = service.get_visible(uow, who, _parse_id(request_id))
    except DomainError as exc:
        return web.error_page(request, exc)
    return web.render(request, "request_detail.html", error=None, **_detail_context(uow, who, seen))


@router.get("/requests/{request_id}/progress")
def progress_fragment(request: Request, request_id: str, uow: web.Uow, who: web.Who) -> Response:
    """The htmx fragment: polls itself while provisioning, and renders without a trigger once
    the request reached a state where nothing more happens by itself."""
    try:
        seen = service.get_visible(uow, who, _parse_id(request_id))
    except DomainError as exc:
        return web.error_page(request, exc)
    ctx = _progress_context(uow, seen.request)
    path = seen.path
    ctx["can_retry"] = (seen.request.state == RequestState.ERRORED and can(who, "requests.retry-errored", path)) or (
        seen.request.state == RequestState.FAILED and seen.in_scope and can(who, "requests.create", path)
    )
    return web.render(request, "_progress.html", **ctx)


@router.get("/requests/{request_id}/edit")
def edit_form(request: Request, request_id: str, uow: web.Uow, who: web.Who) -> Response:
    try:
        seen = service.get_visible(uow, who, _parse_id(request_id))
    except DomainError as exc:
        return web.error_page(request, exc)
    on_form = forms.fields_of(seen.request.kind, create=False)
    return _edit_page(request, uow, who, seen, _values_of(seen), forms.FormErrors(on_form=on_form))


def facts_of(req: Any, uow: UnitOfWork) -> dict[str, str]:
    """What a request's error messages may name back: its region, spec values and MLPS level."""
    system = uow.session.get(InformationSystem, req.system_id)
    facts = {"region": req.region, "mlps_level": str(system.mlps_level if system else "")}
    return facts | {f"spec.{k}": str(v) for k, v in req.spec.items() if not isinstance(v, list | dict)}


def _values_of(seen: service.Visible) -> dict[str, str]:
    req = seen.request
    values = {"tenant": seen.path, "cloud": req.cloud, "region": req.region, "system": str(req.system_id)}
    values["title"] = req.title or ""
    for key, value in req.spec.items():
        if isinstance(value, list):  # paths one per line; numbers (ports) comma-separated
            sep = ", " if all(isinstance(v, int) for v in value) else "\n"
            values[f"spec.{key}"] = sep.join(str(v) for v in value)
        else:
            values[f"spec.{key}"] = str(value)
    items = (req.declaration or {}).get("items") or [{}]
    for key, value in items[0].items():
        values[f"decl.{key}"] = str(value)
    return values


def _edit_page(
    request: Request,
    uow: UnitOfWork,
    who: Principal,
    seen: service.Visible,
    values: dict[str, str],
    errors: forms.FormErrors,
    status: int = 200,
) -> Response:
    ctx = form_context(uow, who, seen.request.kind, values)
    return web.render(request, "request_edit.html", status=status, req=seen.request, errors=errors, **ctx)


@router.post("/requests/{request_id}/edit")
async def edit_request(request: Request, request_id: str, uow: web.Uow, who: web.Who) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    try:
        seen = service.get_visible(uow, who, _parse_id(request_id))
    except DomainError as exc:
        return web.error_page(request, exc)
    gettext = web.gettext_for(request)
    on_form = forms.fields_of(seen.request.kind, create=False)
    errors = forms.FormErrors(on_form=on_form)
    try:
        body = RequestUpdate.model_validate(
            {
                "spec": forms.spec_of(seen.request.kind, form),
                "declaration": forms.declaration_of(form),
                "title": form.get("title") or None,
            }
        )
        service.update_request(uow, who, seen.request.id, body)
        if form.get("action") == "submit":
            workflow.submit(uow, who, seen.request.id)
        return web.redirect(f"/requests/{seen.request.id}", request=request)
    except ValidationError as exc:
        errors = forms.pydantic_errors(exc, gettext, on_form)
    except DomainError as exc:
        uow.rollback()
        if isinstance(exc, NotFound):
            return web.error_page(request, exc)
        errors.add(problems.describe(exc, gettext, {**facts_of(seen.request, uow), **form}))
    return _edit_page(request, uow, who, seen, dict(form, tenant=seen.path), errors, status=422)


def _verb_handler(name: str) -> Any:
    action = workflow.decide_verbs()[name]

    async def handler(request: Request, request_id: str, uow: web.Uow, who: web.Who) -> Response:
        form = await request.form()
        reason = str(form.get("reason") or "").strip() or None
        shown_version = str(form.get("version") or "")
        try:
            rid = _parse_id(request_id)
            action(uow, who, rid, reason)
            return web.redirect(f"/requests/{rid}", request=request)
        except DomainError as exc:
            uow.rollback()
            if isinstance(exc, NotFound):
                return web.error_page(request, exc)
            seen = service.get_visible(uow, who, rid)
            taken = (
                name in ("approve", "reject", "return")
                and isinstance(exc, Conflict | Forbidden)
                and shown_version
                and shown_version != str(seen.request.version)
            )
            ctx = _detail_context(uow, who, seen)
            status = 409 if taken else status_for(exc)
            shown = problems.describe(exc, web.gettext_for(request), facts_of(seen.request, uow))
            return web.render(
                request,
                "request_detail.html",
                status=status,
                error=problems.texts(shown),
                taken=taken,
                verb=name,
                **ctx,
            )

    handler.__name__ = f"portal_{name}"
    return handler


for _verb in VERBS:
    router.add_api_route(f"/requests/{{request_id}}/{_verb}", _verb_handler(_verb), methods=["POST"])
