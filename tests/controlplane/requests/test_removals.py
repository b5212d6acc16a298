"""Volume backups, deletions and allocation retirement on the simulated backend: the state
machine, the refusals, the ledger before and after, and retries that find half the work done."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from controlplane.db.uow import unit_of_work
from controlplane.errors import Conflict
from controlplane.ledger.models import Allocation
from controlplane.operations.models import Operation
from controlplane.tenants.models import Tenant
from provisioners.simulated import SimulatedCloud
from tests.controlplane.helpers import assert_problem
from tests.controlplane.ledger.helpers import allocate, assert_consistent, node
from tests.controlplane.requests.conftest import CITY, CLOUD, COUNTY, REGION, SIBLING, World

VOLUME = {"kind": "volume", "size_gb": 10}


def cloud(world: World) -> SimulatedCloud:
    return SimulatedCloud(world.worker.settings.data_dir / "simulated-cloud.sqlite3")


def fulfilled(world: World, spec: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    req = world.create(spec, **extra)
    world.verb(world.requester, req["id"], "submit")
    final = world.approve_all(req["id"])
    assert final["state"] == "provisioning", final
    assert world.run_operation(final["operation"]) == "succeeded"
    done = world.requester.get(f"/v1/requests/{req['id']}").json()
    assert done["state"] == "succeeded", done
    return done


def acting_on(world: World, kind: str, target: str, **spec: Any) -> dict[str, Any]:
    """A backup or deletion draft: no system named, it takes its target's."""
    field = "volume" if kind == "volume-backup" else "target"
    return world.create({"kind": kind, field: target, **spec}, system=None, declaration=None)


def post(world: World, body: dict[str, Any], client: TestClient | None = None) -> Any:
    return (client or world.requester).post(
        "/v1/requests", json={"tenant": COUNTY, "cloud": CLOUD, "region": REGION, **body}
    )


def used(world: World, path: str = COUNTY) -> dict[str, int]:
    return node(world.engine, path, CLOUD, REGION)["used"]


def test_volume_backup_is_charged_as_its_volume_and_deletions_give_everything_back(world: World) -> None:
    volume = fulfilled(world, VOLUME)
    assert used(world) == {"volume_gb": 10, "volumes": 1}
    backup = acting_on(world, "volume-backup", volume["id"], name="nightly")
    assert backup["delta"] == {"backup_gb": 10} and backup["system"] == volume["system"]
    assert backup["target"] == volume["id"]
    submitted = world.verb(world.requester, backup["id"], "submit").json()
    assert node(world.engine, COUNTY, CLOUD, REGION)["reserved"] == {"backup_gb": 10}
    assert [s["role"] for s in submitted["steps"]] == ["tenant-admin", "approver"], "a backup is admitted like any"
    final = world.approve_all(backup["id"])
    assert world.run_operation(final["operation"]) == "succeeded"
    assert used(world) == {"volume_gb": 10, "volumes": 1, "backup_gb": 10}
    backup_tag, volume_tag = f"req-{backup['id']}-0", f"req-{volume['id']}-0"
    assert cloud(world).find(backup_tag) is not None

    # the volume cannot be deleted while a deletion of it is open; the backup can
    deletion = acting_on(world, "deletion", backup["id"])
    assert deletion["delta"] == {}
    routed = world.verb(world.requester, deletion["id"], "submit").json()
    assert [(s["order"], s["role"], s["node"]) for s in routed["steps"]] == [(1, "tenant-admin", COUNTY)]
    second = post(world, {"spec": {"kind": "deletion", "target": backup["id"]}})
    assert assert_problem(second, 409)["blocking_request"] == deletion["id"]
    approved = world.verb(world.county_admin, deletion["id"], "approve").json()
    assert approved["state"] == "provisioning"
    assert world.run_operation(approved["operation"]) == "succeeded"
    assert world.requester.get(f"/v1/requests/{deletion['id']}").json()["state"] == "succeeded"
    retired = world.requester.get(f"/v1/requests/{backup['id']}").json()
    assert retired["state"] == "retired" and retired["verbs"] == []
    assert retired["transitions"][-1]["actor"] == f"request:{deletion['id']}"
    assert cloud(world).find(backup_tag) is None
    assert used(world) == {"volume_gb": 10, "volumes": 1}, "backup_gb given back, once"

    # deleted already: refused, naming the state
    again = post(world, {"spec": {"kind": "deletion", "target": backup["id"]}})
    assert assert_problem(again, 409)["current_state"] == "retired"
    # a backup of a deleted volume is refused too
    gone = fulfilled(world, {"kind": "deletion", "target": volume["id"]}, system=None, declaration=None)
    assert gone["state"] == "succeeded" and cloud(world).find(volume_tag) is None
    assert used(world) == {} and node(world.engine, COUNTY, CLOUD, REGION)["reserved"] == {}
    late = post(world, {"spec": {"kind": "volume-backup", "volume": volume["id"], "name": "late"}})
    assert assert_problem(late, 409)["current_state"] == "retired"
    assert_consistent(world.engine)


