"""Worker liveness: a beat-driven task that proves beat, broker and worker all work."""

from __future__ import annotations

from sqlalchemy import select

from controlplane.db.uow import unit_of_work
from controlplane.system.models import WorkerHeartbeat
from controlplane.worker.registry import periodic, task
from controlplane.worker.runtime import WorkerContext

HEARTBEAT_TASK = "chutian.system.heartbeat"


@task(HEARTBEAT_TASK)
def heartbeat(ctx: WorkerContext, queue: str = "chutian") -> None:
    with unit_of_work(ctx.engine, clock=ctx.clock) as uow:
        row = uow.session.scalars(
            select(WorkerHeartbeat).where(WorkerHeartbeat.queue == queue, WorkerHeartbeat.hostname == ctx.hostname)
        ).first()
        if row is None:
            uow.session.add(WorkerHeartbeat(queue=queue, hostname=ctx.hostname, pid=ctx.pid, last_seen=uow.now()))
        else:
            row.pid, row.last_seen = ctx.pid, uow.now()


periodic("worker-heartbeat", HEARTBEAT_TASK, lambda s: s.heartbeat_interval_s, queue="chutian")
