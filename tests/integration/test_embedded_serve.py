"""`chutian serve` on embedded defaults, as a newcomer runs it: a real process, a real
Celery worker child, SQLite, the kombu SQLAlchemy transport. Nothing is faked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.embedded
AUTH: dict[str, str] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children_of(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return {int(p) for p in out.stdout.split()}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    data_dir: Path = tmp_path_factory.mktemp("embedded")
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTIAN_")}
    env |= {
        "CHUTIAN_DATA_DIR": str(data_dir),
        "CHUTIAN_METRICS_PORT": str(metrics_port),
        "CHUTIAN_HEARTBEAT_INTERVAL_S": "2",
    }
    log = (data_dir / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "controlplane.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("healthz did not answer within 60 s:\n" + (data_dir / "serve.log").read_text()[-3000:])
    token = (data_dir / "admin-token").read_text().strip()
    assert (data_dir / "admin-token").stat().st_mode & 0o777 == 0o600
    assert token not in (data_dir / "serve.log").read_text(), "the admin token leaked into the log"
    global AUTH  # noqa: PLW0603 - module-scoped fixture state shared by the tests below
    AUTH = {"Authorization": f"Bearer {token}"}
    yield proc, base, f"http://127.0.0.1:{metrics_port}/metrics"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    log.close()


def test_lists_the_seeded_tree(served: tuple[subprocess.Popen[bytes], str, str]) -> None:
    _, base, _ = served
    assert httpx.get(f"{base}/v1/tenants").status_code == 401
    items = httpx.get(f"{base}/v1/tenants?kind=city&limit=50", headers=AUTH).json()["items"]
    assert len(items) == 17
    assert httpx.get(f"{base}/v1/tenants/hubei", headers=AUTH).json()["name_zh"] == "湖北省"
    assert httpx.get(f"{base}/v1/clouds", headers=AUTH).json()[0]["code"]


def test_the_portal_is_at_the_root_with_demo_requests(served: tuple[subprocess.Popen[bytes], str, str]) -> None:
    _, base, _ = served
    first = httpx.get(base + "/", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/login")
    with httpx.Client(base_url=base) as browser:
        token = AUTH["Authorization"].split(" ", 1)[1]
        assert browser.post("/login", data={"token": token}).status_code == 303  # to the home page
        home = browser.get("/").text
        assert "<h1>待办事项</h1>" in home and "学籍系统扩容" in home, "a demo request waits for a decision"


def test_a_task_enqueued_through_the_api_is_run_by_the_celery_worker(
    served: tuple[subprocess.Popen[bytes], str, str],
) -> None:
    proc, base, _ = served
    created = httpx.post(f"{base}/v1/system:selftest", headers=AUTH)
    assert created.status_code == 202
    op_id = created.json()["id"]
    deadline = time.monotonic() + 30
    op = created.json()
    while time.monotonic() < deadline and not op["done"]:
        time.sleep(0.3)
        op = httpx.get(f"{base}/v1/operations/{op_id}", headers=AUTH).json()
    assert op["state"] == "succeeded", op
    worker_pid = op["result"]["worker_pid"]
    assert worker_pid != proc.pid, "the API process ran the task itself"
    assert worker_pid in children_of(proc.pid), "the task ran outside serve's supervised worker"


def test_ready_once_the_worker_heartbeats_and_metrics_on_their_own_port(
    served: tuple[subprocess.Popen[bytes], str, str],
) -> None:
    _, base, metrics = served
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and httpx.get(f"{base}/readyz").status_code != 200:
        time.sleep(0.5)
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "worker": "ok"}
    text = httpx.get(metrics).text
    assert 'chutian_worker_last_heartbeat_timestamp_seconds{queue="chutian"}' in text
    assert "chutian_api_request_duration_seconds_bucket" in text


def test_stopping_serve_stops_its_worker(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTIAN_")}
    env |= {"CHUTIAN_DATA_DIR": str(tmp_path), "CHUTIAN_METRICS_PORT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "controlplane.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and not workers:
        time.sleep(0.5)
        workers = children_of(proc.pid)
    assert workers, "serve started no worker"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    time.sleep(0.5)
    alive = [
        pid
        for pid in workers
        if os.path.exists(f"/proc/{pid}") and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    ]
    assert alive == [], "the worker outlived serve"