def test_a_volume_with_a_backup_in_flight_is_not_deleted(world: World) -> None:
    volume = fulfilled(world, VOLUME)
    backup = acting_on(world, "volume-backup", volume["id"], name="weekly")
    world.verb(world.requester, backup["id"], "submit")  # pending approval
    refused = post(world, {"spec": {"kind": "deletion", "target": volume["id"]}})
    assert assert_problem(refused, 409)["blocking_request"] == backup["id"]


def test_refusals_name_what_is_wrong(world: World, api_as: Callable[..., TestClient]) -> None:
    draft = world.create(VOLUME)
    problem = assert_problem(post(world, {"spec": {"kind": "deletion", "target": draft["id"]}}), 409)
    assert problem["current_state"] == "draft", "only a fulfilled request can be deleted"
    assert_problem(post(world, {"spec": {"kind": "deletion", "target": str(uuid.uuid4())}}), 404)
    # another tenant's fulfilled request: 404, whoever asks (even someone who can see both)
    sibling = api_as("tenant-member", SIBLING)
    theirs = sibling.post(
        "/v1/requests",
        json={
            "tenant": SIBLING,
            "cloud": CLOUD,
            "region": REGION,
            "new_system": {"name": "theirs", "mlps_level": 2},
            "declaration": {"items": [{"name": "x", "sharing": "unconditional", "catalogue_ref": "HB-1"}]},
            "spec": VOLUME,
        },
    ).json()
    city_admin = api_as("tenant-admin", CITY)
    for client in (world.requester, city_admin):
        assert_problem(post(world, {"spec": {"kind": "deletion", "target": theirs["id"]}}, client), 404)
    # kinds that made nothing, and targets of the wrong kind or place
    volume = fulfilled(world, VOLUME)
    quota = fulfilled(world, {"kind": "quota-change", "limits": {"vcpus": 12}})
    problem = assert_problem(post(world, {"spec": {"kind": "deletion", "target": quota["id"]}}), 422)
    assert problem["field"] == "spec.target"
    vm = fulfilled(world, {"kind": "vm", "flavor": "c1.small", "image": "kylin-v10", "count": 1})
    problem = assert_problem(post(world, {"spec": {"kind": "volume-backup", "volume": vm["id"], "name": "b"}}), 422)
    assert problem["field"] == "spec.volume"
    elsewhere = {"region": "xiangyang", "spec": {"kind": "deletion", "target": volume["id"]}}
    assert_problem(post(world, elsewhere), 422)
    other_system = {"system": quota["system"], "spec": {"kind": "deletion", "target": volume["id"]}}
    assert assert_problem(post(world, other_system), 422)["field"] == "system"
    # a fulfilled target deleted behind a draft's back: the draft's submit is refused
    first = acting_on(world, "deletion", vm["id"])
    world.verb(world.requester, first["id"], "cancel")
    fulfilled(world, {"kind": "deletion", "target": vm["id"]}, system=None, declaration=None)
    stale = world.create({"kind": "deletion", "target": volume["id"]}, system=None, declaration=None)
    with unit_of_work(world.engine) as uow:  # the volume was deleted meanwhile (by another path)
        from controlplane.requests.models import Request

        uow.session.execute(update(Request).where(Request.id == uuid.UUID(volume["id"])).values(state="retired"))
    assert assert_problem(world.verb(world.requester, stale["id"], "submit"), 409)["current_state"] == "retired"
    assert world.requester.get(f"/v1/requests/{stale['id']}").json()["state"] == "draft"


