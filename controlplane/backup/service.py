"""Reads and actions behind the API and CLI: scoped to the caller's subtrees, never committing.

Compliance is the promise we prove: a policy's achieved RPO is `now` minus the snapshot time
of its newest *verified* run (`backup.rpo`); no verified point, no RPO, never compliant.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from backup.retention import RecoveryPoint
from backup.rpo import RpoStatus, rpo_status
from backup.states import RunState
from controlplane.audit.record import AuditRecord
from controlplane.auth.policy import authorize
from controlplane.auth.principal import Principal
from controlplane.backup.models import (
    VERIFIED_STATES,
    BackupDrill,
    BackupPolicy,
    BackupRun,
    DrillPurpose,
    DrillState,
    PolicyState,
    Trigger,
)
from controlplane.backup.scheduler import has_verified_point, new_drill, new_run
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Conflict, NotFound, ValidationFailed
from controlplane.tenants import service as tenants
from controlplane.tenants.models import Tenant

RESTORE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _after(after: str | None) -> uuid.UUID | None:
    if after is None:
        return None
    try:
        return uuid.UUID(after)
    except ValueError:
        raise ValidationFailed("cursor is not one this API issued", field="cursor") from None


def _page(uow: UnitOfWork, stmt: Any, table: Any, after: str | None, limit: int) -> tuple[list[Any], str | None]:
    cursor = _after(after)
    if cursor is not None:
        stmt = stmt.where(table.id > cursor)
    rows = [tuple(r) for r in uow.session.execute(stmt.order_by(table.id).limit(limit + 1))]
    return rows[:limit], (str(rows[limit - 1][0].id) if len(rows) > limit else None)


def _scoped(who: Principal, table: Any, tenant: str | None) -> Any:
    stmt = select(table, Tenant.path).join(Tenant, Tenant.id == table.tenant_id).where(tenants.scope_clause(who.scope))
    return stmt.where(tenants.subtree_clause(tenant)) if tenant is not None else stmt


def visible_policies(uow: UnitOfWork, who: Principal, *, limit: int) -> list[tuple[BackupPolicy, str]]:
    """Policies (with their tenant path) in the caller's scope, for pages that show them all."""
    stmt = _scoped(who, BackupPolicy, None).order_by(Tenant.path, BackupPolicy.slug).limit(limit)
    return [(p, path) for p, path in uow.session.execute(stmt)]


def list_policies(
    uow: UnitOfWork, who: Principal, *, tenant: str | None, after: str | None, limit: int
) -> tuple[list[Any], str | None]:
    return _page(uow, _scoped(who, BackupPolicy, tenant), BackupPolicy, after, limit)


def list_runs(
    uow: UnitOfWork,
    who: Principal,
    *,
    tenant: str | None,
    policy: uuid.UUID | None,
    state: RunState | None,
    after: str | None,
    limit: int,
) -> tuple[list[Any], str | None]:
    stmt = _scoped(who, BackupRun, tenant)
    if policy is not None:
        stmt = stmt.where(BackupRun.policy_id == policy)
    if state is not None:
        stmt = stmt.where(BackupRun.state == state.value)
    return _page(uow, stmt, BackupRun, after, limit)


def list_drills(
    uow: UnitOfWork, who: Principal, *, tenant: str | None, policy: uuid.UUID | None, after: str | None, limit: int
) -> tuple[list[Any], str | None]:
    stmt = _scoped(who, BackupDrill, tenant)
    if policy is not None:
        stmt = stmt.where(BackupDrill.policy_id == policy)
    return _page(uow, stmt, BackupDrill, after, limit)


def get_visible(uow: UnitOfWork, who: Principal, table: Any, row_id: uuid.UUID, what: str) -> tuple[Any, str]:
    """404 for rows outside the caller's subtrees (their existence is not confirmed)."""
    found = uow.session.execute(
        select(table, Tenant.path).join(Tenant, Tenant.id == table.tenant_id).where(table.id == row_id)
    ).first()
    if found is None or not who.scope.allows(found[1]):
        raise NotFound(f"{what} '{row_id}' not found")
    authorize(who, "backup.read", found[1], what=f"{what} '{row_id}'")
    return found[0], found[1]


