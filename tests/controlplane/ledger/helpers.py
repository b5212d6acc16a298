"""Building ledger trees for tests: allocations in egov/wuhan unless told otherwise."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from controlplane.audit.chain import append_hook
from controlplane.auth.principal import Principal, system_principal
from controlplane.db.uow import UnitOfWork, unit_of_work
from controlplane.ledger import service
from controlplane.ledger.allocations import create_allocation
from controlplane.ledger.models import Allocation, AllocationMode
from controlplane.ledger.verify import check_ledger
from quotas import NodeKey

T = TypeVar("T")
CLOUD, REGION = "egov", "wuhan"
CITY, COUNTY, SIBLING = "hubei.wuhan", "hubei.wuhan.jiangan", "hubei.wuhan.jianghan"
ADMIN = system_principal("test")


def key(path: str, cloud: str = CLOUD, region: str = REGION) -> NodeKey:
    return NodeKey(path, cloud, region)


def run(engine: Engine, work: Callable[[UnitOfWork], T], principal: Principal = ADMIN) -> T:
    """One committed unit as `principal`, audited like the API's."""
    with unit_of_work(engine, principal=principal, before_commit=[append_hook]) as uow:
        return work(uow)


def allocate(
    engine: Engine,
    path: str,
    mode: str = "shared",
    limits: Mapping[str, int | None] | None = None,
    *,
    cloud: str = CLOUD,
    region: str = REGION,
    principal: Principal = ADMIN,
) -> Allocation:
    return run(
        engine,
        lambda uow: create_allocation(uow, path, cloud, region, AllocationMode(mode), dict(limits or {})),
        principal,
    )


def node(engine: Engine, path: str | None, cloud: str = CLOUD, region: str = REGION) -> dict[str, Any]:
    """A node's stored figures, read back in a fresh unit."""
    k = NodeKey.for_region(region) if path is None else key(path, cloud, region)
    row = run(engine, lambda uow: service.read_chain(uow, k)).leaf
    return {
        "limits": dict(row.limits),
        "used": dict(row.used),
        "reserved": dict(row.reserved),
        "consumption": dict(row.consumption),
        "over_limit": list(row.over_limit),
    }


def assert_consistent(engine: Engine) -> None:
    """Every node's stored consumption and reserved agree with the rows, and nothing is oversubscribed."""
    with unit_of_work(engine, readonly=True) as uow:
        check = check_ledger(uow.session)
    assert check.nodes > 0
    assert check.problems == [], check.problems


def city_and_counties(engine: Engine, city_vcpus: int | None = 100, county_vcpus: int | None = None) -> None:
    """hubei.wuhan (shared) with two shared districts below it, in egov/wuhan."""
    allocate(engine, CITY, "shared", {} if city_vcpus is None else {"vcpus": city_vcpus})
    limits = {} if county_vcpus is None else {"vcpus": county_vcpus}
    allocate(engine, COUNTY, "shared", limits)
    allocate(engine, SIBLING, "shared", limits)


def seed_city_ledger(engine: Engine, city: str, cloud: str, region: str) -> dict[str, str]:
    """For the cross-tenant test: `city`'s allocation in (cloud, region) and an open usage drift on it."""
    from controlplane.ledger import usage

    allocation = allocate(engine, city, "shared", {"vcpus": 1000}, cloud=cloud, region=region)
    report = run(engine, lambda uow: usage.report_usage(uow, allocation.id, {"vcpus": 1}, "openstack"))
    assert report is not None
    return {"allocation": str(allocation.id), "drift": str(report.id)}
