"""Operation tasks: run one operation; reap stuck ones. The selftest kind lives here too."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from controlplane.db.uow import UnitOfWork, unit_of_work
from controlplane.operations import engine
from controlplane.operations.engine import Step, StepContext, register_step
from controlplane.operations.service import OPERATION_TASK
from controlplane.worker.registry import periodic, task
from controlplane.worker.runtime import WorkerContext

REAP_TASK = "chutian.operations.reap"


@task(OPERATION_TASK)
def run_operation(ctx: WorkerContext, operation_id: str) -> str:
    return engine.run(ctx, uuid.UUID(operation_id))


@task(REAP_TASK)
def reap(ctx: WorkerContext) -> list[str]:
    with unit_of_work(ctx.engine, clock=ctx.clock, dispatcher=ctx.dispatcher) as uow:
        return engine.reap(uow, stale_after=timedelta(seconds=ctx.settings.operation_resend_after_s))


periodic("operations-reaper", REAP_TASK, lambda s: s.reaper_interval_s)


def _selftest(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    """Signs the result with the worker's identity, so a test can tell who ran it."""
    return {"worker_pid": sc.worker.pid, "worker_hostname": sc.worker.hostname, "ran_at": uow.now().isoformat()}


register_step("selftest", Step("sign", _selftest))
