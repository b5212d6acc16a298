"""`chutian metrics` serves the DB-derived gauges once per deployment; API replicas with
CHUTIAN_METRICS_DOMAIN=false serve only their own latency (no duplicate domain series)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
from prometheus_client import generate_latest
from sqlalchemy.engine import Engine

from controlplane.metrics import build_registry


def test_a_registry_without_domain_collectors_has_only_latency(engine: Engine) -> None:
    text = generate_latest(build_registry(engine, domain=False)[0]).decode()
    assert "chutian_api_request_duration_seconds" in text
    assert "chutian_audit_head_sequence" not in text and "chutian_capacity_total" not in text
    full = generate_latest(build_registry(engine)[0]).decode()
    assert "chutian_capacity_total{" in full


def test_chutian_metrics_serves_the_domain_gauges_and_stops_on_sigterm(database_url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTIAN_")} | {"CHUTIAN_DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "controlplane.cli", "metrics", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline, text = time.monotonic() + 30, ""
        while time.monotonic() < deadline and not text:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            except httpx.HTTPError:
                time.sleep(0.3)
        assert 'chutian_capacity_total{region="wuhan"' in text
        assert "chutian_api_request_duration_seconds_bucket" not in text, "no API here: an empty histogram only"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
