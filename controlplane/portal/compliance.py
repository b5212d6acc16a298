"""Backup compliance as the portal shows it: one small function to point at the DR tables.

The DR control plane (backup policies, runs, measured RPO) is built on another branch. Until
it is merged, the only facts this branch holds are the remote-backup enrolments requested
through the portal or the API; their achieved RPO is unknown (``compliant`` is None), and the
page says so instead of showing a green badge it cannot prove.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from controlplane.auth.principal import Principal
from controlplane.db.uow import UnitOfWork
from controlplane.requests import service as requests
from controlplane.requests.models import InformationSystem, Request
from controlplane.requests.specs import RequestKind
from controlplane.requests.states import RequestState

SOURCE = "enrolments"  # becomes "policies" once the DR tables are read here


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
    """Enrolments the caller may see (scope-filtered by the requests service), newest first."""
    flt = requests.RequestFilter(kind=RequestKind.BACKUP_ENROLMENT.value)
    rows, _ = requests.page_requests(uow, who, flt, sort="newest", offset=0, limit=limit)
    live = [(r, p) for r, p in rows if r.state not in (RequestState.CANCELLED.value, RequestState.REJECTED.value)]
    systems = {
        s.id: s
        for s in uow.session.scalars(
            select(InformationSystem).where(InformationSystem.id.in_([r.system_id for r, _ in live]))  # type: ignore[attr-defined]
        )
    }
    return [_row(r, p, systems.get(r.system_id)) for r, p in live]


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
