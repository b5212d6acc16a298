"""The usage-sync hook: provisioners report what an allocation really uses.

Decision: a report never overwrites the ledger. Drift (measured - ledger used) is recorded,
one open report per (allocation, source), and shown in the inconsistency report until an
operator applies it (``apply_report``: the ledger's used becomes the measurement, forced,
marking nodes over-limit if needed) or dismisses it, or a later measurement agrees with the
ledger again. A sync that knows its backend is authoritative may pass ``auto_apply=True``
(configured per provisioner), which applies at once and is audited as such. The reason:
a measurement taken while a request is between provisioning and commit legitimately
differs from the ledger for a moment, and silently "correcting" it would double-count.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Protocol

from sqlalchemy import false, or_, select
from sqlmodel import col

from controlplane.audit.record import AuditRecord
from controlplane.auth.policy import PERMISSIONS
from controlplane.auth.principal import Principal
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Conflict, NotFound, ValidationFailed
from controlplane.ledger import access
from controlplane.ledger.chain import as_json, vector
from controlplane.ledger.models import Allocation, QuotaNode, UsageReport, UsageReportStatus
from controlplane.ledger.service import checked_vector, set_used
from controlplane.tenants import service as tenants
from controlplane.tenants.models import Tenant
from quotas import NodeKey, ResourceVector


class UsageReporter(Protocol):
    """What a provisioner's sync task calls with one allocation's measured usage."""

    def __call__(
        self, uow: UnitOfWork, allocation_id: uuid.UUID, measured: Mapping[str, int], source: str
    ) -> UsageReport | None: ...


def _allocation_key(uow: UnitOfWork, allocation_id: uuid.UUID, *, lock: bool = False) -> tuple[Allocation, NodeKey]:
    stmt = (
        select(Allocation, Tenant.path)
        .join(Tenant, col(Tenant.id) == col(Allocation.tenant_id))
        .where(col(Allocation.id) == allocation_id)
    )
    if lock:
        stmt = stmt.with_for_update(of=Allocation)
    row = uow.session.execute(stmt).first()
    if row is None:
        raise NotFound(f"allocation '{allocation_id}' not found", allocation=str(allocation_id))
    allocation, path = row
    return allocation, NodeKey(path, allocation.cloud, allocation.region)


def report_usage(
    uow: UnitOfWork,
    allocation_id: uuid.UUID,
    measured: Mapping[str, int],
    source: str,
    *,
    auto_apply: bool = False,
) -> UsageReport | None:
    """Record what ``source`` measured for the allocation; returns the open report, or None
    when the measurement agrees with the ledger (closing any earlier open report)."""
    principal = access.principal_of(uow)
    if not source or len(source) > 40:
        raise ValidationFailed("source must be 1-40 characters", field="source")
    amounts = checked_vector("measured", measured)
    allocation, key = _allocation_key(uow, allocation_id, lock=True)
    access.authorize_read(principal, key)
    node = uow.session.scalars(select(QuotaNode).where(col(QuotaNode.allocation_id) == allocation.id)).one()
    ledger_used = vector(node.used)
    drift = amounts - ledger_used
    now = uow.now()
    report = uow.session.scalars(
        select(UsageReport).where(
            col(UsageReport.allocation_id) == allocation.id,
            col(UsageReport.source) == source,
            col(UsageReport.status) == UsageReportStatus.OPEN.value,
        )
    ).first()
    if not drift:
        if report is not None:
            report.status, report.resolved_at, report.resolved_by = UsageReportStatus.RESOLVED.value, now, source
            _audit(uow, "quota.drift-resolved", key, report, reason="a later measurement agrees with the ledger")
        return None
    if report is None:
        report = UsageReport(allocation_id=allocation.id, source=source, first_seen_at=now)
        uow.session.add(report)
    elif as_json(drift) == report.drift and as_json(amounts) == report.measured:
        report.reported_at = now  # unchanged drift: no new audit event
        return report
    report.measured, report.ledger_used, report.drift = as_json(amounts), as_json(ledger_used), as_json(drift)
    report.reported_at = now
    uow.session.flush()
    _audit(uow, "quota.drift-recorded", key, report)
    if auto_apply:
        _apply(uow, report, key, amounts, by=f"{source} (auto-apply)")
    return report


def _audit(uow: UnitOfWork, action: str, key: NodeKey, report: UsageReport, **extra: object) -> None:
    uow.audit(
        AuditRecord(
            action,
            "quota_node",
            str(key),
            tenant_path=key.tenant,
            after={"measured": report.measured, "ledger_used": report.ledger_used, "drift": report.drift},
            extra={"report": str(report.id), "source": report.source, **extra},
        )
    )


def _open_report(uow: UnitOfWork, report_id: uuid.UUID) -> tuple[UsageReport, NodeKey]:
    report = uow.session.scalars(select(UsageReport).where(col(UsageReport.id) == report_id).with_for_update()).first()
    if report is None:
        raise NotFound(f"inconsistency '{report_id}' not found", inconsistency=str(report_id))
    _, key = _allocation_key(uow, report.allocation_id)
    if not access.principal_of(uow).scope.allows(key.tenant or ""):
        raise NotFound(f"inconsistency '{report_id}' not found", inconsistency=str(report_id))
    if report.status != UsageReportStatus.OPEN:
        raise Conflict(f"inconsistency '{report_id}' is {report.status}", current_state=report.status)
    return report, key


def _apply(
    uow: UnitOfWork, report: UsageReport, key: NodeKey, measured: ResourceVector, *, by: str, reason: str = ""
) -> None:
    set_used(uow, key, measured, reason=f"usage report {report.id} from {report.source}: {reason or 'applied'}")
    report.status, report.resolved_at, report.resolved_by = UsageReportStatus.APPLIED.value, uow.now(), by


def apply_report(uow: UnitOfWork, report_id: uuid.UUID, reason: str = "") -> UsageReport:
    """Operator action: the ledger's used becomes what the backend measured."""
    report, key = _open_report(uow, report_id)
    _apply(uow, report, key, vector(report.measured), by=access.principal_of(uow).name, reason=reason)
    return report


