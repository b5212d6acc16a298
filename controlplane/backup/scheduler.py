"""The one backup scheduler: a beat tick every minute.

Per due policy, `backup.schedule.due_runs` splits what happened since the last claim into the
run to start now, the runs that were missed (recorded as `missed` rows, never dropped) and
the next due time. Claiming is a conditional UPDATE on `last_claimed_at`, so two schedulers
running at once never both create a run. Drills are scheduled the same way on their own cron,
except that a drill needs something to restore: while a policy has no verified recovery point
its due drill is *deferred* (not claimed, no drill row, the reason kept on the policy) rather
than recorded as a failed drill that would page someone; the first tick after the first
verified backup claims it.
The tick also ends runs/drills whose worker stopped renewing its lease (`failed`, with the
reason) and re-sends jobs for scheduled rows nobody picked up.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.engine import CursorResult
from sqlmodel import col

from backup.schedule import DueRuns, due_runs, seeded_jitter
from backup.states import RunState
from controlplane.backup import leases
from controlplane.backup.models import (
    VERIFIED_STATES,
    BackupDrill,
    BackupPolicy,
    BackupRun,
    DrillState,
    PolicyState,
    Trigger,
)
from controlplane.db.uow import Job, UnitOfWork

RUN_TASK = "chutian.backup.run"
DRILL_TASK = "chutian.backup.drill"
RESEND_AFTER = timedelta(seconds=120)


def _claim(uow: UnitOfWork, policy: BackupPolicy, due: DueRuns, *, drill: bool, who: str) -> bool:
    assert due.run_now is not None
    last_name, next_name = (
        ("drill_last_claimed_at", "drill_next_due_at") if drill else ("last_claimed_at", "next_due_at")
    )
    last = getattr(BackupPolicy, last_name)
    old = getattr(policy, last_name)
    values: dict[str, Any] = {
        last_name: due.run_now.nominal,
        next_name: due.next_run.due,
        "claimed_by": who,
        "claimed_at": uow.now(),
    }
    result = uow.session.execute(
        update(BackupPolicy)
        .where(BackupPolicy.id == policy.id, last == old)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


def _queued(uow: UnitOfWork, row: Any, task: str, key: str) -> Any:
    """Persist a new run or drill row and queue its task (sent only after the commit)."""
    row.created_at = row.updated_at = uow.now()
    uow.session.add(row)
    uow.session.flush()
    uow.enqueue(Job(task, {key: str(row.id)}))
    return row


def new_run(uow: UnitOfWork, policy: BackupPolicy, nominal: datetime, trigger: Trigger) -> BackupRun:
    run = BackupRun(policy_id=policy.id, tenant_id=policy.tenant_id, trigger=trigger.value, scheduled_for=nominal)
    result: BackupRun = _queued(uow, run, RUN_TASK, "run_id")
    return result


def new_drill(uow: UnitOfWork, policy: BackupPolicy, nominal: datetime, trigger: Trigger, **fields: Any) -> BackupDrill:
    drill = BackupDrill(
        policy_id=policy.id, tenant_id=policy.tenant_id, trigger=trigger.value, scheduled_for=nominal, **fields
    )
    result: BackupDrill = _queued(uow, drill, DRILL_TASK, "drill_id")
    return result


def has_verified_point(uow: UnitOfWork, policy_id: uuid.UUID) -> bool:
    """A drill or restore has something to restore: a verified run with its snapshot."""
    found = uow.session.scalars(
        select(BackupRun.id)
        .where(
            BackupRun.policy_id == policy_id,
            col(BackupRun.state).in_(VERIFIED_STATES),
            col(BackupRun.snapshot_id).is_not(None),
        )
        .limit(1)
    ).first()
    return found is not None


def _defer_drill(policy: BackupPolicy, due: DueRuns) -> None:
    """Keep the slot unclaimed (next tick looks again) and say why; nothing is failed or paged."""
    assert due.run_now is not None
    policy.drill_deferred_reason = (
        f"the drill due {due.run_now.nominal.isoformat()} waits for the first verified recovery point "
        "(no backup of this policy has been verified yet)"
    )


def _record_missed(uow: UnitOfWork, policy: BackupPolicy, due: DueRuns) -> None:
    now = uow.now()
    note = " (older missed runs not listed)" if due.truncated else ""
    for planned in due.missed:
        uow.session.add(
            BackupRun(
                policy_id=policy.id,
                tenant_id=policy.tenant_id,
                state=RunState.MISSED.value,
                scheduled_for=planned.nominal,
                finished_at=now,
                reason=f"no scheduler started it by {planned.due.isoformat()}{note}",
                created_at=now,
                updated_at=now,
            )
        )


def tick(uow: UnitOfWork, *, jitter: timedelta, who: str = "scheduler") -> dict[str, Any]:
    """One beat: claim due policies, create their runs and drills, end lost ones."""
    now = uow.now()
    started: list[str] = []
    drills: list[str] = []
    deferred: list[str] = []
    policies = uow.session.scalars(
        select(BackupPolicy).where(
            BackupPolicy.state == PolicyState.ACTIVE.value,
            or_(
                col(BackupPolicy.next_due_at).is_(None),
                col(BackupPolicy.next_due_at) <= now,
                col(BackupPolicy.drill_next_due_at).is_(None),
                col(BackupPolicy.drill_next_due_at) <= now,
            ),
        )
    ).all()
    for policy in policies:
        spread = seeded_jitter(str(policy.id), jitter)
        due = due_runs(policy.schedule, last_claimed=policy.last_claimed_at, now=now, jitter=spread)
        if due.run_now is None:
            policy.next_due_at = due.next_run.due
        elif _claim(uow, policy, due, drill=False, who=who):
            _record_missed(uow, policy, due)
            started.append(str(new_run(uow, policy, due.run_now.nominal, Trigger.SCHEDULE).id))
        dd = due_runs(policy.drill_schedule, last_claimed=policy.drill_last_claimed_at, now=now, jitter=spread)
        if dd.run_now is None:
            policy.drill_next_due_at = dd.next_run.due
        elif not has_verified_point(uow, policy.id):
            _defer_drill(policy, dd)
            deferred.append(str(policy.id))
        elif _claim(uow, policy, dd, drill=True, who=who):
            policy.drill_deferred_reason = None
            drills.append(str(new_drill(uow, policy, dd.run_now.nominal, Trigger.SCHEDULE).id))
    lost = leases.expire(uow, BackupRun, active=[RunState.RUNNING.value, RunState.UPLOADED.value], now=now)
    lost += leases.expire(uow, BackupDrill, active=[DrillState.RUNNING.value], now=now)
    resent = _resend(uow, now)
    return {"runs": started, "drills": drills, "deferred": deferred, "lost": lost, "resent": resent}


def _resend(uow: UnitOfWork, now: datetime) -> int:
    """The row is the outbox: a scheduled run or drill whose job was lost is sent again."""
    count = 0
    for table, task, key, ready in (
        (BackupRun, RUN_TASK, "run_id", RunState.SCHEDULED.value),
        (BackupDrill, DRILL_TASK, "drill_id", DrillState.SCHEDULED.value),
    ):
        stale: list[uuid.UUID] = list(
            uow.session.scalars(select(table.id).where(table.state == ready, table.updated_at <= now - RESEND_AFTER))
        )
        for row_id in stale:
            uow.session.execute(
                update(table)
                .where(table.id == row_id)
                .values(updated_at=now)
                .execution_options(synchronize_session=False)
            )
            uow.enqueue(Job(task, {key: str(row_id)}))
        count += len(stale)
    return count
