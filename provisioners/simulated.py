"""The `simulated` backend: the embedded default, clearly not a real cloud.

It keeps what it "creates" in its own SQLite file over its own connection (never the
control plane's database or transaction), so a crash between a backend create and the
step's commit is a real gap that the find-or-create-by-tag contract has to close — exactly
as with a real cloud. `CHUTIAN_FAULT=after_backend_create:N` kills the process with
SIGKILL right after its Nth create (counted per process), to prove that.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioners.errors import BackendQuotaExceeded, TransientBackendError

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    tag TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
"""


@dataclass(frozen=True)
class ServerSpec:
    """What to create; `tag` is unique per logical server and makes creation idempotent."""

    tag: str
    project: str
    flavor: str
    image: str
    vcpus: int = 1
    ram_mb: int = 1024
    network: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResourceRef:
    id: str
    tag: str
    kind: str
    status: str


def parse_fault(value: str | None) -> int | None:
    """`after_backend_create:N` → N; anything else → no fault."""
    if not value or not value.startswith("after_backend_create:"):
        return None
    try:
        count = int(value.split(":", 1)[1])
    except ValueError:
        return None
    return count if count > 0 else None


class SimulatedCloud:
    """Find-or-create by tag over a private SQLite file. Thread- and process-safe (SQLite locks)."""

    def __init__(
        self,
        path: Path,
        *,
        fault: str | None = None,
        quota_instances: int | None = None,
        busy_every: int | None = None,
        boot_s: float = 0.0,
    ) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fault_after = parse_fault(fault)
        self._creates = 0
        self._calls = 0
        self._busy_every = busy_every
        self._quota_instances = quota_instances
        self._boot_s = boot_s
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def _maybe_busy(self) -> None:
        self._calls += 1
        if self._busy_every and self._calls % self._busy_every == 0:
            raise TransientBackendError("simulated 503: backend busy", backend="simulated")

    def ensure_server(self, spec: ServerSpec) -> ResourceRef:
        with self._lock:
            self._maybe_busy()
            conn = self._connect()
            try:
                found = conn.execute("SELECT id, status FROM resources WHERE tag = ?", (spec.tag,)).fetchone()
                if found:
                    return ResourceRef(found[0], spec.tag, "server", found[1])
                if self._quota_instances is not None:
                    count = conn.execute(
                        "SELECT count(*) FROM resources WHERE kind = 'server' AND project = ?", (spec.project,)
                    ).fetchone()[0]
                    if count >= self._quota_instances:
                        raise BackendQuotaExceeded(
                            f"quota exceeded for instances in {spec.project}", backend="simulated"
                        )
                server_id = str(uuid.uuid4())
                conn.execute(
                    "INSERT INTO resources (id, kind, tag, project, spec, status) "
                    "VALUES (?, 'server', ?, ?, ?, 'ACTIVE')",
                    (server_id, spec.tag, spec.project, json.dumps(spec.__dict__, sort_keys=True)),
                )
            finally:
                conn.close()
            self._creates += 1
            if self._fault_after is not None and self._creates >= self._fault_after:
                os.kill(os.getpid(), signal.SIGKILL)  # the fault hook: die before the step commits
        if self._boot_s:
            time.sleep(self._boot_s)  # waiting for the server to build, as with a real cloud
        return ResourceRef(server_id, spec.tag, "server", "ACTIVE")

    def delete_by_tag(self, tag: str) -> bool:
        with self._lock:
            self._maybe_busy()
            conn = self._connect()
            try:
                return conn.execute("DELETE FROM resources WHERE tag = ?", (tag,)).rowcount == 1
            finally:
                conn.close()

    def find(self, tag: str) -> ResourceRef | None:
        conn = self._connect()
        try:
            row = conn.execute("SELECT id, kind, status FROM resources WHERE tag = ?", (tag,)).fetchone()
        finally:
            conn.close()
        return ResourceRef(row[0], tag, row[1], row[2]) if row else None

    def count(self, kind: str = "server", project: str | None = None) -> int:
        conn = self._connect()
        try:
            if project is None:
                return int(conn.execute("SELECT count(*) FROM resources WHERE kind = ?", (kind,)).fetchone()[0])
            return int(
                conn.execute(
                    "SELECT count(*) FROM resources WHERE kind = ? AND project = ?", (kind, project)
                ).fetchone()[0]
            )
        finally:
            conn.close()

    def usage(self, project: str) -> dict[str, int]:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT spec FROM resources WHERE kind = 'server' AND project = ?", (project,)
            ).fetchall()
        finally:
            conn.close()
        specs: list[dict[str, Any]] = [json.loads(r[0]) for r in rows]
        return {
            "instances": len(specs),
            "vcpus": sum(s["vcpus"] for s in specs),
            "ram_mb": sum(s["ram_mb"] for s in specs),
        }