def dismiss_report(uow: UnitOfWork, report_id: uuid.UUID, reason: str) -> UsageReport:
    """Operator action: the ledger is right; the drift is acknowledged and closed."""
    report, key = _open_report(uow, report_id)
    access.authorize_set_limit(access.principal_of(uow), key.tenant)
    report.status, report.resolved_at = UsageReportStatus.DISMISSED.value, uow.now()
    report.resolved_by = access.principal_of(uow).name
    _audit(uow, "quota.drift-dismissed", key, report, reason=reason)
    return report


def open_reports(
    uow: UnitOfWork, *, after: uuid.UUID | None, limit: int
) -> tuple[Sequence[tuple[UsageReport, Allocation, str]], uuid.UUID | None]:
    """Open drift under the subtrees where the caller holds ``quotas.report``, by report id."""
    principal = access.principal_of(uow)
    stmt = (
        select(UsageReport, Allocation, Tenant.path)
        .join(Allocation, col(Allocation.id) == col(UsageReport.allocation_id))
        .join(Tenant, col(Tenant.id) == col(Allocation.tenant_id))
        .where(col(UsageReport.status) == UsageReportStatus.OPEN.value)
    )
    if principal.scope.roots is not None:
        roots = report_roots(principal)
        stmt = stmt.where(or_(*(tenants.subtree_clause(r) for r in roots)) if roots else false())
    if after is not None:
        stmt = stmt.where(col(UsageReport.id) > after)
    rows = list(uow.session.execute(stmt.order_by(col(UsageReport.id)).limit(limit + 1)))
    nxt = rows[limit - 1][0].id if len(rows) > limit else None
    return rows[:limit], nxt


def report_roots(principal: Principal) -> list[str]:
    """The subtrees where ``principal`` holds a role granting ``quotas.report``."""
    granted = PERMISSIONS["quotas.report"]
    return sorted({bound for role, bound in principal.bindings if role in granted})
