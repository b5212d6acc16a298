"""Periodic verification of the audit chain."""

from __future__ import annotations

from controlplane.audit.chain import checkpoint
from controlplane.db.uow import unit_of_work
from controlplane.worker.registry import periodic, task
from controlplane.worker.runtime import WorkerContext

VERIFY_TASK = "chutian.audit.verify"


@task(VERIFY_TASK)
def verify_chain(ctx: WorkerContext) -> bool:
    with unit_of_work(ctx.engine, clock=ctx.clock) as uow:
        return checkpoint(uow).ok


periodic("audit-verify", VERIFY_TASK, lambda s: s.audit_verify_interval_s)
