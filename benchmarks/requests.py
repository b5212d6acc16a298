"""Submitting VM requests on PostgreSQL: validate, reserve, persist, audit.

Measures, in one run against a fresh database:
  baseline  - the floor: one INSERT of an equivalent request row and its transition, committed
  service   - create + submit through the services (gates, route, ledger reservation, audit chain)
  api       - the same through the HTTP API (authentication, validation, problem mapping)
and prints submissions/s, p50/p99 latency and the ratio of each to the baseline.
Target: >= 100 submissions/s single client through the service path.

    CHUTIAN_BENCH_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/requests.py [--smoke] [--n 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controlplane.api.app import create_app
from controlplane.audit.chain import append_hook
from controlplane.auth.principal import Principal, system_principal
from controlplane.bootstrap import seed_database
from controlplane.db.engine import make_engine
from controlplane.db.migrate import upgrade
from controlplane.db.uow import RecordingDispatcher, unit_of_work
from controlplane.ledger.allocations import create_allocation
from controlplane.ledger.models import AllocationMode
from controlplane.requests import service, workflow
from controlplane.requests.schemas import RequestCreate
from controlplane.settings import Settings
from controlplane.site_config import load_site

CLOUD, REGION, COUNTY = "education", "wuhan", "hubei.wuhan.jiangan"
DECLARATION = {"items": [{"name": "d", "sharing": "unconditional", "catalogue_ref": "HB-1"}]}


def timed(n: int, fn: Callable[[int], None]) -> tuple[float, list[float]]:
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        latencies.append(time.perf_counter() - t0)
    return time.perf_counter() - start, latencies


def report(name: str, n: int, wall: float, lat: list[float], base_rate: float | None) -> float:
    rate = n / wall
    q = statistics.quantiles(lat, n=100)
    ratio = f"{rate / base_rate:5.2f}x baseline" if base_rate else "(baseline)"
    print(f"{name:<9} {rate:8.1f} submissions/s  p50 {q[49] * 1000:6.2f} ms  p99 {q[98] * 1000:6.2f} ms  {ratio}")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="small run for CI (well under 60 s)")
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    n = 150 if args.smoke else args.n
    base_url = os.environ.get("CHUTIAN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    name = f"chutian_bench_req_{os.getpid()}"
    admin = create_engine(make_url(base_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        engine = make_engine(url)
        seed_database(engine, load_site(None))
        who = system_principal("bench")
        with unit_of_work(engine, principal=who, before_commit=[append_hook]) as uow:
            create_allocation(uow, "hubei.wuhan", CLOUD, REGION, AllocationMode.SHARED, {})
            create_allocation(uow, COUNTY, CLOUD, REGION, AllocationMode.SHARED, {})
        with unit_of_work(engine, principal=who, before_commit=[append_hook]) as uow:
            body = RequestCreate.model_validate(
                {
                    "tenant": COUNTY,
                    "cloud": CLOUD,
                    "region": REGION,
                    "new_system": {"name": "bench", "mlps_level": 2},
                    "spec": {"kind": "volume", "size_gb": 1},
                    "declaration": DECLARATION,
                }
            )
            system_id = service.create_request(uow, who, body)[0].system_id
        member = Principal.with_bindings("bench-clerk", (("tenant-member", COUNTY),))

        def vm_body(i: int) -> dict:
            return {
                "tenant": COUNTY,
                "cloud": CLOUD,
                "region": REGION,
                "system": str(system_id),
                "spec": {"kind": "vm", "flavor": "c2.medium", "image": "kylin-v10", "count": 1, "name": f"vm-{i}"},
                "declaration": DECLARATION,
            }

        def baseline(i: int) -> None:
            with engine.begin() as conn:
                rid = uuid.uuid4()
                conn.execute(
                    text(
                        "INSERT INTO requests (id, tenant_id, system_id, kind, cloud, region, spec, spec_hash, delta, "
                        "state, round, created_by, created_at, updated_at, version) SELECT :id, tenant_id, id, 'vm', "
                        "cloud, :r, CAST(:spec AS JSONB), :h, CAST('{}' AS JSONB), 'pending_approval', 1, 'b', now(), "
                        "now(), 1 FROM information_systems WHERE id = :s"
                    ),
                    {"id": rid, "r": REGION, "spec": json.dumps(vm_body(i)["spec"]), "h": "x" * 64, "s": system_id},
                )
                conn.execute(
                    text(
                        "INSERT INTO request_transitions (request_id, kind, from_state, to_state, actor, at) "
                        "VALUES (:id, 'vm', 'draft', 'submitted', 'b', now())"
                    ),
                    {"id": rid},
                )

        def via_service(i: int) -> None:
            with unit_of_work(engine, principal=member, before_commit=[append_hook]) as uow:
                req, _ = service.create_request(uow, member, RequestCreate.model_validate(vm_body(i)))
                uow.session.flush()
                workflow.submit(uow, member, req.id)

        print(f"VM request submissions on PostgreSQL, n={n} each, single client")
        wall, lat = timed(n, baseline)
        base = report("baseline", n, wall, lat, None)
        wall, lat = timed(n, via_service)
        service_rate = report("service", n, wall, lat, base)

        app = create_app(
            Settings(database_url=url, broker_url="memory://", metrics_port=0),
            engine=engine,
            dispatcher=RecordingDispatcher(),
        )
        from datetime import timedelta

        from fastapi.testclient import TestClient

        from controlplane.auth import tokens
        from controlplane.auth.models import PrincipalKind, RoleBinding
        from controlplane.tenants.models import Tenant

        with unit_of_work(engine, principal=system_principal("bench"), before_commit=[append_hook]) as uow:
            tenant_id = uow.session.scalar(select(Tenant.id).where(Tenant.path == COUNTY))
            uow.session.add(
                RoleBinding(
                    subject="bench-api",
                    role="tenant-member",
                    tenant_id=tenant_id,
                    created_by="bench",
                    created_at=uow.now(),
                )
            )
            _, secret = tokens.mint(
                uow,
                subject="bench-api",
                name="bench",
                kind=PrincipalKind.USER,
                created_by="bench",
                ttl=timedelta(hours=1),
            )
        with TestClient(app) as client:
            client.headers["Authorization"] = f"Bearer {secret}"

            def via_api(i: int) -> None:
                created = client.post("/v1/requests", json=vm_body(10_000 + i))
                assert created.status_code == 201, created.text
                submitted = client.post(f"/v1/requests/{created.json()['id']}:submit")
                assert submitted.status_code == 200, submitted.text

            wall, lat = timed(n, via_api)
            report("api", n, wall, lat, base)
        verdict = "meets" if service_rate >= 100 else "MISSES"
        print(f"target >= 100 submissions/s single client (service path): {verdict} ({service_rate:.1f}/s)")
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
