"""The audit trail: every change recorded, hash-chained, and tampering detected."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import col

from controlplane.audit import chain
from controlplane.audit.chain import append_hook, integrate, verify
from controlplane.audit.collector import AuditCollector
from controlplane.audit.models import AuditEvent
from controlplane.audit.record import AuditRecord
from controlplane.audit.tasks import verify_chain
from controlplane.db.uow import unit_of_work
from controlplane.worker.runtime import WorkerContext
from tests.controlplane.helpers import new_tenant


def make_changes(client: TestClient, n: int = 3) -> None:
    for i in range(n):
        assert client.post("/v1/tenants", json=new_tenant(code=f"audited{i}")).status_code == 201
    assert client.patch("/v1/tenants/hubei.wuhan.audited0", json={"name_en": "Audited zero"}).status_code == 200


def verify_cli(database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTIAN_")}
    env |= {"CHUTIAN_DATABASE_URL": database_url, "CHUTIAN_DATA_DIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_changes_are_recorded_with_actor_and_digests(client: TestClient) -> None:
    make_changes(client, 1)
    events = client.get("/v1/audit?tenant=hubei.wuhan.audited0").json()["items"]
    actions = [e["action"] for e in events]
    assert actions == ["tenant.create", "tenant.update"]
    update = events[1]
    assert update["actor"] == "admin" and update["before"]["name_en"] == "New unit"
    assert update["after"]["name_en"] == "Audited zero" and len(update["after_digest"]) == 64
    assert update["request_id"] and update["client_addr"]
    seqs = [e["seq"] for e in client.get("/v1/audit?limit=500").json()["items"]]
    assert seqs == list(range(1, len(seqs) + 1)), "sequence numbers must be gapless"


def test_secrets_are_redacted_in_the_trail(client: TestClient) -> None:
    client.post("/v1/tokens", json={"name": "redaction-check"})
    events = client.get("/v1/audit?action=token.create").json()["items"]
    assert events and all("token" not in (e["after"] or {}) or e["after"]["token"] == "[redacted]" for e in events)


def test_audit_is_for_auditors_of_that_subtree(api_as: Callable[..., TestClient], client: TestClient) -> None:
    make_changes(client, 1)
    wuhan_auditor = api_as("auditor", "hubei.wuhan")
    assert wuhan_auditor.get("/v1/audit?tenant=hubei.wuhan.audited0").json()["items"]
    yichang_auditor = api_as("auditor", "hubei.yichang")
    assert yichang_auditor.get("/v1/audit?tenant=hubei.wuhan").json()["items"] == []
    assert all(
        (e["tenant"] or "").startswith("hubei.yichang") for e in yichang_auditor.get("/v1/audit").json()["items"]
    )
    assert api_as("tenant-admin", "hubei.wuhan").get("/v1/audit").status_code == 403


def test_verify_passes_on_an_intact_chain(client: TestClient, database_url: str, tmp_path: Path) -> None:
    make_changes(client)
    result = verify_cli(database_url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "intact" in result.stdout


def test_editing_an_event_is_detected(client: TestClient, engine: Engine, database_url: str, tmp_path: Path) -> None:
    make_changes(client)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3"))
    result = verify_cli(database_url, tmp_path)
    assert result.returncode == 1
    assert "event 3" in result.stderr and "altered" in result.stderr


def test_deleting_a_middle_event_is_detected(
    client: TestClient, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    make_changes(client)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    result = verify_cli(database_url, tmp_path)
    assert result.returncode == 1 and "event 2 is missing" in result.stderr


def test_deleting_the_last_events_is_detected(
    client: TestClient, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    make_changes(client)
    with engine.begin() as conn:
        head = conn.execute(text("SELECT seq FROM audit_head")).scalar_one()
        conn.execute(text("DELETE FROM audit_events WHERE seq > :s"), {"s": head - 2})
    result = verify_cli(database_url, tmp_path)
    assert result.returncode == 1 and f"event {head - 1}" in result.stderr


def test_truncating_the_tail_and_rewinding_the_head_is_caught_by_the_checkpoint(
    client: TestClient, engine: Engine, database_url: str, tmp_path: Path, settings: object, site: object
) -> None:
    make_changes(client)
    ctx = WorkerContext(settings=settings, engine=engine, site=site)  # type: ignore[arg-type]
    assert verify_chain(ctx) is True  # the periodic task publishes a checkpoint
    with engine.begin() as conn:
        head = conn.execute(text("SELECT seq FROM audit_head")).scalar_one()
        keep = head - 2
        new_head = conn.execute(text("SELECT hash FROM audit_events WHERE seq = :s"), {"s": keep}).scalar_one()
        conn.execute(text("DELETE FROM audit_events WHERE seq > :s"), {"s": keep})
        conn.execute(text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": keep, "h": new_head})
    result = verify_cli(database_url, tmp_path)
    assert result.returncode == 1 and "truncated" in result.stderr and f"event {head}" in result.stderr


def test_periodic_verification_publishes_metrics(
    client: TestClient, engine: Engine, settings: object, site: object
) -> None:
    make_changes(client, 1)
    ctx = WorkerContext(settings=settings, engine=engine, site=site)  # type: ignore[arg-type]

    def sample() -> dict[str, float]:
        return {s.name: s.value for fam in AuditCollector(engine).collect() for s in fam.samples}

    assert verify_chain(ctx) is True
    good = sample()
    assert good["chutian_audit_chain_verified"] == 1.0 and good["chutian_audit_head_sequence"] >= 2
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET target = 'forged' WHERE seq = 1"))
    assert verify_chain(ctx) is False
    assert sample()["chutian_audit_chain_verified"] == 0.0


@pytest.mark.postgres_only
def test_concurrent_writers_keep_the_chain_gapless(api_as: Callable[..., TestClient], engine: Engine) -> None:
    clients = [api_as("platform-admin", "hubei") for _ in range(6)]
    errors: list[str] = []

    def work(i: int, c: TestClient) -> None:
        for j in range(5):
            r = c.post("/v1/tenants", json=new_tenant(code=f"c{i}x{j}"))
            if r.status_code != 201:
                errors.append(r.text)

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors

    def count(table: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table} WHERE action = 'tenant.create'")).scalar_one())

    # Each unit chains after its commit; one that found another integrating may have left its
    # event queued for the periodic task, but none is lost or chained twice.
    assert count("audit_events") + count("audit_queue") == 30
    integrate(engine, drain=True)
    assert (count("audit_events"), count("audit_queue")) == (30, 0)
    with unit_of_work(engine, readonly=True) as uow:
        result = verify(uow.session)
    assert result.ok and result.pending == 0, result.problem


def test_a_rolled_back_unit_leaves_no_event_and_a_failed_integration_loses_none(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RuntimeError), unit_of_work(engine, before_commit=[append_hook]) as uow:
        uow.audit(AuditRecord("test.rolled-back", "thing", "t1"))
        raise RuntimeError("the unit fails after recording its event")
    with unit_of_work(engine, readonly=True) as uow:
        before = verify(uow.session)
    assert before.pending == 0

    def broken(*args: object, **kwargs: object) -> int:
        raise OSError("database connection lost after the commit")

    monkeypatch.setattr(chain, "integrate", broken)
    with unit_of_work(engine, before_commit=[append_hook]) as uow:  # commits: the failure is only logged
        uow.audit(AuditRecord("test.queued", "thing", "t2"))
    monkeypatch.undo()
    with unit_of_work(engine, readonly=True) as uow:
        queued = verify(uow.session)
    assert queued.ok and queued.pending == 1 and queued.head_seq == before.head_seq

    assert integrate(engine, drain=True) == 1
    with unit_of_work(engine, readonly=True) as uow:
        after = verify(uow.session)
        newest = uow.session.scalars(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).one()
    assert after.ok and after.pending == 0 and after.head_seq == before.head_seq + 1
    assert (newest.action, newest.target) == ("test.queued", "t2")
