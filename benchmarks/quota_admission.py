"""Quota admission throughput on PostgreSQL: reserve + commit against one city's counties.

Builds province -> 17 cities -> 5 counties each (egov, wuhan) in a fresh database, then runs
a single-client baseline and N concurrent client *processes* (two cores: threads would only
measure the GIL), each admitting (reserve in one transaction, commit in the next, both
audited) against a random county of one city. Prints admissions/s, p50/p99 latency of the
admission (the reserve transaction) and of the whole reserve + commit cycle, the ratio to the
baseline, the cost of auditing (same run without the audit hook),
then the same clients offering 300 admissions/s on a schedule (latency at the target's rate,
counted from each admission's scheduled start), then saturates one county from every
client and finally checks every node of the ledger
(consumption recomputed from the rows, reserved against reservations, limits) before printing
"oversubscribed nodes: 0". Exit status 1 if the ledger is not exact.

    CHUTIAN_BENCH_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/quota_admission.py [--smoke] [--clients 32] [--seconds 10]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine, make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controlplane.audit.chain import append_hook
from controlplane.auth.principal import system_principal
from controlplane.bootstrap import seed_database
from controlplane.db.engine import make_engine
from controlplane.db.migrate import upgrade
from controlplane.db.uow import UnitOfWork, unit_of_work
from controlplane.ledger import service
from controlplane.ledger.allocations import create_allocation
from controlplane.ledger.errors import QuotaRefused
from controlplane.ledger.models import AllocationMode
from controlplane.ledger.verify import check_ledger
from controlplane.site_config import load_site
from controlplane.tenants import service as tenants
from controlplane.tenants.credit_code import make_credit_code
from controlplane.tenants.models import Tenant, TenantKind
from controlplane.tenants.schemas import TenantCreate
from quotas import NodeKey

CLOUD, REGION, HOT_CITY = "egov", "wuhan", "hubei.wuhan"
COUNTIES_PER_CITY = 5
DELTA = {"vcpus": 1, "ram_mb": 2048, "instances": 1}
PRINCIPAL = system_principal("benchmark")


def key(path: str) -> NodeKey:
    return NodeKey(path, CLOUD, REGION)


def unit(engine: Engine, work: Callable[[UnitOfWork], Any], *, audit: bool) -> Any:
    with unit_of_work(engine, principal=PRINCIPAL, before_commit=[append_hook] if audit else []) as uow:
        return work(uow)


# --- database and tree --------------------------------------------------------------------------


def create_database(base_url: str) -> tuple[str, str]:
    name = f"chutian_bench_{os.getpid()}"
    admin = create_engine(make_url(base_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_database(base_url: str, name: str) -> None:
    admin = create_engine(make_url(base_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def build_tree(engine: Engine) -> list[str]:
    """17 seeded cities (shared, limited) with 5 counties each (shared, limited); returns the hot city's counties."""
    hot: list[str] = []
    with unit_of_work(engine, principal=PRINCIPAL) as uow:
        cities = uow.session.scalars(select(Tenant).where(Tenant.kind == TenantKind.CITY.value).order_by(Tenant.path))
        city_paths = [c.path for c in cities]
        assert len(city_paths) == 17, city_paths
        for city in city_paths:
            create_allocation(uow, city, CLOUD, REGION, AllocationMode.SHARED, {"vcpus": 10**6, "instances": 10**6})
            below = list(
                uow.session.scalars(
                    select(Tenant.path).where(Tenant.path.startswith(city + ".")).order_by(Tenant.path).limit(5)
                )
            )
            for i in range(len(below), COUNTIES_PER_CITY):
                code = f"bench{i}"
                tenants.create(
                    uow,
                    PRINCIPAL,
                    TenantCreate(
                        parent=city,
                        code=code,
                        name_zh=f"测试县{i}",
                        name_en=f"Bench county {i}",
                        kind=TenantKind.COUNTY,
                        credit_code=make_credit_code("11", "420100", f"BE{abs(hash(city)) % 10**5:05d}{i:02d}"),
                    ),
                )
                below.append(f"{city}.{code}")
            for county in below:
                limits = {"vcpus": 10**5, "instances": 10**5}  # never binding while timing
                create_allocation(uow, county, CLOUD, REGION, AllocationMode.SHARED, limits)
            if city == HOT_CITY:
                hot = below
    return hot


# --- clients ------------------------------------------------------------------------------------


