"""Runs operations as lists of named, idempotent steps, surviving a worker killed at any instant.

- A claim is a conditional UPDATE (queued and due → running, with an owner and a lease);
  the row count says whether we won. A lease keeper renews it while we work.
- Each step runs in its own unit of work together with the row's progress (`steps_done`,
  `memo`), so after a crash the next claimant resumes at the first undone step. Steps must
  be idempotent (find-or-create by tag) because a crash can land between a backend call
  and that commit.
- Transient errors put the row back to queued with `next_attempt_at` (backoff on the row,
  never a Celery countdown); the reaper re-sends due rows and reclaims expired leases.
- A permanent failure compensates completed steps in reverse, then ends `failed` (the
  tenant must act) or `errored` (an operator must act); kind hooks update the owner
  (e.g. the request) in the same transaction as the final state.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.engine import CursorResult
from sqlmodel import col

from controlplane.db.uow import Job, UnitOfWork, run_in_unit, unit_of_work
from controlplane.operations.models import BackendErrorEvent, Operation, OperationState
from controlplane.worker.runtime import WorkerContext
from provisioners.errors import ProvisionerError

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)  # default; settings.operation_lease_s overrides it
MAX_TRANSIENT_ATTEMPTS = 8
LOG_KEEP = 50


class TransientError(Exception):
    """Worth retrying later (busy backend, 5xx, connection reset, first timeout)."""


class PermanentFailure(Exception):
    """The tenant must act (e.g. over quota at the backend): ends `failed` after compensation."""


class OperatorError(Exception):
    """An operator must act (backend auth, capacity exhausted): ends `errored`."""


class LeaseLost(Exception):
    """Another worker owns the row now; stop without touching it."""


@dataclass
class StepContext:
    worker: WorkerContext
    operation_id: uuid.UUID
    kind: str
    params: dict[str, Any]
    memo: dict[str, Any]
    progress: Callable[[str], None] = field(default=lambda message: None)


StepFn = Callable[[StepContext, UnitOfWork], dict[str, Any] | None]
CompensateFn = Callable[[StepContext, UnitOfWork], None]


@dataclass(frozen=True)
class Step:
    name: str
    run: StepFn
    compensate: CompensateFn | None = None


@dataclass
class KindHooks:
    on_success: Callable[[UnitOfWork, Operation], None] | None = None
    on_failure: Callable[[UnitOfWork, Operation, OperationState], None] | None = None


STEPS: dict[str, list[Step]] = {}
HOOKS: dict[str, KindHooks] = {}


def register_step(kind: str, step: Step, *, before: str | None = None) -> None:
    """Append a step to a kind (or insert it before a named one): no shared function to edit."""
    steps = STEPS.setdefault(kind, [])
    if any(s.name == step.name for s in steps):
        raise ValueError(f"step {step.name} already registered for {kind}")
    index = next((i for i, s in enumerate(steps) if s.name == before), len(steps)) if before else len(steps)
    steps.insert(index, step)


def backoff(attempt: int) -> timedelta:
    return timedelta(seconds=min(300, 2 ** min(attempt, 8)))


def claim(uow: UnitOfWork, op_id: uuid.UUID, owner: str, lease: timedelta = LEASE) -> bool:
    now = uow.now()
    result = uow.session.execute(
        update(Operation)
        .where(
            Operation.id == op_id,
            Operation.state == OperationState.QUEUED.value,
            or_(col(Operation.next_attempt_at).is_(None), col(Operation.next_attempt_at) <= now),
        )
        .values(
            state=OperationState.RUNNING.value,
            owner=owner,
            lease_expires_at=now + lease,
            started_at=now,
            updated_at=now,
            attempts=Operation.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


def renew(uow: UnitOfWork, op_id: uuid.UUID, owner: str, lease: timedelta = LEASE) -> bool:
    now = uow.now()
    result = uow.session.execute(
        update(Operation)
        .where(Operation.id == op_id, Operation.owner == owner, Operation.state == OperationState.RUNNING.value)
        .values(lease_expires_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


class _LeaseKeeper(threading.Thread):
    def __init__(self, ctx: WorkerContext, op_id: uuid.UUID, owner: str) -> None:
        super().__init__(name=f"lease-{op_id}", daemon=True)
        self.ctx, self.op_id, self.owner = ctx, op_id, owner
        self.stop = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        lease = lease_of(self.ctx)
        while not self.stop.wait(lease.total_seconds() / 3):
            try:
                if not run_in_unit(
                    self.ctx.engine, lambda uow: renew(uow, self.op_id, self.owner, lease), clock=self.ctx.clock
                ):
                    self.lost.set()
                    return
            except Exception:  # a blip: try again next tick, the lease has slack
                log.warning("lease renewal for %s failed; retrying", self.op_id, exc_info=True)


def lease_of(ctx: WorkerContext) -> timedelta:
    return timedelta(seconds=getattr(ctx.settings, "operation_lease_s", LEASE.total_seconds()))


def _owned(uow: UnitOfWork, op_id: uuid.UUID, owner: str) -> Operation:
    op = uow.session.scalars(select(Operation).where(Operation.id == op_id).with_for_update()).one()
    if op.owner != owner or op.state != OperationState.RUNNING.value:
        raise LeaseLost(str(op_id))
    return op


def _record_backend_error(uow: UnitOfWork, op: Operation, exc: BaseException, step: str | None) -> None:
    """If a provisioner error caused `exc`, keep a row for chutian_backend_errors_total."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, ProvisionerError):
        seen = seen.__cause__ or seen.__context__
    if isinstance(seen, ProvisionerError):
        uow.session.add(
            BackendErrorEvent(backend=seen.backend, kind=seen.kind, operation_id=op.id, step=step, at=uow.now())
        )


