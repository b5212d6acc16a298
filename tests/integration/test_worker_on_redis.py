"""`chutian worker` against a real Redis broker and the suite's database (SQLite file or
PostgreSQL): the API enqueues through Celery, a prefork worker process runs the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from controlplane.api.app import create_app
from controlplane.settings import Settings
from controlplane.site_config import Site
from tests.conftest import grant_token

pytestmark = pytest.mark.broker

REDIS_DB = 13  # ours alone; flushed at the start of the test


@pytest.fixture
def redis_url() -> str:
    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def worker(
    database_url: str, redis_url: str, tmp_path: Path, secret_keys_file: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTIAN_")}
    env |= {
        "CHUTIAN_DATABASE_URL": database_url,
        "CHUTIAN_BROKER_URL": redis_url,
        "CHUTIAN_DATA_DIR": str(tmp_path),
        "CHUTIAN_SECRET_KEYS_FILE": str(secret_keys_file),
    }
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "controlplane.cli", "worker", "--concurrency", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield proc
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


def test_selftest_runs_in_a_worker_process(
    settings: Settings, engine: Engine, site: Site, redis_url: str, worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    app = create_app(settings.model_copy(update={"broker_url": redis_url}), engine=engine, site=site)
    token = grant_token(engine, "redis-admin", [("platform-admin", "hubei")])
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        created = client.post("/v1/system:selftest")
        assert created.status_code == 202
        op = created.json()
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not op["done"]:
            time.sleep(0.3)
            op = client.get(f"/v1/operations/{op['id']}").json()
        assert op["state"] == "succeeded", (op, (tmp_path / "worker.log").read_text()[-3000:])
        assert op["result"]["worker_pid"] not in (os.getpid(), worker.pid), "not run by a prefork child"
        assert client.get("/readyz").json()["checks"]["broker"] == "ok"
