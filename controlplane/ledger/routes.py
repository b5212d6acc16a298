"""Quota ledger endpoints: nodes (with their chain), limits, dry runs, allocations and the
inconsistency report. Nodes are named by region, themed cloud and tenant path."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from controlplane.api.deps import PrincipalDep, UnitOfWorkDep
from controlplane.api.pagination import Cursor, Limit, decode_cursor, next_link
from controlplane.api.pagination import Page as PageOf
from controlplane.auth.policy import can
from controlplane.errors import Forbidden, ValidationFailed
from controlplane.ledger import allocations, queries, service, usage
from controlplane.ledger.models import AllocationStatus
from controlplane.ledger.schemas import (
    AllocationPublic,
    DriftPublic,
    DryRunPublic,
    DryRunRequest,
    InconsistencyReport,
    LedgerCheckPublic,
    LimitsUpdate,
    NodePublic,
    NodeView,
    RefusalPublic,
    Resolution,
    ResolveRequest,
    chain_public,
)
from controlplane.ledger.verify import check_ledger
from controlplane.tenants.schemas import PATH_PATTERN
from quotas import NodeKey

router = APIRouter(prefix="/v1", tags=["quotas"])

CODE = r"^[a-z0-9][a-z0-9-]{0,19}$"
RegionParam = Annotated[str, Path(pattern=CODE, description="Region code, e.g. wuhan")]
CloudParam = Annotated[str, Path(pattern=CODE, description="Themed cloud code, e.g. egov")]
TenantParam = Annotated[str, Path(pattern=PATH_PATTERN, max_length=400, description="e.g. hubei.wuhan.jiangan")]
CodeQuery = Annotated[str | None, Query(pattern=CODE)]
PathQuery = Annotated[str | None, Query(pattern=PATH_PATTERN, max_length=400)]
NODE = "/quota-nodes/{region}/{cloud}/{tenant_path}"


def _triple(cursor: str | None) -> tuple[str, str, str] | None:
    after = decode_cursor(cursor)
    if after is None:
        return None
    try:
        value = json.loads(after)
    except ValueError:
        value = None
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)):
        raise ValidationFailed("cursor is not one this API issued", field="cursor")
    return (value[0], value[1], value[2])


def _uuid_cursor(cursor: str | None) -> uuid.UUID | None:
    after = decode_cursor(cursor)
    try:
        return None if after is None else uuid.UUID(after)
    except ValueError:
        raise ValidationFailed("cursor is not one this API issued", field="cursor") from None


@router.get("/quota-nodes", response_model=PageOf[NodePublic])
def list_quota_nodes(
    request: Request,
    uow: UnitOfWorkDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    region: CodeQuery = None,
    cloud: CodeQuery = None,
    subtree: PathQuery = None,
) -> PageOf[NodePublic]:
    flt = queries.NodeFilter(region=region, cloud=cloud, subtree=subtree)
    rows, nxt = queries.list_nodes(uow, flt, after=_triple(cursor), limit=limit)
    return PageOf(
        items=[NodePublic.from_row(row, key) for row, key in rows],
        next=next_link(request, json.dumps(list(nxt)) if nxt else None),
    )


@router.post(NODE + ":dry-run", response_model=DryRunPublic)
def dry_run(
    region: RegionParam,
    cloud: CloudParam,
    tenant_path: TenantParam,
    body: DryRunRequest,
    uow: UnitOfWorkDep,
    who: PrincipalDep,
) -> DryRunPublic:
    """Would this delta fit now, and if not, at which node does it stop and by how much. Changes nothing."""
    result = service.dry_run(uow, NodeKey(tenant_path, cloud, region), body.delta)
    return DryRunPublic(
        fits=result.fits,
        refused=RefusalPublic.from_refusal(result.refusal) if result.refusal else None,
        chain=chain_public(result.chain, who),
    )


@router.get(NODE, response_model=NodeView)
def get_quota_node(
    region: RegionParam, cloud: CloudParam, tenant_path: TenantParam, uow: UnitOfWorkDep, who: PrincipalDep
) -> NodeView:
    return NodeView.build(service.read_chain(uow, NodeKey(tenant_path, cloud, region)), who)


@router.put(NODE + "/limits", response_model=NodeView)
def set_quota_limits(
    region: RegionParam,
    cloud: CloudParam,
    tenant_path: TenantParam,
    body: LimitsUpdate,
    uow: UnitOfWorkDep,
    who: PrincipalDep,
) -> NodeView:
    """Set limits for the resources given (null: unlimited). Below consumption needs `force`."""
    key = NodeKey(tenant_path, cloud, region)
    service.set_limits(uow, key, body.limits, force=body.force)
    return NodeView.build(service.read_chain(uow, key), who)


@router.get("/allocations", response_model=PageOf[AllocationPublic])
def list_allocations(
    request: Request,
    uow: UnitOfWorkDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    subtree: PathQuery = None,
    cloud: CodeQuery = None,
    region: CodeQuery = None,
    status: AllocationStatus | None = None,
) -> PageOf[AllocationPublic]:
    flt = allocations.AllocationFilter(subtree=subtree, cloud=cloud, region=region, status=status)
    rows, nxt = allocations.list_allocations(uow, flt, after=_triple(cursor), limit=limit)
    return PageOf(
        items=[AllocationPublic.from_row(row, path) for row, path in rows],
        next=next_link(request, json.dumps(list(nxt)) if nxt else None),
    )


@router.get("/allocations/{allocation_id}", response_model=AllocationPublic)
def get_allocation(allocation_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep) -> AllocationPublic:
    row, path = allocations.get_allocation(uow, allocation_id)
    return AllocationPublic.from_row(row, path)


@router.get("/quota-inconsistencies", response_model=InconsistencyReport)
def list_inconsistencies(
    request: Request, uow: UnitOfWorkDep, who: PrincipalDep, limit: Limit = 100, cursor: Cursor = None
) -> InconsistencyReport:
    """Open drift between the ledger and what backends report; on the first page, for callers
    who see the whole tree, also the stored ledger checked against its definition."""
    if who.scope.roots is not None and not usage.report_roots(who):
        raise Forbidden("your roles do not allow 'quotas.report'", permission="quotas.report")
    after = _uuid_cursor(cursor)
    rows, nxt = usage.open_reports(uow, after=after, limit=limit)
    ledger = None
    if after is None and can(who, "quotas.report", None):
        ledger = LedgerCheckPublic.from_check(check_ledger(uow.session))
    return InconsistencyReport(
        items=[DriftPublic.from_rows(*row) for row in rows],
        next=next_link(request, str(nxt) if nxt else None),
        ledger=ledger,
    )


@router.post("/quota-inconsistencies/{report_id}:resolve", response_model=DriftPublic)
def resolve_inconsistency(
    report_id: uuid.UUID, body: ResolveRequest, uow: UnitOfWorkDep, who: PrincipalDep
) -> DriftPublic:
    """`apply`: the ledger's used becomes what the backend measured (forced: nodes may end
    over-limit). `dismiss`: the ledger is right; the drift is closed, the ledger unchanged."""
    if body.resolution is Resolution.APPLY:
        report = usage.apply_report(uow, report_id, body.reason)
    else:
        report = usage.dismiss_report(uow, report_id, body.reason)
    row, path = allocations.get_allocation(uow, report.allocation_id)
    return DriftPublic.from_rows(report, row, path)
