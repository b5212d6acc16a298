"""The one-statement reservation path on PostgreSQL (``controlplane.ledger.fastpath``).

It applies what ``quotas.admit`` concluded from an *unlocked* read, so each premise of that
conclusion is broken here between the read and the statement: the statement must then write
nothing at all, and ``service.reserve`` must still give the general path's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from controlplane.db.uow import UnitOfWork
from controlplane.errors import ValidationFailed
from controlplane.ledger import fastpath, service
from controlplane.ledger.chain import load_chain
from controlplane.ledger.errors import QuotaRefused
from controlplane.ledger.models import Allocation, AllocationStatus, Reservation
from quotas import Admitted, ResourceVector, admit
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


def stale_attempt(engine: Engine, path: str, vcpus: int, meanwhile: Callable[[], object]) -> Any:
    """Read and decide in one unit, let ``meanwhile`` commit elsewhere, then try the statement."""

    def work(uow: UnitOfWork) -> Any:
        delta = ResourceVector({"vcpus": vcpus})
        chain = load_chain(uow, key(path), lock=False)
        nodes = chain.nodes()
        outcome = admit(nodes, delta)
        assert isinstance(outcome, Admitted), "the premise holds when read"
        meanwhile()
        return fastpath.try_reserve(
            uow, chain, nodes, outcome, owner="request:stale", delta=delta, created_by="test", expires_at=None
        )

    return run(engine, work)


def reservations(engine: Engine) -> int:
    return int(run(engine, lambda uow: uow.session.scalar(select(func.count()).select_from(Reservation))) or 0)


def test_new_reservations_take_one_statement_and_keep_the_ledger_exact(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    city_and_counties(engine, city_vcpus=10)
    taken: list[object] = []
    real = fastpath.try_reserve
    monkeypatch.setattr(fastpath, "try_reserve", lambda *a, **k: taken.append(real(*a, **k)) or taken[-1])
    run(engine, lambda uow: service.reserve(uow, "request:a", key(COUNTY), {"vcpus": 4}))
    assert isinstance(taken[-1], Reservation)
    # an owner replacing its reservation: the statement writes nothing, the general path does it
    run(engine, lambda uow: service.reserve(uow, "request:a", key(COUNTY), {"vcpus": 2}))
    assert len(taken) == 2 and taken[-1] is None
    run(engine, lambda uow: service.reserve(uow, "request:b", key(SIBLING), {"vcpus": 8}))
    assert isinstance(taken[-1], Reservation)
    assert node(engine, COUNTY)["reserved"] == {"vcpus": 2}
    assert node(engine, CITY)["consumption"] == {"vcpus": 10}
    assert node(engine, None)["consumption"]["vcpus"] >= 10
    # the city is full now: refused by the general path under the locks, naming the city
    with pytest.raises(QuotaRefused) as refused:
        run(engine, lambda uow: service.reserve(uow, "request:c", key(COUNTY), {"vcpus": 1}))
    assert refused.value.fields["node"] == f"{CITY}/egov/wuhan"
    assert len(taken) == 3, "a refusal read from committed state does not try the statement"
    assert_consistent(engine)


def test_a_limit_reached_meanwhile_writes_nothing(engine: Engine) -> None:
    city_and_counties(engine, city_vcpus=10)
    before = node(engine, CITY)
    # another admission takes the city's last 8 between the read and the statement
    got = stale_attempt(
        engine,
        COUNTY,
        5,
        lambda: run(engine, lambda uow: service.reserve(uow, "request:other", key(SIBLING), {"vcpus": 8})),
    )
    assert got is None
    assert reservations(engine) == 1
    assert node(engine, COUNTY)["consumption"] == before["consumption"] == {}
    assert node(engine, CITY)["consumption"] == {"vcpus": 8}
    assert_consistent(engine)


def test_a_slice_given_a_limit_meanwhile_writes_nothing(engine: Engine) -> None:
    # the county is a slice with no vcpus limit of its own: 6 carries 6 to the city; once an
    # operator has given it a slice of 10 (counted in full at the city), 6 would carry nothing
    allocate(engine, CITY, "shared", {"vcpus": 100})
    allocate(engine, COUNTY, "slice", {})
    got = stale_attempt(
        engine,
        COUNTY,
        6,
        lambda: run(engine, lambda uow: service.set_limits(uow, key(COUNTY), {"vcpus": 10})),
    )
    assert got is None
    assert node(engine, COUNTY)["consumption"] == {}
    assert node(engine, CITY)["consumption"] == {"vcpus": 10}
    run(engine, lambda uow: service.reserve(uow, "request:late", key(COUNTY), {"vcpus": 6}))
    assert node(engine, CITY)["consumption"] == {"vcpus": 10}, "inside its slice: nothing more upward"
    assert_consistent(engine)


def test_an_allocation_retired_meanwhile_writes_nothing(engine: Engine) -> None:
    city_and_counties(engine, city_vcpus=10)

    def retire() -> None:
        def work(uow: UnitOfWork) -> None:
            allocation = uow.session.get(Allocation, county_allocation)
            assert allocation is not None
            allocation.status = AllocationStatus.RETIRING.value

        run(engine, work)

    county_allocation = run(engine, lambda uow: load_chain(uow, key(COUNTY), lock=False).leaf.allocation_id)
    assert stale_attempt(engine, COUNTY, 1, retire) is None
    assert reservations(engine) == 0
    assert node(engine, CITY)["consumption"] == {}


def test_commits_take_one_statement_part_by_part(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    city_and_counties(engine, city_vcpus=10)
    taken: list[bool] = []
    real = fastpath.try_commit
    monkeypatch.setattr(fastpath, "try_commit", lambda *a, **k: taken.append(real(*a, **k)) or taken[-1])
    run(engine, lambda uow: service.reserve(uow, "request:a", key(COUNTY), {"vcpus": 4, "ram_mb": 512}))
    run(engine, lambda uow: service.commit(uow, "request:a", {"vcpus": 1}))
    assert node(engine, COUNTY)["used"] == {"vcpus": 1}
    assert node(engine, COUNTY)["reserved"] == {"ram_mb": 512, "vcpus": 3}
    done = run(engine, lambda uow: service.commit(uow, "request:a"))
    assert taken == [True, True]
    assert (done.amounts, done.committed) == ({}, {"ram_mb": 512, "vcpus": 4})
    leaf = node(engine, COUNTY)
    assert leaf["used"] == {"ram_mb": 512, "vcpus": 4}
    assert leaf["reserved"] == {}, "emptied entries are dropped, as the general path stores them"
    assert leaf["consumption"] == {"ram_mb": 512, "vcpus": 4}
    assert node(engine, CITY)["consumption"] == {"ram_mb": 512, "vcpus": 4}
    # more than is held: the general path's refusal, nothing written
    with pytest.raises(ValidationFailed):
        run(engine, lambda uow: service.commit(uow, "request:a", {"vcpus": 1}))
    assert_consistent(engine)


def test_a_reservation_committed_meanwhile_writes_nothing(engine: Engine) -> None:
    city_and_counties(engine, city_vcpus=10)
    run(engine, lambda uow: service.reserve(uow, "request:a", key(COUNTY), {"vcpus": 4}))

    def work(uow: UnitOfWork) -> bool:
        row = fastpath.read_reservation(uow, "request:a")
        assert row is not None
        run(engine, lambda other: service.commit(other, "request:a", {"vcpus": 3}))  # elsewhere, meanwhile
        held = ResourceVector(row.amounts)
        return fastpath.try_commit(uow, "request:a", row.node_id, held, ResourceVector(row.committed), held)

    assert run(engine, work) is False
    assert node(engine, COUNTY)["used"] == {"vcpus": 3}
    assert node(engine, COUNTY)["reserved"] == {"vcpus": 1}
    assert_consistent(engine)