def _due_now(world: World, op_id: str) -> None:
    """The parked retry's time has come (tests do not sleep for backoff)."""
    with unit_of_work(world.engine) as uow:
        uow.session.execute(
            update(Operation)
            .where(Operation.id == uuid.UUID(op_id))
            .values(next_attempt_at=world.worker.clock() - timedelta(seconds=1))
        )


def test_a_retried_deletion_finds_half_the_work_done_and_releases_once(world: World) -> None:
    vm = fulfilled(world)  # two servers
    assert used(world) == {"vcpus": 4, "ram_mb": 8192, "instances": 2}
    deletion = acting_on(world, "deletion", vm["id"])
    world.verb(world.requester, deletion["id"], "submit")
    op = world.verb(world.county_admin, deletion["id"], "approve").json()["operation"]
    # the backend answers the second delete with a 503: the first server is gone, the step is retried
    world.worker.extras["simulated"] = SimulatedCloud(cloud(world).path, busy_every=2)
    assert world.run_operation(op) == "parked"
    assert cloud(world).count("server", f"{COUNTY}/{CLOUD}") == 1
    assert used(world) == {"vcpus": 4, "ram_mb": 8192, "instances": 2}, "nothing released before the step commits"
    assert world.requester.get(f"/v1/requests/{vm['id']}").json()["state"] == "succeeded"
    world.worker.extras["simulated"] = SimulatedCloud(cloud(world).path)
    _due_now(world, op)
    assert world.run_operation(op) == "succeeded"
    assert cloud(world).count("server", f"{COUNTY}/{CLOUD}") == 0
    assert used(world) == {}, "released exactly once"
    assert world.requester.get(f"/v1/requests/{vm['id']}").json()["state"] == "retired"
    assert_consistent(world.engine)


def _allocation(world: World, path: str) -> Allocation:
    with unit_of_work(world.engine, readonly=True) as uow:
        tenant_id = uow.session.scalar(select(Tenant.id).where(Tenant.path == path))
        return uow.session.scalars(
            select(Allocation).where(
                Allocation.tenant_id == tenant_id, Allocation.cloud == CLOUD, Allocation.region == REGION
            )
        ).one()


