"""The operation engine: steps, crash recovery through leases, backoff on the row, compensation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from controlplane.db.uow import RecordingDispatcher, UnitOfWork, unit_of_work
from controlplane.operations import engine as ops
from controlplane.operations.engine import Step, StepContext
from controlplane.operations.models import Operation
from controlplane.operations.service import OPERATION_TASK
from controlplane.settings import Settings
from controlplane.site_config import Site
from controlplane.worker.runtime import WorkerContext


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kind() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    ops.STEPS.pop(name, None)
    ops.HOOKS.pop(name, None)


def worker(settings: Settings, engine: Engine, site: Site, clock: Clock, pid: int) -> WorkerContext:
    return WorkerContext(
        settings=settings, engine=engine, site=site, clock=clock, pid=pid, dispatcher=RecordingDispatcher()
    )


def new_op(engine: Engine, kind: str, clock: Clock, **params: Any) -> uuid.UUID:
    with unit_of_work(engine, clock=clock) as uow:
        op = Operation(kind=kind, params=params, created_at=uow.now(), updated_at=uow.now())
        uow.session.add(op)
        uow.session.flush()
        return op.id


def load(engine: Engine, op_id: uuid.UUID) -> Operation:
    with unit_of_work(engine, readonly=True) as uow:
        return uow.session.get(Operation, op_id)  # type: ignore[return-value]


def test_steps_run_in_order_and_hooks_see_the_end(
    settings: Settings, engine: Engine, site: Site, clock: Clock, kind: str
) -> None:
    seen: list[str] = []
    ops.register_step(kind, Step("one", lambda sc, uow: seen.append("one") or {"a": 1}))
    ops.register_step(kind, Step("two", lambda sc, uow: seen.append(f"two:{sc.memo['a']}") or {"b": 2}))
    ops.register_step(kind, Step("zero", lambda sc, uow: seen.append("zero") or None), before="one")
    ended: list[str] = []
    ops.HOOKS[kind] = ops.KindHooks(on_success=lambda uow, op: ended.append(op.state))
    op_id = new_op(engine, kind, clock)
    assert ops.run(worker(settings, engine, site, clock, 1), op_id) == "succeeded"
    assert seen == ["zero", "one", "two:1"]
    row = load(engine, op_id)
    assert row.state == "succeeded" and row.memo == {"a": 1, "b": 2} and row.steps_done == ["zero", "one", "two"]
    assert ended == ["succeeded"] and row.owner is None and row.attempts == 1


def test_a_dead_worker_is_replaced_via_the_lease_and_resumes_after_the_last_committed_step(
    settings: Settings, engine: Engine, site: Site, clock: Clock, kind: str
) -> None:
    runs: list[tuple[int, str]] = []

    def step(name: str, crash: bool = False) -> Step:
        def run(sc: StepContext, uow: UnitOfWork) -> None:
            runs.append((sc.worker.pid, name))
            if crash and sc.worker.pid == 1:
                raise SystemExit("worker killed")  # stands in for SIGKILL: nothing after this runs

        return Step(name, run)

    ops.register_step(kind, step("create"))
    ops.register_step(kind, step("attach", crash=True))
    ops.register_step(kind, step("finish"))
    op_id = new_op(engine, kind, clock)
    with pytest.raises(SystemExit):
        ops.run(worker(settings, engine, site, clock, 1), op_id)
    row = load(engine, op_id)
    assert row.state == "running" and row.steps_done == ["create"], "the crashed step must not be recorded"
    second = worker(settings, engine, site, clock, 2)
    assert ops.run(second, op_id) == "not-claimed", "a live lease keeps others away"
    clock.advance(seconds=61)
    with unit_of_work(engine, clock=clock, dispatcher=second.dispatcher) as uow:
        assert ops.reap(uow) == [str(op_id)]
    assert [j.task for j in second.dispatcher.sent] == [OPERATION_TASK]  # type: ignore[attr-defined]
    assert ops.run(second, op_id) == "succeeded"
    assert runs == [(1, "create"), (1, "attach"), (2, "attach"), (2, "finish")]
    assert load(engine, op_id).attempts == 2


def test_transient_errors_back_off_on_the_row(
    settings: Settings, engine: Engine, site: Site, clock: Clock, kind: str
) -> None:
    failures = {"left": 2}

    def flaky(sc: StepContext, uow: UnitOfWork) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ops.TransientError("503 from the backend")

    ops.register_step(kind, Step("flaky", flaky))
    w = worker(settings, engine, site, clock, 1)
    op_id = new_op(engine, kind, clock)
    assert ops.run(w, op_id) == "parked"
    row = load(engine, op_id)
    assert row.state == "queued" and row.next_attempt_at == clock.now + timedelta(seconds=2)
    assert "503" in (row.last_error or "")
    assert ops.run(w, op_id) == "not-claimed", "not before next_attempt_at"
    with unit_of_work(engine, clock=clock, dispatcher=w.dispatcher) as uow:
        assert ops.reap(uow) == [], "nothing is due yet"
    clock.advance(seconds=2)
    with unit_of_work(engine, clock=clock, dispatcher=w.dispatcher) as uow:
        assert ops.reap(uow) == [str(op_id)]
    assert ops.run(w, op_id) == "parked"
    clock.advance(seconds=4)
    assert ops.run(w, op_id) == "succeeded"


def test_permanent_failure_compensates_in_reverse(
    settings: Settings, engine: Engine, site: Site, clock: Clock, kind: str
) -> None:
    undone: list[str] = []
    ops.register_step(kind, Step("a", lambda sc, uow: None, compensate=lambda sc, uow: undone.append("a")))
    ops.register_step(kind, Step("b", lambda sc, uow: None, compensate=lambda sc, uow: undone.append("b")))

    def over_quota(sc: StepContext, uow: UnitOfWork) -> None:
        raise ops.PermanentFailure("quota exceeded at the backend")

    ops.register_step(kind, Step("c", over_quota, compensate=lambda sc, uow: undone.append("c")))
    failed: list[tuple[str, bool]] = []
    ops.HOOKS[kind] = ops.KindHooks(
        on_failure=lambda uow, op, state: failed.append((state.value, op.memo["compensated"]))
    )
    op_id = new_op(engine, kind, clock)
    assert ops.run(worker(settings, engine, site, clock, 1), op_id) == "failed"
    assert undone == ["c", "b", "a"], "the failing step (partial work) first, then completed steps newest first"
    row = load(engine, op_id)
    assert row.state == "failed" and "quota exceeded" in (row.last_error or "") and row.steps_done == []
    assert failed == [("failed", True)]


def test_failed_compensation_leaves_it_errored_for_an_operator(
    settings: Settings, engine: Engine, site: Site, clock: Clock, kind: str
) -> None:
    def cannot_undo(sc: StepContext, uow: UnitOfWork) -> None:
        raise RuntimeError("backend refused the delete")

    ops.register_step(kind, Step("a", lambda sc, uow: None, compensate=cannot_undo))
    ops.register_step(kind, Step("b", lambda sc, uow: (_ for _ in ()).throw(ops.PermanentFailure("no"))))
    op_id = new_op(engine, kind, clock)
    assert ops.run(worker(settings, engine, site, clock, 1), op_id) == "errored"
    row = load(engine, op_id)
    assert row.state == "errored" and "compensating a failed" in (row.last_error or "")
    assert row.steps_done == ["a"], "what could not be undone stays listed"


def test_too_many_transient_failures_end_errored(
    settings: Settings, engine: Engine, site: Site, clock: Clock, kind: str
) -> None:
    ops.register_step(kind, Step("never", lambda sc, uow: (_ for _ in ()).throw(ops.TransientError("timeout"))))
    w = worker(settings, engine, site, clock, 1)
    op_id = new_op(engine, kind, clock)
    outcomes = []
    for _ in range(ops.MAX_TRANSIENT_ATTEMPTS):
        outcomes.append(ops.run(w, op_id))
        clock.advance(seconds=600)
    assert outcomes[-1] == "errored" and set(outcomes[:-1]) == {"parked"}
    assert "gave up" in (load(engine, op_id).last_error or "")
