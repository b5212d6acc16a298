"""50 VM requests through a real prefork Celery worker on a real Redis, killed three times.

The worker's whole process group is SIGKILLed: once by the fault hook right after a
backend create (before the step commits), once while a server is building, once at a
random moment; it is restarted each time. Nothing is lost, duplicated or leaked: 50
operations succeed, exactly 50 servers exist in the simulated backend, no reservation is
left. Redis would only redeliver the killed workers' messages after an hour (visibility
timeout), so finishing in time proves the lease reaper did the recovery.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from controlplane.api.app import create_app
from controlplane.settings import Settings
from controlplane.site_config import Site
from provisioners.simulated import SimulatedCloud
from tests.conftest import grant_token
from tests.controlplane.ledger.helpers import allocate, assert_consistent, node

pytestmark = [pytest.mark.broker, pytest.mark.postgres_only]

REDIS_URL = "redis://127.0.0.1:6379/12"  # ours alone; flushed at the start
CLOUD, REGION, CITY, COUNTY = "education", "wuhan", "hubei.wuhan", "hubei.wuhan.jiangan"
N = 50


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.proc = env, log, None  # type: ignore[var-annotated]
        self.starts = 0

    def start(self, **extra: str) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts} {extra}\n".encode())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane.cli", "worker", "--concurrency", "2", "--beat"],
            env=self.env | extra,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill_group(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def scalar(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\n" + log.read_text()[-4000:])


def test_fifty_vms_survive_three_kills(
    settings: Settings, engine: Engine, site: Site, database_url: str, tmp_path: Path, secret_keys_file: Path
) -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()
    allocate(engine, CITY, "shared", {}, cloud=CLOUD, region=REGION)
    allocate(engine, COUNTY, "shared", {"vcpus": N, "ram_mb": N * 2048, "instances": N}, cloud=CLOUD, region=REGION)
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTIAN_")} | {
        "CHUTIAN_DATABASE_URL": database_url,
        "CHUTIAN_BROKER_URL": REDIS_URL,
        "CHUTIAN_DATA_DIR": str(data_dir),
        "CHUTIAN_SECRET_KEYS_FILE": str(secret_keys_file),
        "CHUTIAN_OPERATION_LEASE_S": "4",
        "CHUTIAN_REAPER_INTERVAL_S": "1",
        "CHUTIAN_OPERATION_RESEND_AFTER_S": "3",
        "CHUTIAN_SIMULATED_BOOT_S": "0.3",
        "CHUTIAN_HEARTBEAT_INTERVAL_S": "5",
    }
    log = tmp_path / "worker.log"
    worker = Worker(env, log)

    # 50 requests submitted and approved through the API, jobs sent to Redis
    app = create_app(
        settings.model_copy(update={"broker_url": REDIS_URL, "data_dir": data_dir}), engine=engine, site=site
    )
    tokens = {
        who: grant_token(engine, who, [(role, path)])
        for who, role, path in (
            ("clerk", "tenant-member", COUNTY),
            ("county-admin", "tenant-admin", COUNTY),
            ("edu-approver", "approver", "hubei.jyt"),
        )
    }
    with TestClient(app) as api:

        def as_(who: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {tokens[who]}"}

        system = None
        for i in range(N):
            body = {
                "tenant": COUNTY,
                "cloud": CLOUD,
                "region": REGION,
                "title": f"vm {i}",
                "spec": {"kind": "vm", "flavor": "c1.small", "image": "kylin-v10", "count": 1, "name": f"vm-{i}"},
                "declaration": {"items": [{"name": "d", "sharing": "unconditional", "catalogue_ref": "HB-1"}]},
            }
            body |= {"system": system} if system else {"new_system": {"name": "crash-test", "mlps_level": 2}}
            created = api.post("/v1/requests", json=body, headers=as_("clerk"))
            assert created.status_code == 201, created.text
            system = created.json()["system"]
            rid = created.json()["id"]
            assert api.post(f"/v1/requests/{rid}:submit", headers=as_("clerk")).status_code == 200
            state = api.get(f"/v1/requests/{rid}", headers=as_("clerk")).json()["state"]
            if state == "pending_approval":
                assert api.post(f"/v1/requests/{rid}:approve", headers=as_("county-admin")).status_code == 200
                assert api.post(f"/v1/requests/{rid}:approve", headers=as_("edu-approver")).status_code == 200
    assert scalar(engine, "SELECT count(*) FROM operations WHERE kind = 'request.vm'") == N

    cloud = SimulatedCloud(data_dir / "simulated-cloud.sqlite3")

    def succeeded() -> int:
        return scalar(engine, "SELECT count(*) FROM operations WHERE kind = 'request.vm' AND state = 'succeeded'")

    # 1: the fault hook kills a pool process right after its 3rd create, before the step commits
    worker.start(CHUTIAN_FAULT="after_backend_create:3")
    wait_for(lambda: b"signal 9" in log.read_bytes(), 90, "the fault hook to fire", log)
    worker.kill_group()
    kills = [f"fault hook at {cloud.count()} servers / {succeeded()} done"]

    # 2: during a wait — a server exists whose step has not committed yet (it is building)
    worker.start()
    wait_for(lambda: cloud.count() > succeeded() and succeeded() >= 5, 90, "a server being built", log)
    worker.kill_group()
    kills.append(f"during a wait at {cloud.count()} servers / {succeeded()} done")

    # 3: at a random moment
    worker.start()
    time.sleep(random.uniform(0.5, 4.0))
    worker.kill_group()
    kills.append(f"random at {cloud.count()} servers / {succeeded()} done")

    worker.start()
    try:
        wait_for(lambda: succeeded() == N, 240, f"all {N} operations (kills: {kills})", log)
    finally:
        worker.kill_group()

    assert cloud.count() == N, f"expected exactly {N} servers, found {cloud.count()} (kills: {kills})"
    assert scalar(engine, "SELECT count(*) FROM requests WHERE state = 'succeeded'") == N
    assert scalar(engine, "SELECT count(*) FROM quota_reservations") == 0, "a reservation leaked"
    county = node(engine, COUNTY, CLOUD, REGION)
    assert county["used"] == {"vcpus": N, "ram_mb": N * 2048, "instances": N} and county["reserved"] == {}
    assert_consistent(engine)
    attempts = scalar(engine, "SELECT sum(attempts) FROM operations WHERE kind = 'request.vm'")
    assert attempts > N, "no operation was ever reclaimed: the kills did not land"
