"""Enrolment end to end with real restic on the local DR store (embedded mode): feasibility
before approval, the policy and its repository made inside the operations engine, a run that
ends verified, the API, the compliance summary and the DR metrics."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from sqlalchemy import select

from controlplane.backup import drills, runner, scheduler
from controlplane.backup.enrolment import sealer
from controlplane.backup.models import BackupPolicy, BackupRun
from controlplane.backup.store import store_of
from controlplane.db.uow import unit_of_work
from controlplane.metrics import build_registry
from controlplane.operations.engine import STEPS, StepContext
from tests.conftest import CREATED_SECRETS
from tests.controlplane.helpers import assert_problem
from tests.controlplane.ledger.helpers import allocate
from tests.controlplane.requests.conftest import COUNTY, World


@pytest.fixture(autouse=True)
def _restic() -> None:
    """Real restic on the local store: missing is a failure (scripts/test-assets installs it), never a skip."""
    if shutil.which("restic") is None:
        pytest.fail("restic is not installed: run scripts/test-assets (apt-get install -y restic)", pytrace=False)


def _spec(source: Path, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "backup-enrolment",
        "name": "payroll",
        "paths": [str(source)],
        "target_region": "yichang",
        "size_gb": 10,
        "rpo_target_s": 86400,
        **extra,
    }


def _health(world: World) -> None:
    for region in ("wuhan", "yichang"):
        allocate(world.engine, "hubei.wuhan", "shared", {}, cloud="health", region=region)
        allocate(world.engine, COUNTY, "shared", {}, cloud="health", region=region)


def _enrol(world: World, api_as: Callable[..., TestClient], source: Path, **extra: Any) -> dict[str, Any]:
    _health(world)
    req = world.create(_spec(source, **extra), cloud="health")
    assert world.verb(world.requester, req["id"], "submit").status_code == 200
    for _ in range(6):  # each pending step decided by a holder of its role at its node
        done = world.requester.get(f"/v1/requests/{req['id']}").json()
        if done["state"] != "pending_approval":
            break
        pending = [s for s in done["steps"] if s["decision"] == "pending"]
        order = min(s["order"] for s in pending)
        for step in (s for s in pending if s["order"] == order):
            decided = world.verb(api_as(step["role"], step["node"]), req["id"], "approve")
            assert decided.status_code == 200, decided.text
    assert done["state"] == "provisioning", done
    assert world.run_operation(done["operation"]) == "succeeded"
    return world.requester.get(f"/v1/requests/{req['id']}").json()


def test_feasibility_refuses_an_rpo_the_link_cannot_meet(world: World, client: TestClient, tmp_path: Path) -> None:
    _health(world)
    assert client.patch(f"/v1/tenants/{COUNTY}", json={"dr_link_mbps": 2}).status_code == 200
    req = world.create(_spec(tmp_path, size_gb=500, daily_change_pct=10, rpo_target_s=3600), cloud="health")
    problem = assert_problem(world.verb(world.requester, req["id"], "submit"), 422)
    assert problem["type"].endswith("rpo-infeasible")
    assert "can sustain no RPO at all" in problem["detail"]
    assert "seeding the first full copy takes 31 d 1 h 40 min" in problem["detail"]
    assert problem["seeding_s"] == pytest.approx(31 * 86400 + 3600 + 40 * 60, abs=60)
    assert problem["required_link_mbps"] == pytest.approx(7.46, abs=0.01)
    assert world.requester.get(f"/v1/requests/{req['id']}").json()["state"] == "draft"  # nothing half-made


def test_mlps_level_bounds_the_rpo(world: World, tmp_path: Path) -> None:
    _health(world)
    grade3 = {"name": "grade3", "mlps_level": 3, "filing_ref": "42010099001-30001"}
    req = world.create(_spec(tmp_path, rpo_target_s=86400), new_system=grade3, cloud="health")
    problem = assert_problem(world.verb(world.requester, req["id"], "submit"), 422)
    assert "at most 4 h" in problem["detail"] and problem["max_rpo_s"] == 4 * 3600


def test_a_bad_schedule_is_a_422_naming_it(world: World, tmp_path: Path) -> None:
    _health(world)
    response = world.requester.post(
        "/v1/requests",
        json={
            "tenant": COUNTY,
            "cloud": "health",
            "region": "wuhan",
            "new_system": {"name": "s-bad", "mlps_level": 2},
            "spec": _spec(tmp_path, schedule="0 2 30 2 *"),
        },
    )
    assert_problem(response, 422)


def test_enrolment_creates_the_policy_and_a_run_is_verified_at_the_dr_side(
    world: World, api_as: Callable[..., TestClient], tmp_path: Path
) -> None:
    source = tmp_path / "payroll"
    source.mkdir()
    (source / "ledger.csv").write_bytes(b"id,amount\n" + b"1,100\n" * 1000)
    request = _enrol(world, api_as, source)
    assert request["state"] == "succeeded", request
    admin = api_as("tenant-admin", COUNTY)
    policies = admin.get("/v1/backup-policies").json()["items"]
    assert [p["slug"] for p in policies] == ["payroll"]
    policy = policies[0]
    assert policy["target_region"] == "yichang" and policy["source_region"] == "wuhan"
    assert "password" not in str(policy)
    with unit_of_work(world.engine) as uow:
        row = uow.session.scalars(select(BackupPolicy)).one()
        assert row.password_sealed.startswith("gAAAA")  # Fernet: encrypted at rest
        password = sealer(world.worker).open(row.password_sealed)
    CREATED_SECRETS.append(password)  # the suite fails if it ever reaches a log line
    assert password not in row.password_sealed and len(password) >= 32

    # a step re-run after a crash (its backend work done, its transaction lost): the policy step
    # finds the policy by its request; the repository at the DR side opens with the stored password
    [policy_step] = [s for s in STEPS["request.backup-enrolment"] if s.name == "backup.policy"]
    params = {"request_id": request["id"]}
    with unit_of_work(world.engine) as uow:
        memo = policy_step.run(StepContext(world.worker, uuid.uuid4(), "request.backup-enrolment", params, {}), uow)
    assert memo == {"policy": str(row.id)}
    dr = store_of(world.worker).dr(row.repository_prefix, password)
    assert dr.ensure_initialised() is False and dr.snapshots() == []
    with unit_of_work(world.engine) as uow:
        assert len(uow.session.scalars(select(BackupPolicy)).all()) == 1

    # compliance before any run: no verified point, no RPO
    summary = admin.get("/v1/backup-compliance").json()
    assert summary == [
        {"tenant": COUNTY, "policies": 1, "compliant": 0, "worst_rpo_s": None, "non_compliant": ["payroll"]}
    ]

    started = admin.post(f"/v1/backup-policies/{policy['id']}:run")
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    assert admin.post(f"/v1/backup-policies/{policy['id']}:run").status_code == 409  # one at a time
    assert runner.execute_run(world.worker, uuid.UUID(run_id)) == "verified"
    run = admin.get(f"/v1/backup-runs/{run_id}").json()
    assert run["state"] == "verified", run
    assert run["bytes_uploaded"] > 0 and run["files_new"] == 1
    assert run["manifest"]["files"] == 1 and run["manifest"]["sampled_sha256"] == 1
    assert run["manifest"]["verification"]["listed_at_dr"] is True

    summary = admin.get("/v1/backup-compliance").json()[0]
    assert summary["compliant"] == 1 and summary["worst_rpo_s"] is not None

    drill = admin.post(f"/v1/backup-policies/{policy['id']}:drill")
    assert drill.status_code == 202, drill.text
    assert drills.execute_drill(world.worker, uuid.UUID(drill.json()["id"])) == "passed"
    finished = admin.get(f"/v1/backup-drills/{drill.json()['id']}").json()
    assert finished["rto_s"] > 0 and finished["evidence"]["mismatches"] == []
    assert finished["evidence"]["checksums"] == 1

    registry, _ = build_registry(world.engine)
    text = generate_latest(registry).decode()
    labels = 'policy="payroll",source_region="wuhan",target_region="yichang",tenant="jiangan"'
    assert f"chutian_dr_compliant{{{labels}}} 1.0" in text
    with_result = labels.replace('policy="payroll",', 'policy="payroll",result="verified",')
    assert f"chutian_dr_runs_total{{{with_result}}} 1.0" in text
    assert f"chutian_dr_rpo_target_seconds{{{labels}}} 86400.0" in text
    assert "chutian_dr_drill_last_success_timestamp_seconds{" in text

    # series vanish with a deleted policy
    with unit_of_work(world.engine) as uow:
        uow.session.delete(uow.session.scalars(select(BackupPolicy)).one())
    assert "payroll" not in generate_latest(build_registry(world.engine)[0]).decode()


def test_restore_goes_only_to_the_tenants_area(world: World, api_as: Callable[..., TestClient], tmp_path: Path) -> None:
    source = tmp_path / "docs"
    source.mkdir()
    (source / "a.txt").write_text("hello")
    _enrol(world, api_as, source)
    admin = api_as("tenant-admin", COUNTY)
    policy = admin.get("/v1/backup-policies").json()["items"][0]
    assert_problem(admin.post(f"/v1/backup-policies/{policy['id']}:restore", json={"name": "../etc"}), 422)
    member = api_as("tenant-member", COUNTY)
    assert_problem(member.post(f"/v1/backup-policies/{policy['id']}:restore", json={"name": "r1"}), 403)
    run = admin.post(f"/v1/backup-policies/{policy['id']}:run").json()
    assert runner.execute_run(world.worker, uuid.UUID(run["id"])) == "verified"
    restore = admin.post(f"/v1/backup-policies/{policy['id']}:restore", json={"name": "r1"})
    assert restore.status_code == 202, restore.text
    assert drills.execute_drill(world.worker, uuid.UUID(restore.json()["id"])) == "passed"
    target = Path(restore.json()["target"])
    assert target.is_relative_to(world.worker.settings.data_dir / "dr-restores" / COUNTY)
    assert (target / str(source / "a.txt").lstrip("/")).read_text() == "hello"


def test_scheduler_claims_once_records_missed_and_fails_lost_runs(
    world: World, api_as: Callable[..., TestClient], tmp_path: Path
) -> None:
    from datetime import timedelta

    source = tmp_path / "src"
    source.mkdir()
    _enrol(world, api_as, source, schedule="0 * * * *")
    with unit_of_work(world.engine) as uow:
        policy = uow.session.scalars(select(BackupPolicy)).one()
        enrolled = policy.last_claimed_at
    # three hourly runs due since enrolment: the newest runs, the two before it are missed
    later = enrolled.replace(minute=0, second=0, microsecond=0) + timedelta(hours=3, minutes=30)
    with unit_of_work(world.engine, clock=lambda: later) as uow:
        first = scheduler.tick(uow, jitter=timedelta(0))
    with unit_of_work(world.engine, clock=lambda: later) as uow:  # a second scheduler, same minute
        second = scheduler.tick(uow, jitter=timedelta(0))
    assert len(first["runs"]) == 1 and second["runs"] == []
    with unit_of_work(world.engine) as uow:
        states = sorted(r.state for r in uow.session.scalars(select(BackupRun)))
    assert states == ["missed", "missed", "scheduled"]

    # a run whose worker died: its lease expires and the next tick ends it failed, with the reason
    with unit_of_work(world.engine) as uow:
        run = uow.session.scalars(select(BackupRun).where(BackupRun.state == "scheduled")).one()
        run.state, run.owner, run.lease_expires_at = "running", "dead-worker", later
    with unit_of_work(world.engine, clock=lambda: later + timedelta(minutes=2)) as uow:
        assert scheduler.tick(uow, jitter=timedelta(0))["lost"] == 1
    with unit_of_work(world.engine) as uow:
        run = uow.session.get(BackupRun, run.id)
        assert run is not None and run.state == "failed" and "lease expired" in (run.reason or "")


def test_cli_runs_a_backup_and_reports_status(world: World, api_as: Callable[..., TestClient], tmp_path: Path) -> None:
    from tests.controlplane.test_cli import chutian

    source = tmp_path / "src"
    source.mkdir()
    (source / "f.txt").write_text("data")
    _enrol(world, api_as, source)
    settings = world.worker.settings
    env = {
        "CHUTIAN_DATABASE_URL": settings.resolved_database_url,
        "CHUTIAN_DATA_DIR": str(settings.data_dir),
        "CHUTIAN_SECRET_KEYS_FILE": str(settings.secret_keys_file),
    }
    missing = chutian("backup", "run", f"{COUNTY}/nope", env=env)
    assert missing.returncode == 1 and "no backup policy" in missing.stderr
    ran = chutian("backup", "run", f"{COUNTY}/payroll", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["state"] == "verified"
    status = chutian("backup", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    [item] = json.loads(status.stdout)
    assert item["policy"] == "payroll" and item["compliant"] is True and item["runs"] == {"verified": 1}
    table = chutian("backup", "status", env=env)
    assert table.returncode == 0 and "payroll" in table.stdout


def test_dr_store_settings_are_checked_all_at_once(tmp_path: Path) -> None:
    from controlplane.backup.store import config_problems
    from controlplane.settings import Settings

    loose = tmp_path / "key"
    loose.write_text("k")
    loose.chmod(0o644)
    problems = config_problems(
        Settings(dr_store="swift:dr", dr_swift_key_file=loose, dr_gateway_url="http://x", data_dir=tmp_path)
    )
    assert any(p.startswith("CHUTIAN_DR_SWIFT_AUTH_URL") for p in problems)
    assert any(p.startswith("CHUTIAN_DR_SWIFT_USER") for p in problems)
    assert any("readable by group/others" in p for p in problems)
    assert any(p.startswith("CHUTIAN_DR_GATEWAY_PASSWORD_FILE") for p in problems)
    assert any(p.startswith("CHUTIAN_DR_GATEWAY_URL") for p in problems)
    assert config_problems(Settings(data_dir=tmp_path)) == []  # embedded: a local directory
