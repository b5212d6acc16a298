"""How long `/metrics` takes to render with 10,000 tenants (issue #10: under 1 s).

Builds a fresh, migrated and seeded database (PostgreSQL from CHUTIAN_BENCH_PG_URL, else a
SQLite file), renders the whole registry a few times as the baseline, then adds 10,000
county-level tenants under the seeded cities, each with a quota node, an operation (a mix of
states, finished ones inside the duration window) and every 50th a backend error — all with
Core inserts, so seeding takes seconds — and renders again. Prints the median and worst
render time, the number of series, and the ratio against the baseline. Exit status 1 if the
median render with 10,000 tenants takes 1 s or more.

    CHUTIAN_BENCH_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/metrics.py [--smoke] [--tenants 10000] [--renders 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import Engine, make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import generate_latest

from controlplane.bootstrap import seed_database
from controlplane.db.engine import make_engine
from controlplane.db.migrate import upgrade
from controlplane.ledger.models import NodeMode, QuotaNode
from controlplane.metrics import build_registry
from controlplane.operations.models import BackendErrorEvent, Operation
from controlplane.site_config import load_site
from controlplane.tenants.credit_code import make_credit_code
from controlplane.tenants.models import Tenant, TenantKind

CLOUD, REGION = "egov", "wuhan"
TARGET_S = 1.0
STATES = ("succeeded", "succeeded", "succeeded", "failed", "running", "queued")


def fresh_database() -> tuple[str, object]:
    """A URL of an empty database and what `cleanup` needs to remove it."""
    base = os.environ.get("CHUTIAN_BENCH_PG_URL")
    if not base:
        tmp = tempfile.mkdtemp(prefix="chutian-bench-metrics-")
        return f"sqlite:///{tmp}/bench.sqlite3", tmp
    name = f"chutian_bench_metrics_{os.getpid()}"
    admin = create_engine(make_url(base).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False), (base, name)


def cleanup(handle: object) -> None:
    if isinstance(handle, tuple):
        base, name = handle
        admin = create_engine(make_url(base).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def add_tenants(engine: Engine, n: int) -> None:
    """n counties spread over the seeded cities, each with a quota node and an operation."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        cities = list(conn.execute(select(Tenant.id, Tenant.path, Tenant.depth).where(Tenant.kind == "city")))
        tenants, nodes, operations, errors = [], [], [], []
        for i in range(n):
            city_id, city_path, city_depth = cities[i % len(cities)]
            tid, code = uuid.uuid4(), f"b{i:05d}"
            tenants.append(
                {
                    "id": tid,
                    "parent_id": city_id,
                    "code": code,
                    "path": f"{city_path}.{code}",
                    "depth": city_depth + 1,
                    "name_zh": f"测试县{i}",
                    "name_en": f"Bench county {i}",
                    "kind": TenantKind.COUNTY.value,
                    "credit_code": make_credit_code("11", "420100", f"BM{i:07d}"),
                    "mlps_ceiling": 3,
                    "network_zone": "egov-extranet",
                    "dr_link_mbps": 10,
                    "status": "active",
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                }
            )
            nodes.append(
                {
                    "id": uuid.uuid4(),
                    "tenant_id": tid,
                    "cloud": CLOUD,
                    "region": REGION,
                    "depth": city_depth + 2,
                    "mode": NodeMode.SHARED.value,
                    "limits": {"vcpus": 64, "ram_mb": 131072, "instances": 32},
                    "limits_source": "operator",
                    "used": {"vcpus": i % 64},
                    "reserved": {},
                    "consumption": {"vcpus": i % 64},
                    "over_limit": [],
                    "updated_at": now,
                }
            )
            state = STATES[i % len(STATES)]
            done = state in {"succeeded", "failed"}
            op_id = uuid.uuid4()
            operations.append(
                {
                    "id": op_id,
                    "kind": "request.vm",
                    "state": state,
                    "attempts": 1,
                    "tenant_id": tid,
                    "params": {},
                    "steps_done": [],
                    "memo": {},
                    "log": [],
                    "created_at": now - timedelta(seconds=60 + i % 600),
                    "updated_at": now,
                    "started_at": now - timedelta(seconds=30 + i % 600) if state != "queued" else None,
                    "finished_at": now if done else None,
                }
            )
            if i % 50 == 0:
                errors.append({"backend": "simulated", "kind": "transient", "operation_id": op_id, "at": now})
        conn.execute(insert(Tenant.__table__), tenants)  # type: ignore[attr-defined]
        conn.execute(insert(QuotaNode.__table__), nodes)  # type: ignore[attr-defined]
        conn.execute(insert(Operation.__table__), operations)  # type: ignore[attr-defined]
        conn.execute(insert(BackendErrorEvent.__table__), errors)  # type: ignore[attr-defined]


def measure(engine: Engine, renders: int) -> tuple[list[float], int]:
    registry, _ = build_registry(engine)
    generate_latest(registry)  # warm: first query plans, imports
    times = []
    for _ in range(renders):
        start = time.perf_counter()
        body = generate_latest(registry)
        times.append(time.perf_counter() - start)
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return times, series


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="fewer renders (CI); still 10,000 tenants")
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--renders", type=int, default=None)
    args = parser.parse_args()
    renders = args.renders or (5 if args.smoke else 21)
    url, handle = fresh_database()
    try:
        upgrade(url)
        engine = make_engine(url)
        seed_database(engine, load_site(None))
        base, base_series = measure(engine, renders)
        start = time.perf_counter()
        add_tenants(engine, args.tenants)
        seeded_s = time.perf_counter() - start
        big, big_series = measure(engine, renders)
        engine.dispose()
    finally:
        cleanup(handle)
    dialect = make_url(url).get_backend_name()
    b50, m50 = statistics.median(base), statistics.median(big)
    print(f"database: {dialect}; renders per case: {renders}; seeding {args.tenants} tenants: {seeded_s:.2f} s")
    print(f"baseline (demo tree): median {b50 * 1000:.1f} ms, max {max(base) * 1000:.1f} ms, {base_series} series")
    print(
        f"{args.tenants} tenants: median {m50 * 1000:.1f} ms, max {max(big) * 1000:.1f} ms, {big_series} series; "
        f"ratio to baseline {m50 / b50:.2f}x"
    )
    met = m50 < TARGET_S
    print(f"target: median under {TARGET_S:.0f} s: {'met' if met else 'NOT MET'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
