"""The reservation reaper, the usage-sync hook and the quota metrics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from controlplane.audit.models import AuditEvent
from controlplane.db.uow import unit_of_work
from controlplane.errors import Conflict
from controlplane.ledger import service, usage
from controlplane.ledger.collector import QuotaCollector
from controlplane.ledger.models import Reservation
from controlplane.ledger.owners import operation_owner
from controlplane.ledger.tasks import reap
from controlplane.operations.models import OperationState
from tests.controlplane.ledger.helpers import ADMIN, CITY, COUNTY, assert_consistent, city_and_counties, key, node, run

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def operation(engine: Engine, state: OperationState) -> str:
    """An Operation row in `state` (plain SQL: only the columns an operation always has)."""
    op_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO operations (id, kind, state, attempts, params, created_at, updated_at) "
                "VALUES (:id, 'provision', :state, 0, '{}', :t, :t)"
            ),
            {"id": op_id.hex if engine.dialect.name == "sqlite" else op_id, "state": state.value, "t": T0},
        )
    return operation_owner(op_id)


def owners(engine: Engine) -> list[str]:
    with unit_of_work(engine, readonly=True) as uow:
        return sorted(uow.session.scalars(select(Reservation.owner)))


def test_the_reaper_releases_only_terminal_missing_or_expired_owners(engine: Engine) -> None:
    city_and_counties(engine)
    running = operation(engine, OperationState.RUNNING)
    finished = operation(engine, OperationState.SUCCEEDED)
    errored = operation(engine, OperationState.ERRORED)
    vanished = operation_owner("00000000-0000-4000-8000-000000000000")
    for owner in (running, finished, errored, vanished, "test-unregistered:not-yet-known"):
        run(engine, lambda uow, o=owner: service.reserve(uow, o, key(COUNTY), {"vcpus": 1}))
    renewable = operation(engine, OperationState.RUNNING)
    run(engine, lambda uow: service.reserve(uow, renewable, key(COUNTY), {"vcpus": 2}, expires_at=T0))

    counts = reap(engine, clock=lambda: T0 - timedelta(seconds=1))
    assert counts | {} == {"checked": 6, "expired": 0, "terminal": 2, "missing": 1, "failed": 0}
    assert owners(engine) == sorted([running, renewable, "test-unregistered:not-yet-known"])
    assert node(engine, CITY)["consumption"] == {"vcpus": 4}

    counts = reap(engine, clock=lambda: T0)  # expires_at reached: released although its owner runs
    assert counts["expired"] == 1
    assert owners(engine) == sorted([running, "test-unregistered:not-yet-known"])
    assert_consistent(engine)


def test_usage_drift_is_recorded_not_applied_until_an_operator_says_so(engine: Engine) -> None:
    city_and_counties(engine, city_vcpus=10)
    allocation = run(engine, lambda uow: service.read_chain(uow, key(COUNTY))).leaf.allocation_id
    assert allocation is not None
    run(engine, lambda uow: service.reserve(uow, "operation:a", key(COUNTY), {"vcpus": 4}))
    run(engine, lambda uow: service.commit(uow, "operation:a"))

    report = run(engine, lambda uow: usage.report_usage(uow, allocation, {"vcpus": 12}, "openstack"))
    assert report is not None and report.drift == {"vcpus": 8}
    assert node(engine, COUNTY)["used"] == {"vcpus": 4}, "a report never overwrites the ledger"
    again = run(engine, lambda uow: usage.report_usage(uow, allocation, {"vcpus": 12}, "openstack"))
    assert again is not None and again.id == report.id, "one open report per allocation and source"

    with unit_of_work(engine, readonly=True) as uow:
        recorded = uow.session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("quota.drift%"))).all()
    assert recorded == ["quota.drift-recorded"], "an unchanged drift is not audited again"

    run(engine, lambda uow: usage.apply_report(uow, report.id, "backend is right"))
    county = node(engine, COUNTY)
    assert county["used"] == {"vcpus": 12}
    assert node(engine, CITY)["over_limit"] == ["vcpus"], "reality above the limit is marked, not refused"
    with pytest.raises(Conflict):
        run(engine, lambda uow: usage.apply_report(uow, report.id))
    assert run(engine, lambda uow: usage.report_usage(uow, allocation, {"vcpus": 12}, "openstack")) is None
    assert_consistent(engine)


def test_a_later_agreeing_measurement_resolves_the_drift(engine: Engine) -> None:
    city_and_counties(engine)
    allocation = run(engine, lambda uow: service.read_chain(uow, key(COUNTY))).leaf.allocation_id
    assert allocation is not None
    report = run(engine, lambda uow: usage.report_usage(uow, allocation, {"volume_gb": 5}, "openstack"))
    assert report is not None
    assert run(engine, lambda uow: usage.report_usage(uow, allocation, {}, "openstack")) is None
    with unit_of_work(engine, readonly=True, principal=ADMIN) as uow:
        rows, _ = usage.open_reports(uow, after=None, limit=10)
    assert rows == []


def test_auto_apply_is_explicit_and_audited(engine: Engine) -> None:
    city_and_counties(engine)
    allocation = run(engine, lambda uow: service.read_chain(uow, key(COUNTY))).leaf.allocation_id
    assert allocation is not None
    report = run(engine, lambda uow: usage.report_usage(uow, allocation, {"vcpus": 3}, "k8s", auto_apply=True))
    assert report is not None and report.status == "applied" and report.resolved_by == "k8s (auto-apply)"
    assert node(engine, COUNTY)["used"] == {"vcpus": 3}


def scrape(engine: Engine, depth: int) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QuotaCollector(engine, max_depth=depth))
    return generate_latest(registry).decode()


def test_quota_metrics_are_labelled_and_bounded_by_depth(engine: Engine) -> None:
    city_and_counties(engine, city_vcpus=100)
    run(engine, lambda uow: service.reserve(uow, "operation:m", key(COUNTY), {"vcpus": 7}))
    run(engine, lambda uow: service.commit(uow, "operation:m", {"vcpus": 3}))
    text = scrape(engine, depth=1)
    assert (
        'chutian_quota_limit{cloud="egov",region="wuhan",resource="vcpus",tenant="wuhan",tenant_level="city"} 100.0'
        in text
    )
    assert (
        'chutian_quota_limit{cloud="",region="wuhan",resource="vcpus",tenant="",tenant_level="region"} 80000.0' in text
    )
    assert 'tenant="jiangan"' not in text, "counties stay out at depth 1"
    deeper = scrape(engine, depth=2)
    assert (
        'chutian_quota_used{cloud="egov",region="wuhan",resource="vcpus",tenant="jiangan",tenant_level="district"} 3.0'
        in deeper
    )
    labels = 'cloud="egov",region="wuhan",resource="vcpus",tenant="jiangan",tenant_level="district"'
    assert f"chutian_quota_reserved{{{labels}}} 4.0" in deeper
