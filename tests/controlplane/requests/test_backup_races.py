"""Races on one policy, decided by the database: concurrent "run now" calls make exactly one run,
concurrent restores to one name make exactly one restore; and a drill needs a verified point
(the scheduler defers the first drill of a new policy, an on-demand one is refused).

The races are real: several threads, each its own API client and so its own database
connection, released together by a barrier (on PostgreSQL the policy/tenant row locks decide;
on SQLite the write units' BEGIN IMMEDIATE does)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from httpx import Response
from prometheus_client import generate_latest
from sqlalchemy import select

from controlplane.backup import drills, runner, scheduler
from controlplane.backup.models import BackupDrill, BackupPolicy, BackupRun
from controlplane.db.uow import unit_of_work
from controlplane.metrics import build_registry
from tests.controlplane.helpers import assert_problem
from tests.controlplane.requests.conftest import COUNTY, World
from tests.controlplane.requests.test_backup_enrolment import _enrol, _restic  # noqa: F401  (autouse)

RACERS = 6


def _together(clients: list[TestClient], call: Callable[[TestClient], Response]) -> list[Response]:
    barrier = threading.Barrier(len(clients))

    def go(client: TestClient) -> Response:
        barrier.wait()
        return call(client)

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(go, clients))


def _policy(world: World, api_as: Callable[..., TestClient], tmp_path: Path, **extra: object) -> dict[str, object]:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("hello")
    _enrol(world, api_as, source, **extra)
    admin = api_as("tenant-admin", COUNTY)
    policy: dict[str, object] = admin.get("/v1/backup-policies").json()["items"][0]
    return policy


def test_concurrent_run_now_calls_make_exactly_one_run(
    world: World, api_as: Callable[..., TestClient], tmp_path: Path
) -> None:
    policy = _policy(world, api_as, tmp_path)
    clients = [api_as("tenant-admin", COUNTY) for _ in range(RACERS)]

    answers = _together(clients, lambda c: c.post(f"/v1/backup-policies/{policy['id']}:run"))

    accepted = [a for a in answers if a.status_code == 202]
    assert len(accepted) == 1, [a.text for a in answers]
    run_id = accepted[0].json()["id"]
    for refused in (a for a in answers if a.status_code != 202):
        problem = assert_problem(refused, 409)
        assert problem["run"] == run_id and run_id in problem["detail"]  # names the run to follow
    with unit_of_work(world.engine) as uow:
        assert [str(r) for r in uow.session.scalars(select(BackupRun.id))] == [run_id]
    # once it has finished, the next "run now" is accepted again
    assert runner.execute_run(world.worker, uuid.UUID(run_id)) == "verified"
    assert clients[0].post(f"/v1/backup-policies/{policy['id']}:run").status_code == 202


def test_concurrent_restores_to_one_name_make_exactly_one_restore(
    world: World, api_as: Callable[..., TestClient], tmp_path: Path
) -> None:
    policy = _policy(world, api_as, tmp_path)
    admin = api_as("tenant-admin", COUNTY)
    run = admin.post(f"/v1/backup-policies/{policy['id']}:run").json()
    assert runner.execute_run(world.worker, uuid.UUID(run["id"])) == "verified"
    clients = [api_as("tenant-admin", COUNTY) for _ in range(RACERS)]

    answers = _together(clients, lambda c: c.post(f"/v1/backup-policies/{policy['id']}:restore", json={"name": "r1"}))

    accepted = [a for a in answers if a.status_code == 202]
    assert len(accepted) == 1, [a.text for a in answers]
    restore_id = accepted[0].json()["id"]
    for refused in (a for a in answers if a.status_code != 202):
        problem = assert_problem(refused, 409)
        assert problem["restore"] == restore_id and "'r1'" in problem["detail"]
    with unit_of_work(world.engine) as uow:
        assert [str(d) for d in uow.session.scalars(select(BackupDrill.id))] == [restore_id]
    # another name is free; once the restore has run, its directory keeps the name taken
    assert admin.post(f"/v1/backup-policies/{policy['id']}:restore", json={"name": "r2"}).status_code == 202
    assert drills.execute_drill(world.worker, uuid.UUID(restore_id)) == "passed"
    again = assert_problem(admin.post(f"/v1/backup-policies/{policy['id']}:restore", json={"name": "r1"}), 409)
    assert "exists already" in again["detail"]


def test_a_new_policys_drill_waits_for_its_first_verified_point(
    world: World, api_as: Callable[..., TestClient], tmp_path: Path
) -> None:
    policy = _policy(world, api_as, tmp_path, schedule="0 3 1 1 *", drill_schedule="0 * * * *")
    admin = api_as("tenant-admin", COUNTY)
    with unit_of_work(world.engine) as uow:
        enrolled = uow.session.scalars(select(BackupPolicy.drill_last_claimed_at)).one()
    later = enrolled.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2, minutes=5)

    # on demand: refused, saying why; nothing is recorded
    for verb, body in ((":drill", None), (":restore", {"name": "early"})):
        problem = assert_problem(admin.post(f"/v1/backup-policies/{policy['id']}{verb}", json=body), 409)
        assert "no verified recovery point yet" in problem["detail"] and problem["reason"] == "no-verified-point"
    # scheduled: deferred (no drill row, so no failed drill and no alert), the reason on the policy
    with unit_of_work(world.engine, clock=lambda: later) as uow:
        tick = scheduler.tick(uow, jitter=timedelta(0))
    assert tick["drills"] == [] and tick["deferred"] == [policy["id"]]
    shown = admin.get(f"/v1/backup-policies/{policy['id']}").json()
    assert "waits for the first verified recovery point" in shown["drill_deferred_reason"]
    with unit_of_work(world.engine) as uow:
        assert uow.session.scalars(select(BackupDrill)).all() == []
    metrics = generate_latest(build_registry(world.engine)[0]).decode()
    assert "chutian_dr_drill_failed{" not in metrics

    # the first verified backup: the next tick claims the due drill and clears the reason
    run = admin.post(f"/v1/backup-policies/{policy['id']}:run").json()
    assert runner.execute_run(world.worker, uuid.UUID(run["id"])) == "verified"
    with unit_of_work(world.engine, clock=lambda: later + timedelta(minutes=1)) as uow:
        tick = scheduler.tick(uow, jitter=timedelta(0))
    assert len(tick["drills"]) == 1 and tick["deferred"] == []
    assert admin.get(f"/v1/backup-policies/{policy['id']}").json()["drill_deferred_reason"] is None
    assert drills.execute_drill(world.worker, uuid.UUID(tick["drills"][0])) == "passed"
