"""Remote backup API: policies, runs, drills, run/drill/restore on demand, compliance."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from backup.states import RunState
from controlplane.api.deps import PrincipalDep, UnitOfWorkDep, app_context
from controlplane.api.pagination import Cursor, Limit, Page, decode_cursor, next_link
from controlplane.backup import service
from controlplane.backup.models import BackupDrill, BackupPolicy, BackupRun
from controlplane.backup.schemas import DrillPublic, PolicyPublic, RestoreBody, RunPublic, TenantCompliance
from controlplane.backup.store import restore_root
from controlplane.tenants.schemas import TenantPath

router = APIRouter(prefix="/v1", tags=["backup"])
TenantQ = Annotated[TenantPath | None, Query(description="Only this subtree")]
PolicyQ = Annotated[uuid.UUID | None, Query(description="Only this policy")]


@router.get("/backup-policies", response_model=Page[PolicyPublic])
def list_policies(
    request: Request,
    uow: UnitOfWorkDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    tenant: TenantQ = None,
) -> Page[PolicyPublic]:
    rows, nxt = service.list_policies(uow, who, tenant=tenant, after=decode_cursor(cursor), limit=limit)
    return Page(items=[PolicyPublic.from_row(r, p) for r, p in rows], next=next_link(request, nxt))


@router.get("/backup-policies/{policy_id}", response_model=PolicyPublic)
def get_policy(policy_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep) -> PolicyPublic:
    return PolicyPublic.from_row(*service.get_visible(uow, who, BackupPolicy, policy_id, "backup policy"))


@router.post("/backup-policies/{policy_id}:run", status_code=status.HTTP_202_ACCEPTED, response_model=RunPublic)
def run_policy(policy_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep) -> RunPublic:
    """Start a backup now; follow it at `GET /v1/backup-runs/{id}`."""
    return RunPublic.from_row(*service.run_now(uow, who, policy_id))


@router.post("/backup-policies/{policy_id}:drill", status_code=status.HTTP_202_ACCEPTED, response_model=DrillPublic)
def drill_policy(policy_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep) -> DrillPublic:
    """Restore the newest verified point into scratch and compare it with the manifest."""
    return DrillPublic.from_row(*service.drill_now(uow, who, policy_id))


@router.post("/backup-policies/{policy_id}:restore", status_code=status.HTTP_202_ACCEPTED, response_model=DrillPublic)
def restore_policy(
    policy_id: uuid.UUID, body: RestoreBody, request: Request, uow: UnitOfWorkDep, who: PrincipalDep
) -> DrillPublic:
    """Restore the newest verified point into a new directory of the tenant's restore area."""
    _, path = service.get_visible(uow, who, BackupPolicy, policy_id, "backup policy")
    target = service.restore_target(restore_root(app_context(request).settings), path, body.name)
    return DrillPublic.from_row(*service.drill_now(uow, who, policy_id, restore_to=target))


@router.get("/backup-runs", response_model=Page[RunPublic])
def list_runs(
    request: Request,
    uow: UnitOfWorkDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    tenant: TenantQ = None,
    policy: PolicyQ = None,
    state: RunState | None = None,
) -> Page[RunPublic]:
    rows, nxt = service.list_runs(
        uow, who, tenant=tenant, policy=policy, state=state, after=decode_cursor(cursor), limit=limit
    )
    return Page(items=[RunPublic.from_row(r, p) for r, p in rows], next=next_link(request, nxt))


@router.get("/backup-runs/{run_id}", response_model=RunPublic)
def get_run(run_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep) -> RunPublic:
    return RunPublic.from_row(*service.get_visible(uow, who, BackupRun, run_id, "backup run"))


@router.get("/backup-drills", response_model=Page[DrillPublic])
def list_drills(
    request: Request,
    uow: UnitOfWorkDep,
    who: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
    tenant: TenantQ = None,
    policy: PolicyQ = None,
) -> Page[DrillPublic]:
    rows, nxt = service.list_drills(uow, who, tenant=tenant, policy=policy, after=decode_cursor(cursor), limit=limit)
    return Page(items=[DrillPublic.from_row(r, p) for r, p in rows], next=next_link(request, nxt))


@router.get("/backup-drills/{drill_id}", response_model=DrillPublic)
def get_drill(drill_id: uuid.UUID, uow: UnitOfWorkDep, who: PrincipalDep) -> DrillPublic:
    return DrillPublic.from_row(*service.get_visible(uow, who, BackupDrill, drill_id, "backup drill"))


@router.get("/backup-compliance", response_model=list[TenantCompliance])
def compliance(uow: UnitOfWorkDep, who: PrincipalDep, tenant: TenantQ = None) -> list[TenantCompliance]:
    """Per tenant: policies, how many meet their RPO now, the worst achieved RPO."""
    return [TenantCompliance(**item) for item in service.compliance(uow, who, tenant=tenant)]
