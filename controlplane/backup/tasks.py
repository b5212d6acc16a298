"""Backup tasks: the scheduler's beat, one run, one drill (or restore). Ids in, rows re-read."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from controlplane.backup import drills, runner, scheduler
from controlplane.db.uow import unit_of_work
from controlplane.worker.registry import periodic, task
from controlplane.worker.runtime import WorkerContext

TICK_TASK = "chutian.backup.tick"


@task(TICK_TASK)
def tick(ctx: WorkerContext) -> dict[str, Any]:
    with unit_of_work(ctx.engine, clock=ctx.clock, dispatcher=ctx.dispatcher) as uow:
        return scheduler.tick(uow, jitter=timedelta(seconds=ctx.settings.backup_jitter_s), who=ctx.hostname)


@task(scheduler.RUN_TASK)
def run_backup(ctx: WorkerContext, run_id: str) -> str:
    return runner.execute_run(ctx, uuid.UUID(run_id))


@task(scheduler.DRILL_TASK)
def run_drill(ctx: WorkerContext, drill_id: str) -> str:
    return drills.execute_drill(ctx, uuid.UUID(drill_id))


periodic("backup-scheduler", TICK_TASK, lambda s: s.backup_tick_interval_s)
