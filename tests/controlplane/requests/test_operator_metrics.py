"""The operator metrics issue #10 added, read from rows: approved-but-not-provisioned demand
and backend errors (a counter a restart never resets)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.metrics import build_registry
from provisioners.simulated import SimulatedCloud
from tests.controlplane.requests.conftest import CLOUD, REGION, World


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = generate_latest(registry).decode()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_demand_counts_approved_requests_until_they_are_provisioned(world: World, app: Any) -> None:
    registry = app.state.ctx.registry
    req = world.create()
    world.verb(world.requester, req["id"], "submit")
    assert samples(registry, "chutian_capacity_demand") == {}, "pending approval is not yet demand"
    final = world.approve_all(req["id"])
    assert final["state"] == "provisioning"
    demand = samples(registry, "chutian_capacity_demand")
    assert demand[(("cloud", CLOUD), ("region", REGION), ("resource", "vcpus"))] == 4.0
    world.run_operation(final["operation"])
    assert samples(registry, "chutian_capacity_demand") == {}, "provisioned: the demand series vanish"


def test_backend_errors_are_counted_from_rows_and_survive_a_new_registry(world: World, app: Any) -> None:
    world.worker.extras["simulated"] = SimulatedCloud(
        world.worker.settings.data_dir / "simulated-cloud.sqlite3", quota_instances=1
    )
    req = world.create()
    world.verb(world.requester, req["id"], "submit")
    final = world.approve_all(req["id"])
    assert world.run_operation(final["operation"]) == "failed"
    key = (("backend", "simulated"), ("kind", "quota"))
    assert samples(app.state.ctx.registry, "chutian_backend_errors_total")[key] == 1.0
    fresh, _ = build_registry(world.engine)  # what a restarted process would serve
    assert samples(fresh, "chutian_backend_errors_total")[key] == 1.0


def test_approval_latency_is_a_histogram_of_approved_requests(world: World, app: Any) -> None:
    req = world.create()
    world.verb(world.requester, req["id"], "submit")
    assert samples(app.state.ctx.registry, "chutian_request_approval_seconds_count") == {}
    world.approve_all(req["id"])
    counts = samples(app.state.ctx.registry, "chutian_request_approval_seconds_count")
    assert counts == {(("kind", "vm"),): 1.0}


def test_quota_nodes_are_counted_by_mode_at_every_depth(world: World, app: Any) -> None:
    nodes = samples(app.state.ctx.registry, "chutian_quota_nodes")
    by_level: dict[str, float] = {}
    for labels, value in nodes.items():
        if dict(labels)["region"] == REGION:
            level = dict(labels)["tenant_level"]
            by_level[level] = by_level.get(level, 0.0) + value
    assert by_level["region"] == 1.0
    assert by_level.get("district", 0) >= 1, "districts are counted although their quota series are not exported"
    quota_levels = {dict(k)["tenant_level"] for k in samples(app.state.ctx.registry, "chutian_quota_used")}
    assert "district" not in quota_levels


def test_oldest_running_is_zero_once_nothing_runs(world: World, app: Any) -> None:
    req = world.create()
    world.verb(world.requester, req["id"], "submit")
    final = world.approve_all(req["id"])
    world.run_operation(final["operation"])
    ages = samples(app.state.ctx.registry, "chutian_operation_oldest_running_seconds")
    assert ages[(("kind", "request.vm"),)] == 0.0