def _append_log(op: Operation, now: Any, message: str) -> None:
    op.log = [*op.log, {"at": now.isoformat(), "message": message}][-LOG_KEEP:]


def run(ctx: WorkerContext, op_id: uuid.UUID) -> str:
    """Claim and run an operation to its end (or until a transient error parks it)."""
    owner = f"{ctx.hostname}:{ctx.pid}:{uuid.uuid4().hex[:8]}"
    if not run_in_unit(ctx.engine, lambda uow: claim(uow, op_id, owner, lease_of(ctx)), clock=ctx.clock):
        return "not-claimed"
    keeper = _LeaseKeeper(ctx, op_id, owner)
    keeper.start()
    try:
        return _run_steps(ctx, op_id, owner, keeper)
    except LeaseLost:
        log.warning("operation %s: lease lost; another worker continues it", op_id)
        return "lease-lost"
    finally:
        keeper.stop.set()


def _run_steps(ctx: WorkerContext, op_id: uuid.UUID, owner: str, keeper: _LeaseKeeper) -> str:
    current: str | None = None
    while True:
        if keeper.lost.is_set():
            raise LeaseLost(str(op_id))
        try:
            with unit_of_work(ctx.engine, clock=ctx.clock, dispatcher=ctx.dispatcher) as uow:
                op = _owned(uow, op_id, owner)
                steps = STEPS.get(op.kind)
                if not steps:
                    raise OperatorError(f"no steps are registered for operation kind '{op.kind}'")
                pending = [s for s in steps if s.name not in op.steps_done]
                if not pending:
                    _finish(uow, op, OperationState.SUCCEEDED, error=None)
                    return "succeeded"
                step = pending[0]
                current = op.step = step.name
                sc = StepContext(ctx, op_id, op.kind, dict(op.params), dict(op.memo))
                result = step.run(sc, uow)
                op.memo = {**op.memo, **(result or {})}
                op.steps_done = [*op.steps_done, step.name]
                op.updated_at = uow.now()
                _append_log(op, uow.now(), f"step {step.name} done")
        except LeaseLost:
            raise
        except TransientError as exc:
            return _park(ctx, op_id, owner, exc, step=current)
        except PermanentFailure as exc:
            return _fail(ctx, op_id, owner, OperationState.FAILED, exc, failing=current)
        except Exception as exc:  # OperatorError and anything unexpected: an operator must look
            log.exception("operation %s errored", op_id)
            return _fail(ctx, op_id, owner, OperationState.ERRORED, exc, failing=current)


def _park(ctx: WorkerContext, op_id: uuid.UUID, owner: str, exc: Exception, *, step: str | None = None) -> str:
    def work(uow: UnitOfWork) -> str:
        op = _owned(uow, op_id, owner)
        if op.attempts >= MAX_TRANSIENT_ATTEMPTS:
            raise OperatorError(f"gave up after {op.attempts} attempts: {exc}") from exc
        now = uow.now()
        _record_backend_error(uow, op, exc, step)
        op.state, op.owner, op.lease_expires_at = OperationState.QUEUED.value, None, None
        op.next_attempt_at = now + backoff(op.attempts)
        op.last_error = f"transient: {exc}"
        op.updated_at = now
        _append_log(op, now, f"transient error, retry at {op.next_attempt_at.isoformat()}: {exc}")
        return "parked"

    try:
        return str(run_in_unit(ctx.engine, work, clock=ctx.clock))
    except OperatorError as final:
        return _fail(ctx, op_id, owner, OperationState.ERRORED, final)


