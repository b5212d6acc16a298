"""Home (what needs me), the quota tree with limit changes, backup compliance, the operator
console (failed/errored work, lookup by id, capacity with freshness) and the audit log."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlmodel import col

from controlplane.api.problems import status_for
from controlplane.audit import service as audit
from controlplane.auth.policy import can
from controlplane.auth.principal import Principal
from controlplane.capacity.models import CapacitySample
from controlplane.db.uow import UnitOfWork
from controlplane.errors import DomainError, Forbidden, NotFound
from controlplane.ledger import queries
from controlplane.ledger import service as ledger
from controlplane.ledger.errors import QuotaRefused
from controlplane.ledger.schemas import NodePublic
from controlplane.operations import service as operations
from controlplane.operations.models import Operation, OperationState
from controlplane.portal import compliance, problems, web
from controlplane.requests import service as requests
from controlplane.requests.models import Request as Request_
from controlplane.requests.states import RequestState
from controlplane.site_config import RESOURCES
from quotas import NodeKey

router = APIRouter(include_in_schema=False)
NODES_PER_PAGE = 50


@router.get("/")
def home(request: Request, uow: web.Uow, who: web.Who) -> Response:
    """What needs me: my drafts and returned requests, decisions waiting for me, failing backups."""
    drafts, n_drafts = requests.page_requests(
        uow, who, requests.RequestFilter(mine=True, state=RequestState.DRAFT), sort="updated", offset=0, limit=5
    )
    returned, n_returned = requests.page_requests(
        uow, who, requests.RequestFilter(mine=True, state=RequestState.RETURNED), sort="updated", offset=0, limit=5
    )
    inbox, n_inbox = requests.page_requests(
        uow, who, requests.RequestFilter(inbox=True), sort="oldest", offset=0, limit=5
    )
    failing = [row for row in compliance.backup_compliance(uow, who) if row.compliant is False]
    return web.render(
        request,
        "home.html",
        drafts=drafts + returned,
        n_drafts=n_drafts + n_returned,
        inbox=inbox,
        n_inbox=n_inbox,
        failing=failing[:5],
    )


def _node_page(uow: UnitOfWork, region: str | None, cloud: str | None, page: int) -> list[NodePublic]:
    after = None
    rows: list[NodePublic] = []
    for _ in range(page):  # keyset pages; a deep page walks the keys, never the rows twice
        found, after = queries.list_nodes(
            uow, queries.NodeFilter(region=region, cloud=cloud), after=after, limit=NODES_PER_PAGE
        )
        rows = [NodePublic.from_row(row, key) for row, key in found]
        if after is None:
            break
    return rows


@router.get("/quotas")
def quota_tree(
    request: Request,
    uow: web.Uow,
    who: web.Who,
    region: str | None = None,
    cloud: str | None = None,
    page: str = "1",
) -> Response:
    page_no = web.page_number(page, last=100)
    nodes = _node_page(uow, region or None, cloud or None, page_no)
    return web.render(
        request,
        "quotas.html",
        nodes=nodes,
        params={"region": region or "", "cloud": cloud or ""},
        page=page_no,
        resources=RESOURCES,
        result=None,
        status_code=200,
    )


@router.post("/quotas/limits")
async def set_limit(request: Request, uow: web.Uow, who: web.Who) -> Response:
    """A city admin gives a county a slice: the ledger refuses more than the city can give."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    tenant, cloud, region = form.get("tenant", ""), form.get("cloud", ""), form.get("region", "")
    resource, raw = form.get("resource", ""), form.get("limit", "").strip()
    result: dict[str, object]
    status = 200
    try:
        if resource not in RESOURCES or not raw.isdigit():
            raise web.FormProblem("limit")
        ledger.set_limits(uow, NodeKey(tenant, cloud, region), {resource: int(raw)})
        result = {"ok": True, "node": f"{tenant}/{cloud}/{region}", "resource": resource, "limit": int(raw)}
    except web.FormProblem:
        status, result = 422, {"ok": False, "invalid": True}
    except (ValueError, DomainError) as exc:
        uow.rollback()
        if isinstance(exc, NotFound):
            return web.error_page(request, exc)
        status = status_for(exc) if isinstance(exc, DomainError) else 422
        fields = exc.fields if isinstance(exc, DomainError) else {}
        gettext = web.gettext_for(request)
        shown = problems.describe(exc, gettext) if isinstance(exc, DomainError) else [problems.no_node(gettext)]
        result = {"ok": False, "messages": problems.texts(shown), "refused": isinstance(exc, QuotaRefused), **fields}
    nodes = _node_page(uow, None, None, 1)
    return web.render(
        request,
        "quotas.html",
        status=status,
        nodes=nodes,
        params={"region": "", "cloud": ""},
        page=1,
        resources=RESOURCES,
        result=result,
        status_code=status,
    )


@router.get("/backups")
def backups(request: Request, uow: web.Uow, who: web.Who) -> Response:
    return web.render(
        request,
        "backups.html",
        rows=compliance.backup_compliance(uow, who),
        source=compliance.SOURCE,
    )


def _require_operator(who: Principal) -> None:
    if not can(who, "requests.retry-errored", None) and not any(
        can(who, "requests.retry-errored", path) for _, path in who.bindings
    ):
        raise Forbidden("the operator console is for operators", permission="requests.retry-errored")


@router.get("/ops")
def console(
    request: Request,
    uow: web.Uow,
    who: web.Who,
    lookup: str | None = None,
    state: str = "errored",
) -> Response:
    try:
        _require_operator(who)
    except DomainError as exc:
        return web.error_page(request, exc)
    found: Operation | bool | None = None
    if lookup:
        try:
            found = operations.get_visible(uow, who, uuid.UUID(lookup.strip()))
        except (ValueError, DomainError):
            found = False
    chosen = OperationState(state) if state in {s.value for s in OperationState} else OperationState.ERRORED
    ops, _ = operations.list_operations(uow, who, state=chosen, kind=None, tenant=None, after=None, limit=50)
    stuck = {}
    if ops:
        linked = uow.session.execute(
            select(Request_.operation_id, Request_.id).where(col(Request_.operation_id).in_([o.id for o in ops]))
        )
        stuck = {op_id: req_id for op_id, req_id in linked}
    by_region = select(CapacitySample).order_by(CapacitySample.region, CapacitySample.resource)
    capacity = list(uow.session.scalars(by_region))
    return web.render(
        request,
        "ops.html",
        ops=ops,
        stuck=stuck,
        state=chosen.value,
        states=[s.value for s in OperationState],
        lookup=lookup or "",
        found=found,
        capacity=capacity,
        now=uow.now(),
    )


@router.get("/audit")
def audit_log(
    request: Request,
    uow: web.Uow,
    who: web.Who,
    actor: str | None = None,
    action: str | None = None,
    after: str | None = None,
) -> Response:
    try:
        flt = audit.AuditFilter(actor=actor or None, action=action or None)
        seq = int(after) if after and after.isascii() and after.isdigit() else None
        events, nxt = audit.list_events(uow, who, flt, after=seq, limit=50)
    except DomainError as exc:
        return web.error_page(request, exc)
    return web.render(
        request,
        "audit.html",
        events=events,
        next=nxt,
        params={"actor": actor or "", "action": action or ""},
    )
