"""Backup compliance as the portal shows it: the DR tables' measured RPO per policy.

A provisioned enrolment is a backup policy: its achieved RPO (newest *verified* recovery
point at the DR site) against its target decides the badge, exactly as the API and the
metrics do (``backup.service.statuses``). An enrolment still in approval or provisioning has
no policy yet: it is listed with ``compliant`` None (unknown), never as green.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from controlplane.auth.principal import Principal
from controlplane.db.uow import UnitOfWork
from controlplane.requests import service as requests
from controlplane.requests.models import InformationSystem, Request
from controlplane.requests.specs import RequestKind
from controlplane.requests.states import RequestState

SOURCE = "policies"


@dataclass(frozen=True)
class ComplianceRow:
    tenant: str
    system: str
    mlps_level: int
    name: str
    target_region: str
    rpo_target_s: int
    state: str
    achieved_rpo_s: float | None  # None: no verified recovery point known here
    compliant: bool | None  # None: unknown (no DR runs in this data source)
    last_point_at: datetime | None
    request_id: str


def backup_compliance(uow: UnitOfWork, who: Principal, *, limit: int = 200) -> list[ComplianceRow]:
    """Policies (measured) and enrolments not provisioned yet (unknown) the caller may see."""
    from controlplane.backup import service as backups

    policies = backups.visible_policies(uow, who, limit=limit)
    measured = backups.statuses(uow.session, policies, uow.now())
    flt = requests.RequestFilter(kind=RequestKind.BACKUP_ENROLMENT.value)
    rows, _ = requests.page_requests(uow, who, flt, sort="newest", offset=0, limit=limit)
    with_policy = {str(p.request_id) for p, _ in policies if p.request_id is not None}
    pending = [
        (r, p)
        for r, p in rows
        if r.state not in (RequestState.CANCELLED.value, RequestState.REJECTED.value) and str(r.id) not in with_policy
    ]
    system_ids = [r.system_id for r, _ in pending] + [st.policy.system_id for st in measured]
    systems = {
        s.id: s
        for s in uow.session.scalars(
            select(InformationSystem).where(InformationSystem.id.in_(system_ids))  # type: ignore[attr-defined]
        )
    }
    out = [_measured(st, systems.get(st.policy.system_id)) for st in measured]
    return out + [_row(r, p, systems.get(r.system_id)) for r, p in pending]


def _measured(status: Any, system: InformationSystem | None) -> ComplianceRow:
    policy, rpo = status.policy, status.rpo
    newest = rpo.newest_verified
    return ComplianceRow(
        tenant=status.tenant_path,
        system=system.name if system else "",
        mlps_level=system.mlps_level if system else 2,
        name=policy.slug,
        target_region=policy.target_region,
        rpo_target_s=policy.rpo_target_s,
        state=policy.state,
        achieved_rpo_s=None if rpo.achieved is None else rpo.achieved.total_seconds(),
        compliant=rpo.compliant,
        last_point_at=newest.time if newest is not None else None,
        request_id=str(policy.request_id or ""),
    )


def _row(req: Request, path: str, system: InformationSystem | None) -> ComplianceRow:
    return ComplianceRow(
        tenant=path,
        system=system.name if system else "",
        mlps_level=system.mlps_level if system else 2,
        name=str(req.spec.get("name", "")),
        target_region=str(req.spec.get("target_region", "")),
        rpo_target_s=int(req.spec.get("rpo_target_s", 0)),
        state=req.state,
        achieved_rpo_s=None,
        compliant=None,
        last_point_at=None,
        request_id=str(req.id),
    )