def _operable(uow: UnitOfWork, who: Principal, policy_id: uuid.UUID) -> tuple[BackupPolicy, str]:
    """The policy, visible and operable by the caller, row-locked until the commit: two "run now"
    (or drill/restore) calls on one policy are decided one after the other, never both from the
    same "nothing is running" read (PostgreSQL: FOR NO KEY UPDATE, which inserts of runs
    referencing the policy do not wait for; SQLite: write units are BEGIN IMMEDIATE already)."""
    visible, path = get_visible(uow, who, BackupPolicy, policy_id, "backup policy")
    authorize(who, "backup.operate", path, what=f"backup policy '{policy_id}'")
    policy = uow.session.scalars(
        select(BackupPolicy)
        .where(BackupPolicy.id == visible.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one()
    if policy.state != PolicyState.ACTIVE.value:
        raise Conflict(f"the policy is {policy.state}", current_state=policy.state)
    return policy, path


def run_now(uow: UnitOfWork, who: Principal, policy_id: uuid.UUID) -> tuple[BackupRun, str]:
    """A manual run; refused (409 naming the unfinished run) while another run of the policy is
    waiting or running: one run per policy at a time, whoever asked first wins."""
    policy, path = _operable(uow, who, policy_id)
    busy = uow.session.execute(
        select(BackupRun.id, BackupRun.state).where(
            BackupRun.policy_id == policy.id,
            col(BackupRun.state).in_([RunState.SCHEDULED.value, RunState.RUNNING.value, RunState.UPLOADED.value]),
        )
    ).first()
    if busy is not None:
        raise Conflict(
            f"run '{busy[0]}' of this policy is {busy[1]}: follow it at /v1/backup-runs/{busy[0]}",
            run=str(busy[0]),
            current_state=busy[1],
        )
    run = new_run(uow, policy, uow.now(), Trigger.MANUAL)
    uow.audit(AuditRecord("backup.run", "backup_policy", str(policy.id), tenant_path=path, after={"run": str(run.id)}))
    return run, path


NO_POINT = (
    "the policy has no verified recovery point yet: nothing to {what}; run a backup "
    "(POST /v1/backup-policies/{id}:run) and try again once it is verified"
)


def drill_now(
    uow: UnitOfWork, who: Principal, policy_id: uuid.UUID, *, restore_to: Path | None = None
) -> tuple[BackupDrill, str]:
    """A drill (or a restore into `restore_to`) of the newest verified point: 409 when there is
    none yet, and for a restore when its target exists or another restore to it is unfinished."""
    policy, path = _operable(uow, who, policy_id)
    what = "restore" if restore_to is not None else "drill"
    if not has_verified_point(uow, policy.id):
        raise Conflict(NO_POINT.format(what=what, id=policy.id), reason="no-verified-point")
    fields: dict[str, Any] = {}
    if restore_to is not None:
        _claim_restore_target(uow, policy, restore_to)
        fields = {"purpose": DrillPurpose.RESTORE.value, "target": str(restore_to)}
    drill = new_drill(uow, policy, uow.now(), Trigger.MANUAL, **fields)
    uow.audit(
        AuditRecord(
            f"backup.{fields.get('purpose', 'drill')}",
            "backup_policy",
            str(policy.id),
            tenant_path=path,
            after={"drill": str(drill.id), **({"target": str(restore_to)} if restore_to else {})},
        )
    )
    return drill, path


def _claim_restore_target(uow: UnitOfWork, policy: BackupPolicy, target: Path) -> None:
    """Restores to one name are decided one after the other: the tenant's row is locked (two
    policies of a tenant share its restore area), then an unfinished restore to the same
    directory, or the directory itself, is a 409 naming it."""
    uow.session.execute(select(Tenant.id).where(Tenant.id == policy.tenant_id).with_for_update(key_share=True))
    pending = uow.session.scalars(
        select(BackupDrill.id).where(
            BackupDrill.target == str(target),
            col(BackupDrill.state).in_([DrillState.SCHEDULED.value, DrillState.RUNNING.value]),
        )
    ).first()
    if pending is not None:
        raise Conflict(
            f"restore '{pending}' into '{target.name}' has not finished yet: pick a new name",
            field="name",
            restore=str(pending),
        )
    if target.exists():
        raise Conflict(f"restore target '{target.name}' exists already: pick a new name", field="name")


def restore_target(root: Path, tenant_path: str, name: str) -> Path:
    """Restores land only in the tenant's own area: `<restore root>/<tenant path>/<name>`."""
    if not RESTORE_NAME.match(name):
        raise ValidationFailed("name: lower-case letters, digits and '-' (a new directory)", field="name")
    return root / tenant_path / name


@dataclass(frozen=True)
class PolicyStatus:
    policy: BackupPolicy
    tenant_path: str
    rpo: RpoStatus
    runs: dict[str, int]
    bytes_uploaded: int
    last_drill_success: datetime | None
    last_drill_rto_s: float | None
    last_drill_state: str | None


def statuses(session: Session, policies: Sequence[tuple[BackupPolicy, str]], now: datetime) -> list[PolicyStatus]:
    """RPO, run counts, bytes and drill facts per policy, from rows (the API and the metrics)."""
    ids = [p.id for p, _ in policies]
    if not ids:
        return []
    points: dict[uuid.UUID, list[RecoveryPoint]] = {i: [] for i in ids}
    for pid, sid, at in session.execute(
        select(BackupRun.policy_id, BackupRun.snapshot_id, BackupRun.snapshot_time).where(
            col(BackupRun.policy_id).in_(ids),
            col(BackupRun.state).in_(VERIFIED_STATES),
            col(BackupRun.snapshot_time).is_not(None),
        )
    ):
        points[pid].append(RecoveryPoint(str(sid), at, verified=True))
    runs: dict[uuid.UUID, dict[str, int]] = {i: {} for i in ids}
    sent: dict[uuid.UUID, int] = dict.fromkeys(ids, 0)
    for pid, state, n, total in session.execute(
        select(BackupRun.policy_id, BackupRun.state, func.count(), func.sum(BackupRun.bytes_uploaded))
        .where(col(BackupRun.policy_id).in_(ids))
        .group_by(BackupRun.policy_id, BackupRun.state)
    ):
        runs[pid][state] = int(n)
        sent[pid] += int(total or 0)
    passed: dict[uuid.UUID, datetime] = dict(
        session.execute(
            select(BackupDrill.policy_id, func.max(BackupDrill.finished_at))
            .where(
                col(BackupDrill.policy_id).in_(ids),
                BackupDrill.state == DrillState.PASSED.value,
                BackupDrill.purpose == DrillPurpose.DRILL.value,
            )
            .group_by(BackupDrill.policy_id)
        ).all()
    )
    last: dict[uuid.UUID, tuple[str, float | None]] = {}
    for pid, state, rto in session.execute(
        select(BackupDrill.policy_id, BackupDrill.state, BackupDrill.rto_s)
        .where(
            col(BackupDrill.policy_id).in_(ids),
            col(BackupDrill.state).in_([DrillState.PASSED.value, DrillState.FAILED.value]),
            BackupDrill.purpose == DrillPurpose.DRILL.value,
        )
        .order_by(col(BackupDrill.finished_at))
    ):
        last[pid] = (state, rto)
    return [
        PolicyStatus(
            policy=p,
            tenant_path=path,
            rpo=rpo_status(points[p.id], target=timedelta(seconds=p.rpo_target_s), now=now),
            runs=runs[p.id],
            bytes_uploaded=sent[p.id],
            last_drill_success=passed.get(p.id),
            last_drill_state=last.get(p.id, (None, None))[0],
            last_drill_rto_s=last.get(p.id, (None, None))[1],
        )
        for p, path in policies
    ]


def compliance(uow: UnitOfWork, who: Principal, *, tenant: str | None) -> list[dict[str, Any]]:
    """Per tenant: how many policies, how many compliant, the worst achieved RPO."""
    rows = [tuple(r) for r in uow.session.execute(_scoped(who, BackupPolicy, tenant).order_by(Tenant.path))]
    summary: dict[str, dict[str, Any]] = {}
    for status in statuses(uow.session, rows, uow.now()):
        item = summary.setdefault(
            status.tenant_path,
            {"tenant": status.tenant_path, "policies": 0, "compliant": 0, "worst_rpo_s": 0.0, "non_compliant": []},
        )
        item["policies"] += 1
        if status.rpo.compliant:
            item["compliant"] += 1
        else:
            item["non_compliant"].append(status.policy.slug)
        item["worst_rpo_s"] = max(item["worst_rpo_s"], status.rpo.achieved_seconds)
    for item in summary.values():  # no verified point anywhere: no RPO at all (JSON has no infinity)
        item["worst_rpo_s"] = None if item["worst_rpo_s"] == float("inf") else item["worst_rpo_s"]
    return list(summary.values())
