"""Many concurrent admissions on PostgreSQL: each its own connection and transaction.

The limit that binds admits exactly as many as it can hold, every other request is refused
naming that node, and the stored ledger stays exact. Locks are taken in one order (reservation,
then the chain leaf first), so mixed operations on overlapping chains never deadlock, with
new reservations through the one-statement path and through the general path alike.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.engine import Engine

from controlplane.db.engine import make_engine
from controlplane.db.uow import UnitOfWork
from controlplane.errors import DomainError
from controlplane.ledger import service
from controlplane.ledger.errors import QuotaRefused
from tests.controlplane.ledger.helpers import (
    CITY,
    COUNTY,
    SIBLING,
    allocate,
    assert_consistent,
    city_and_counties,
    key,
    node,
    run,
)

pytestmark = pytest.mark.postgres_only

CLIENTS = 240
POOL = 60  # well under the server's max_connections, far fewer than the clients


@pytest.fixture(autouse=True, params=["one-statement", "general"])
def reserve_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every race twice: new reservations through the one-statement path (``ledger.fastpath``,
    the default on PostgreSQL) and through the general lock-then-compute path alone."""
    monkeypatch.setattr(service, "FAST_PATH", request.param == "one-statement")
    return str(request.param)


@pytest.fixture
def wide_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=POOL, max_overflow=0, pool_timeout=120)
    yield engine
    engine.dispose()


def race(engine: Engine, jobs: list[Callable[[UnitOfWork], object]]) -> list[str]:
    """Run every job in its own unit at once (released together by a barrier); the outcome of
    each: "ok", the refusing node, or the domain error's type."""
    barrier = threading.Barrier(len(jobs))

    def one(job: Callable[[UnitOfWork], object]) -> str:
        barrier.wait()
        try:
            run(engine, job)
        except QuotaRefused as refused:
            return str(refused.fields["node"])
        except DomainError as error:  # a deadlock or serialization failure is no DomainError: it fails the test
            return type(error).__name__
        return "ok"

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(one, jobs))


def reservation(path: str, owner: str, vcpus: int = 1) -> Callable[[UnitOfWork], object]:
    return lambda uow: service.reserve(uow, owner, key(path), {"vcpus": vcpus})


def test_a_county_limit_admits_exactly_k(wide_engine: Engine) -> None:
    k = 37
    city_and_counties(wide_engine, city_vcpus=1000, county_vcpus=k)
    outcomes = Counter(race(wide_engine, [reservation(COUNTY, f"request:{i}") for i in range(CLIENTS)]))
    assert outcomes == {"ok": k, "hubei.wuhan.jiangan/egov/wuhan": CLIENTS - k}
    assert node(wide_engine, COUNTY)["reserved"] == {"vcpus": k}
    assert node(wide_engine, CITY)["consumption"] == {"vcpus": k}
    assert_consistent(wide_engine)


def test_a_city_limit_binds_its_counties_at_exactly_k(wide_engine: Engine) -> None:
    k = 53
    city_and_counties(wide_engine, city_vcpus=k)  # counties without own limits
    jobs = [reservation(COUNTY if i % 2 else SIBLING, f"request:{i}") for i in range(CLIENTS)]
    outcomes = Counter(race(wide_engine, jobs))
    assert outcomes == {"ok": k, "hubei.wuhan/egov/wuhan": CLIENTS - k}
    assert node(wide_engine, CITY)["consumption"] == {"vcpus": k}
    assert_consistent(wide_engine)


def test_a_sibling_slice_stays_available_throughout(wide_engine: Engine) -> None:
    slice_size = 30
    allocate(wide_engine, CITY, "shared", {"vcpus": 100})
    allocate(wide_engine, COUNTY, "shared")
    allocate(wide_engine, SIBLING, "slice", {"vcpus": slice_size})
    county_jobs = [reservation(COUNTY, f"request:county-{i}") for i in range(CLIENTS)]
    slice_jobs = [reservation(SIBLING, f"request:slice-{i}") for i in range(slice_size)]
    jobs = county_jobs + slice_jobs
    order = list(range(len(jobs)))
    random.Random(5).shuffle(order)
    outcomes = race(wide_engine, [jobs[i] for i in order])
    by_job = {i: outcomes[pos] for pos, i in enumerate(order)}
    assert all(by_job[len(county_jobs) + j] == "ok" for j in range(slice_size)), "the slice was taken by others"
    county = Counter(by_job[i] for i in range(len(county_jobs)))
    assert county == {"ok": 100 - slice_size, "hubei.wuhan/egov/wuhan": CLIENTS - (100 - slice_size)}
    # and afterwards the holder can take its whole slice again in one piece
    for j in range(slice_size):
        run(wide_engine, lambda uow, j=j: service.release(uow, f"request:slice-{j}"))
    run(wide_engine, reservation(SIBLING, "request:slice-whole", slice_size))
    assert node(wide_engine, SIBLING)["reserved"] == {"vcpus": slice_size}
    assert node(wide_engine, CITY)["consumption"] == {"vcpus": 100}
    assert_consistent(wide_engine)


def test_mixed_operations_on_overlapping_chains_never_deadlock(wide_engine: Engine) -> None:
    city_and_counties(wide_engine, city_vcpus=500, county_vcpus=300)
    for i in range(40):
        run(wide_engine, reservation(COUNTY if i % 2 else SIBLING, f"operation:pre-{i}", 3))
    rng = random.Random(7)
    jobs: list[Callable[[UnitOfWork], object]] = []
    for i in range(160):
        path = COUNTY if i % 2 else SIBLING
        choice = rng.randrange(6)
        if choice == 0:
            jobs.append(lambda uow, i=i: service.commit(uow, f"operation:pre-{i % 40}"))
        elif choice == 1:
            jobs.append(lambda uow, i=i: service.release(uow, f"operation:pre-{i % 40}"))
        elif choice == 2:
            limit = rng.randrange(450, 600)
            jobs.append(lambda uow, v=limit: service.set_limits(uow, key(CITY), {"vcpus": v}))
        elif choice == 3:
            jobs.append(lambda uow, i=i: service.reserve(uow, f"operation:pre-{i % 40}", key(COUNTY), {"vcpus": 4}))
        else:
            jobs.append(reservation(path, f"operation:new-{i}", rng.randrange(1, 6)))
    outcomes = Counter(race(wide_engine, jobs))
    # business refusals only: a quota, an owner holding its reservation elsewhere or already
    # released, a limit below consumption; a deadlock would have raised out of the race
    allowed = {"ok", "ReservationMissing", "Conflict", "LimitBelowConsumption"}
    assert {o for o in outcomes if "/egov/" not in o} <= allowed, outcomes
    assert outcomes["ok"] > len(jobs) // 2, outcomes
    assert_consistent(wide_engine)
