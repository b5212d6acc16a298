"""Periodic chaining of queued audit events, and verification of the chain."""

from __future__ import annotations

from controlplane.audit.chain import checkpoint, integrate
from controlplane.db.uow import unit_of_work
from controlplane.worker.registry import periodic, task
from controlplane.worker.runtime import WorkerContext

VERIFY_TASK = "chutian.audit.verify"
INTEGRATE_TASK = "chutian.audit.integrate"


@task(INTEGRATE_TASK)
def integrate_queue(ctx: WorkerContext) -> int:
    """Chains what no unit's own after-commit integration took (it found another at work)."""
    return integrate(ctx.engine, drain=True)


@task(VERIFY_TASK)
def verify_chain(ctx: WorkerContext) -> bool:
    integrate(ctx.engine, drain=True)  # verify what is committed, not a moment of lag
    with unit_of_work(ctx.engine, clock=ctx.clock) as uow:
        return checkpoint(uow).ok


periodic("audit-verify", VERIFY_TASK, lambda s: s.audit_verify_interval_s)
periodic("audit-integrate", INTEGRATE_TASK, lambda s: s.audit_integrate_interval_s)
