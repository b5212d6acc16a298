"""Runs an Operation row: claim it, dispatch by kind, record the outcome on the row."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from controlplane.db.uow import run_in_unit, unit_of_work
from controlplane.operations import service
from controlplane.operations.models import Operation, OperationState
from controlplane.operations.service import OPERATION_TASK
from controlplane.worker.registry import OPERATION_HANDLERS, operation_handler, task
from controlplane.worker.runtime import WorkerContext

log = logging.getLogger(__name__)


@task(OPERATION_TASK)
def run_operation(ctx: WorkerContext, operation_id: str) -> str:
    op_id = uuid.UUID(operation_id)
    claimed = run_in_unit(ctx.engine, lambda uow: service.claim(uow, op_id), clock=ctx.clock)
    if not claimed:
        return "not-claimed"  # someone else has it, or it is finished: idempotent redelivery
    with unit_of_work(ctx.engine, clock=ctx.clock) as uow:
        op = service.get(uow, op_id)
        kind, params = op.kind, dict(op.params)
    handler = OPERATION_HANDLERS.get(kind)
    if handler is None:
        _finish(ctx, op_id, OperationState.ERRORED, error=f"no handler for operation kind '{kind}'")
        return "errored"
    try:
        result = handler(ctx, params)
    except Exception as exc:
        log.exception("operation %s (%s) errored", op_id, kind)
        _finish(ctx, op_id, OperationState.ERRORED, error=f"{type(exc).__name__}: {exc}")
        return "errored"
    _finish(ctx, op_id, OperationState.SUCCEEDED, result=result)
    return "succeeded"


def _finish(
    ctx: WorkerContext,
    op_id: uuid.UUID,
    state: OperationState,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    run_in_unit(ctx.engine, lambda uow: service.finish(uow, op_id, state, result=result, error=error), clock=ctx.clock)


@operation_handler("selftest")
def selftest(ctx: WorkerContext, params: dict[str, Any]) -> dict[str, Any]:
    """Signs the result with the worker's identity, so a test can tell who ran it."""
    with unit_of_work(ctx.engine, clock=ctx.clock, readonly=True) as uow:
        database_ok = uow.session.query(Operation).count() >= 1
    return {
        "worker_pid": ctx.pid,
        "worker_hostname": ctx.hostname,
        "database_ok": database_ok,
        "ran_at": ctx.clock().isoformat(),
    }