@dataclass
class Result:
    latencies: list[float]  # the admission itself: the reserve transaction
    cycles: list[float]  # reserve + commit
    admitted: int
    refused: int
    errors: int


def client(
    url: str, counties: list[str], start_at: float, seconds: float, audit: bool, seed: int, interval: float = 0.0
) -> Result:
    """One client process: admit (reserve, then commit) until the deadline.

    ``interval`` 0: back to back (a closed loop: saturation throughput; its latency is just
    clients / throughput). Otherwise one admission every ``interval`` seconds on a fixed
    schedule, latency counted from the *scheduled* start, so falling behind shows as latency
    (no coordinated omission)."""
    engine = make_engine(url, pool_size=1, max_overflow=1)
    rng = random.Random(seed)
    latencies: list[float] = []
    cycles: list[float] = []
    admitted = refused = errors = 0
    try:
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = start_at + seconds
        next_at = time.perf_counter() + rng.random() * interval
        while time.time() < deadline:
            owner = f"operation:{uuid.uuid4()}"
            county = key(rng.choice(counties))
            began = time.perf_counter()
            if interval:
                if next_at > began:
                    time.sleep(next_at - began)
                began, next_at = next_at, next_at + interval
            try:
                unit(engine, lambda uow, o=owner, k=county: service.reserve(uow, o, k, DELTA), audit=audit)
                reserved = time.perf_counter()
                unit(engine, lambda uow, o=owner: service.commit(uow, o), audit=audit)
            except QuotaRefused:
                refused += 1
                continue
            except Exception as exc:
                errors += 1
                print(f"client error: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            latencies.append(reserved - began)
            cycles.append(time.perf_counter() - began)
            admitted += 1
    finally:
        engine.dispose()
    return Result(latencies, cycles, admitted, refused, errors)


def phase(
    url: str, counties: list[str], clients: int, seconds: float, *, audit: bool, rate: float = 0.0
) -> dict[str, float]:
    """``rate`` > 0: the clients together offer that many admissions per second, paced."""
    start_at = time.time() + 1.5  # every process is up before anyone starts
    interval = clients / rate if rate else 0.0
    args = [(url, counties, start_at, seconds, audit, i, interval) for i in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        results = pool.starmap(client, args)
    latencies = sorted(x for r in results for x in r.latencies)
    cycles = sorted(x for r in results for x in r.cycles)
    admitted = sum(r.admitted for r in results)
    return {
        "cycle_p50_ms": _ms(cycles, 0.5),
        "cycle_p99_ms": _ms(cycles, 0.99),
        "clients": clients,
        "rate": admitted / seconds,
        "admitted": admitted,
        "refused": sum(r.refused for r in results),
        "errors": sum(r.errors for r in results),
        "p50_ms": _ms(latencies, 0.5),
        "p99_ms": _ms(latencies, 0.99),
    }


def _ms(values: list[float], quantile: float) -> float:
    if not values:
        return float("nan")
    return 1000 * (
        statistics.median(values) if quantile == 0.5 else values[min(len(values) - 1, int(quantile * len(values)))]
    )


def show(label: str, r: dict[str, float], baseline: float | None = None) -> None:
    ratio = f"  x{r['rate'] / baseline:.2f} vs baseline" if baseline else ""
    print(
        f"{label:<30} {r['rate']:7.1f} admissions/s  admission p50 {r['p50_ms']:6.1f} ms p99 {r['p99_ms']:6.1f} ms"
        f"  | reserve+commit p50 {r['cycle_p50_ms']:6.1f} ms p99 {r['cycle_p99_ms']:6.1f} ms"
        f"  (admitted {int(r['admitted'])}, refused {int(r['refused'])}, errors {int(r['errors'])}){ratio}"
    )


def saturate(engine: Engine, url: str, county: str, clients: int, headroom: int) -> tuple[int, int]:
    """Leave `headroom` instances at `county`, then let every client try to take them all at once."""

    def lower(uow: UnitOfWork) -> None:
        used = int(service.read_chain(uow, key(county)).leaf.consumption.get("instances", 0))
        service.set_limits(uow, key(county), {"instances": used + headroom})

    unit(engine, lower, audit=True)
    attempts = max(4 * headroom, 200)
    result = phase_fixed(url, county, clients, attempts)
    return result


def _take(url: str, county: str, owners: list[str]) -> tuple[int, int]:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    ok = refused = 0
    try:
        for owner in owners:
            try:
                unit(engine, lambda uow, o=owner: service.reserve(uow, o, key(county), {"instances": 1}), audit=True)
                ok += 1
            except QuotaRefused:
                refused += 1
    finally:
        engine.dispose()
    return ok, refused


def phase_fixed(url: str, county: str, clients: int, attempts: int) -> tuple[int, int]:
    owners = [f"operation:{uuid.uuid4()}" for _ in range(attempts)]
    chunks = [(url, county, owners[i::clients]) for i in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        results = pool.starmap(_take, chunks)
    return sum(r[0] for r in results), sum(r[1] for r in results)


# --- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="short phases, for CI (under a minute)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each timed phase")
    parser.add_argument("--rate", type=float, default=300.0, help="admissions/s offered in the latency phase")
    args = parser.parse_args()
    seconds = min(args.seconds, 2.0) if args.smoke else args.seconds
    base_url = os.environ.get("CHUTIAN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    t0 = time.perf_counter()
    name, url = create_database(base_url)
    try:
        upgrade(url)
        engine = make_engine(url)
        seed_database(engine, load_site(None))
        counties = build_tree(engine)
        with engine.connect() as conn:
            nodes = conn.execute(text("SELECT count(*) FROM quota_nodes")).scalar_one()
        engine.dispose()  # nothing open across the fork
        print(f"database {name}: {nodes} ledger nodes; hot city {HOT_CITY}: {', '.join(counties)}")
        print(f"setup {time.perf_counter() - t0:.1f} s; phases of {seconds:g} s; delta per admission {DELTA}")

        baseline = phase(url, counties, 1, seconds, audit=True)
        show("1 client, audited (baseline)", baseline)
        audited = phase(url, counties, args.clients, seconds, audit=True)
        show(f"{args.clients} clients, audited", audited, baseline["rate"])
        plain = phase(url, counties, args.clients, seconds, audit=False)
        show(f"{args.clients} clients, audit off", plain, baseline["rate"])
        service.FAST_PATH = False  # the forked clients inherit it
        general = phase(url, counties, args.clients, seconds, audit=True)
        service.FAST_PATH = True
        show(f"{args.clients} clients, general path", general, baseline["rate"])
        ratio = audited["rate"] / general["rate"] if general["rate"] else float("nan")
        print(f"one-statement reservations against the general path alone: x{ratio:.2f} admissions/s")
        cost = 100 * (1 - audited["rate"] / plain["rate"]) if plain["rate"] else float("nan")
        slower = audited["p50_ms"] - plain["p50_ms"]
        print(f"cost of auditing: {cost:.0f}% of throughput, admission p50 {slower:+.1f} ms")
        # A closed loop's latency is only clients / throughput (32 / 300/s = 107 ms a cycle):
        # latency is measured at the target's rate, offered on a schedule by the same clients.
        paced = phase(url, counties, args.clients, seconds, audit=True, rate=args.rate)
        show(f"{args.clients} clients offering {args.rate:g}/s", paced, baseline["rate"])
        target = audited["rate"] >= 300 and paced["rate"] >= 0.97 * args.rate and paced["p99_ms"] <= 100
        print(
            f"target (>= 300/s with {args.clients} clients; p99 <= 100 ms at 300/s offered): "
            f"{'met' if target and args.rate >= 300 else 'NOT met'}"
        )

        engine = make_engine(url)
        headroom = 25
        ok, refused = saturate(engine, url, counties[0], args.clients, headroom)
        print(
            f"saturation: {args.clients} clients raced for the last {headroom} instances of {counties[0]}: "
            f"{ok} admitted, {refused} refused"
        )
        with unit_of_work(engine, readonly=True) as uow:
            check = check_ledger(uow.session)
        engine.dispose()
        errors = baseline["errors"] + audited["errors"] + plain["errors"] + paced["errors"] + general["errors"]
        if check.problems or ok != headroom or errors:
            for problem in check.problems[:20]:
                print(f"LEDGER PROBLEM: {problem}")
            print(f"ledger NOT exact: {len(check.problems)} problems, {ok}/{headroom} admitted, {errors} errors")
            return 1
        print(f"checked {check.nodes} of {nodes} nodes: consumption, reserved and limits exact")
        print(f"oversubscribed nodes: {len(check.oversubscribed)}")
        return 0
    finally:
        drop_database(base_url, name)
        print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