def _fail(
    ctx: WorkerContext,
    op_id: uuid.UUID,
    owner: str,
    state: OperationState,
    exc: Exception,
    *,
    failing: str | None = None,
) -> str:
    """Compensate completed steps in reverse, each in its own unit, then record the end."""
    with unit_of_work(ctx.engine, clock=ctx.clock) as uow:
        op = _owned(uow, op_id, owner)
        kind, params, memo, done = op.kind, dict(op.params), dict(op.memo), list(op.steps_done)
        failing = failing if failing and failing not in done else None
    by_name = {s.name: s for s in STEPS.get(kind, [])}
    compensation_error: str | None = None
    # The failing step may have done part of its work at the backend (its transaction rolled
    # back, the backend did not): its compensation runs first and must tolerate partial state.
    for name in [*([failing] if failing else []), *reversed(done)]:
        step = by_name.get(name)
        if step is None or step.compensate is None:
            continue
        try:
            with unit_of_work(ctx.engine, clock=ctx.clock) as uow:
                op = _owned(uow, op_id, owner)
                step.compensate(StepContext(ctx, op_id, kind, params, memo), uow)
                op.steps_done = [s for s in op.steps_done if s != name]
                _append_log(op, uow.now(), f"step {name} compensated")
        except LeaseLost:
            raise
        except Exception as comp_exc:
            log.exception("operation %s: compensating %s failed", op_id, name)
            compensation_error = f"compensating {name} failed: {comp_exc}"
            state = OperationState.ERRORED
            break
    with unit_of_work(ctx.engine, clock=ctx.clock, dispatcher=ctx.dispatcher) as uow:
        op = _owned(uow, op_id, owner)
        message = f"{type(exc).__name__}: {exc}" + (f"; {compensation_error}" if compensation_error else "")
        _record_backend_error(uow, op, exc, failing)
        _finish(uow, op, state, error=message, compensated=compensation_error is None)
    return state.value


def _finish(
    uow: UnitOfWork, op: Operation, state: OperationState, *, error: str | None, compensated: bool = True
) -> None:
    now = uow.now()
    op.state, op.last_error, op.owner, op.lease_expires_at = state.value, error, None, None
    op.finished_at = op.updated_at = now
    op.step = None
    _append_log(op, now, f"{state.value}" + (f": {error}" if error else ""))
    hooks = HOOKS.get(op.kind)
    if hooks is None:
        return
    if state == OperationState.SUCCEEDED and hooks.on_success:
        hooks.on_success(uow, op)
    elif state != OperationState.SUCCEEDED and hooks.on_failure:
        op.memo = {**op.memo, "compensated": compensated}
        hooks.on_failure(uow, op, state)


def reap(uow: UnitOfWork, *, stale_after: timedelta = timedelta(seconds=30)) -> list[str]:
    """Expired leases go back to the queue; due queued rows get their job (re-)sent.

    The row is the outbox: a job lost with a dead broker connection, a parked retry whose
    time has come, or a lease whose worker died is re-sent here. Claims are conditional,
    so a duplicate send is harmless."""
    now = uow.now()
    expired = list(
        uow.session.scalars(
            select(Operation.id).where(
                Operation.state == OperationState.RUNNING.value, col(Operation.lease_expires_at) < now
            )
        )
    )
    if expired:
        uow.session.execute(
            update(Operation)
            .where(col(Operation.id).in_(expired), Operation.state == OperationState.RUNNING.value)
            .values(
                state=OperationState.QUEUED.value,
                owner=None,
                lease_expires_at=None,
                next_attempt_at=None,
                last_error="lease expired: the worker stopped renewing it",
            )
            .execution_options(synchronize_session=False)
        )
    due = list(
        uow.session.scalars(
            select(Operation.id).where(
                Operation.state == OperationState.QUEUED.value,
                or_(
                    col(Operation.next_attempt_at).is_(None) & (col(Operation.updated_at) <= now - stale_after),
                    (col(Operation.next_attempt_at) <= now)
                    & (col(Operation.updated_at) < col(Operation.next_attempt_at)),
                    (col(Operation.next_attempt_at) <= now) & (col(Operation.updated_at) <= now - stale_after),
                ),
            )
        )
    )
    to_send = sorted({*expired, *due}, key=str)
    if to_send:
        uow.session.execute(
            update(Operation)
            .where(col(Operation.id).in_(to_send))
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
    from controlplane.operations.service import OPERATION_TASK

    for op_id in to_send:
        uow.enqueue(Job(OPERATION_TASK, {"operation_id": str(op_id)}))
    return [str(i) for i in to_send]