def test_allocation_retirement_deletes_everything_and_releases_the_ledger(
    world: World, api_as: Callable[..., TestClient]
) -> None:
    vm = fulfilled(world)
    volume = fulfilled(world, VOLUME, system=vm["system"])
    backup = fulfilled(world, {"kind": "volume-backup", "volume": volume["id"], "name": "b1"}, system=None)
    before = {"vcpus": 4, "ram_mb": 8192, "instances": 2, "volume_gb": 10, "volumes": 1, "backup_gb": 10}
    assert used(world) == before
    city_before = node(world.engine, CITY, CLOUD, REGION)["consumption"]
    assert all(city_before.get(r, 0) >= a for r, a in before.items())

    # the city cannot go while its districts' allocations live
    city = {"tenant": CITY, "new_system": {"name": "city-exit", "mlps_level": 2}}
    problem = assert_problem(post(world, {**city, "spec": {"kind": "allocation-retirement"}}, world.operator), 409)
    assert problem["blocker"] == f"{COUNTY}/{CLOUD}/{REGION}"
    # a request in flight on the allocation blocks it too
    retirement = world.create({"kind": "allocation-retirement"}, system=vm["system"], declaration=None)
    busy = world.create(VOLUME, system=vm["system"])
    world.verb(world.requester, busy["id"], "submit")
    problem = assert_problem(world.verb(world.requester, retirement["id"], "submit"), 409)
    assert problem["blocking_request"] == busy["id"]
    world.verb(world.requester, busy["id"], "cancel")

    submitted = world.verb(world.requester, retirement["id"], "submit").json()
    assert [(s["role"], s["node"]) for s in submitted["steps"]] == [("tenant-admin", COUNTY), ("operator", "hubei")]
    world.verb(world.county_admin, retirement["id"], "approve")
    op = world.verb(world.operator, retirement["id"], "approve").json()["operation"]
    world.worker.extras["simulated"] = SimulatedCloud(cloud(world).path, busy_every=3)  # a 503 mid-way
    assert world.run_operation(op) == "parked"
    assert _allocation(world, COUNTY).status == "retiring", "no reservation is admitted from the first step on"
    refused = world.create(VOLUME, system=vm["system"])
    assert_problem(world.verb(world.requester, refused["id"], "submit"), 409)
    world.worker.extras["simulated"] = SimulatedCloud(cloud(world).path)
    _due_now(world, op)
    assert world.run_operation(op) == "succeeded"

    assert world.requester.get(f"/v1/requests/{retirement['id']}").json()["state"] == "succeeded"
    for made in (vm, volume, backup):
        assert world.requester.get(f"/v1/requests/{made['id']}").json()["state"] == "retired"
    assert cloud(world).count("server", f"{COUNTY}/{CLOUD}") == 0
    county = node(world.engine, COUNTY, CLOUD, REGION)
    assert (county["used"], county["reserved"], county["consumption"]) == ({}, {}, {})
    assert county["limits"] == {"vcpus": 0}, "a retired node admits nothing"
    city_after = node(world.engine, CITY, CLOUD, REGION)["consumption"]
    assert {r: city_before.get(r, 0) - city_after.get(r, 0) for r in before} == before
    allocation = _allocation(world, COUNTY)
    assert allocation.status == "retired" and retirement["id"] in (allocation.status_reason or "")
    assert_consistent(world.engine)

    # once retired: no second retirement, no deletion of what it deleted, no new reservation
    again = post(world, {"system": vm["system"], "spec": {"kind": "allocation-retirement"}})
    assert assert_problem(again, 409)["current_state"] == "retired"
    assert assert_problem(post(world, {"spec": {"kind": "deletion", "target": vm["id"]}}), 409)
    assert_problem(world.verb(world.requester, refused["id"], "submit"), 409)
    # then the other district and the city may go; a retired allocation takes no children
    for path in (SIBLING, CITY):
        admin = api_as("tenant-admin", path)
        req = world.create({"kind": "allocation-retirement"}, tenant=path, client=admin)
        world.verb(admin, req["id"], "submit")
        world.verb(admin, req["id"], "approve")
        assert world.run_operation(world.verb(world.operator, req["id"], "approve").json()["operation"]) == "succeeded"
    with pytest.raises(Conflict, match="retired"):
        allocate(world.engine, "hubei.wuhan.qiaokou", "shared", {}, cloud=CLOUD, region=REGION)


def test_retiring_a_slice_gives_it_back_to_the_parent(world: World, api_as: Callable[..., TestClient]) -> None:
    qiaokou = "hubei.wuhan.qiaokou"
    allocate(world.engine, qiaokou, "slice", {"volume_gb": 100, "volumes": 5}, cloud=CLOUD, region=REGION)
    assert node(world.engine, CITY, CLOUD, REGION)["consumption"].get("volume_gb") == 100
    admin = api_as("tenant-admin", qiaokou)
    req = world.create({"kind": "allocation-retirement"}, tenant=qiaokou, client=admin)
    world.verb(admin, req["id"], "submit")
    world.verb(admin, req["id"], "approve")
    op = world.verb(world.operator, req["id"], "approve").json()["operation"]
    assert world.run_operation(op) == "succeeded"
    assert node(world.engine, qiaokou, CLOUD, REGION)["limits"] == {"volume_gb": 0, "volumes": 0}
    assert node(world.engine, CITY, CLOUD, REGION)["consumption"].get("volume_gb", 0) == 0
    assert_consistent(world.engine)
