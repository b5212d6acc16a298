"""Requests from draft to a running server, with the ledger through the request's life."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controlplane.ledger import service as ledger
from controlplane.ledger.tasks import reap as reap_reservations
from provisioners.simulated import SimulatedCloud
from tests.controlplane.helpers import assert_problem
from tests.controlplane.ledger.helpers import node, run
from tests.controlplane.requests.conftest import CLOUD, COUNTY, REGION, World


def reserved(world: World) -> int:
    return node(world.engine, COUNTY, CLOUD, REGION)["reserved"].get("vcpus", 0)


def used(world: World) -> int:
    return node(world.engine, COUNTY, CLOUD, REGION)["used"].get("vcpus", 0)


def test_vm_request_end_to_end(world: World) -> None:
    draft = world.create()
    assert draft["state"] == "draft" and draft["delta"] == {"vcpus": 4, "ram_mb": 8192, "instances": 2}
    assert reserved(world) == 0, "a draft reserves nothing"
    # a draft is invisible to approvers
    assert world.lead_approver.get("/v1/requests?inbox=true").json()["items"] == []
    submitted = world.verb(world.requester, draft["id"], "submit").json()
    assert submitted["state"] == "pending_approval", submitted
    assert [(s["order"], s["role"], s["node"]) for s in submitted["steps"]] == [
        (1, "tenant-admin", COUNTY),
        (2, "approver", "hubei.jyt"),
    ]
    assert reserved(world) == 4
    # step 2 cannot go before step 1
    assert_problem(world.verb(world.lead_approver, draft["id"], "approve"), 403)
    assert [r["id"] for r in world.county_admin.get("/v1/requests?inbox=true").json()["items"]] == [draft["id"]]
    world.verb(world.county_admin, draft["id"], "approve")
    approved = world.verb(world.lead_approver, draft["id"], "approve").json()
    assert approved["state"] == "provisioning" and approved["operation"]
    assert [t["to_state"] for t in approved["transitions"]] == [
        "submitted",
        "pending_approval",
        "approved",
        "provisioning",
    ]
    assert world.run_operation(approved["operation"]) == "succeeded"
    done = world.requester.get(f"/v1/requests/{draft['id']}").json()
    assert done["state"] == "succeeded"
    assert used(world) == 4 and reserved(world) == 0, "succeeded: nothing left reserved"
    cloud = SimulatedCloud(world.worker.settings.data_dir / "simulated-cloud.sqlite3")
    assert cloud.count("server", f"{COUNTY}/{CLOUD}") == 2
    system = world.requester.get(f"/v1/systems/{done['system']}").json()
    assert system["status"] == "approved", "approving the first request approves the system"


def test_submit_over_quota_is_409_naming_the_node_and_stays_draft(world: World) -> None:
    big = world.create({"kind": "vm", "flavor": "c4.large", "image": "kylin-v10", "count": 5})  # 20 > 16
    problem = assert_problem(world.verb(world.requester, big["id"], "submit"), 409)
    assert problem["node"].startswith(COUNTY) and problem["resource"] == "vcpus"
    assert world.requester.get(f"/v1/requests/{big['id']}").json()["state"] == "draft"
    assert reserved(world) == 0


def test_return_releases_and_resubmit_reserves_again(world: World) -> None:
    req = world.create()
    world.verb(world.requester, req["id"], "submit")
    assert_problem(world.verb(world.county_admin, req["id"], "return"), 422)  # a reason is required
    returned = world.verb(world.county_admin, req["id"], "return", "use c1.small").json()
    assert returned["state"] == "returned" and reserved(world) == 0
    edited = world.requester.patch(
        f"/v1/requests/{req['id']}",
        json={"spec": {"kind": "vm", "flavor": "c1.small", "image": "kylin-v10", "count": 2}},
    )
    assert edited.status_code == 200 and edited.json()["delta"]["vcpus"] == 2
    again = world.verb(world.requester, req["id"], "submit").json()
    assert again["state"] == "pending_approval" and again["round"] == 2 and reserved(world) == 2
    rounds = {s["round"] for s in again["steps"]}
    assert rounds == {1, 2}, "earlier rounds stay visible"


def test_reject_and_cancel_release(world: World) -> None:
    one, two = world.create(), world.create()
    for r in (one, two):
        world.verb(world.requester, r["id"], "submit")
    assert reserved(world) == 8
    assert_problem(world.verb(world.county_admin, one["id"], "reject"), 422)
    assert world.verb(world.county_admin, one["id"], "reject", "not needed").json()["state"] == "rejected"
    assert world.verb(world.requester, two["id"], "cancel").json()["state"] == "cancelled"
    assert reserved(world) == 0


def test_approval_reserves_again_if_the_hold_was_lost(world: World) -> None:
    req = world.create()
    world.verb(world.requester, req["id"], "submit")
    run(world.engine, lambda uow: ledger.release(uow, f"request:{req['id']}", reason="lost"))  # e.g. an operator
    assert reserved(world) == 0
    world.verb(world.county_admin, req["id"], "approve")
    world.verb(world.lead_approver, req["id"], "approve")
    assert reserved(world) == 4


def test_a_week_in_pending_approval_keeps_the_reservation(world: World) -> None:
    req = world.create()
    world.verb(world.requester, req["id"], "submit")
    later = world.worker.clock() + timedelta(days=7)
    reap_reservations(world.engine, clock=lambda: later)
    assert reserved(world) == 4
    assert world.requester.get(f"/v1/requests/{req['id']}").json()["state"] == "pending_approval"


def test_backend_quota_failure_compensates_and_releases(world: World) -> None:
    world.worker.extras["simulated"] = SimulatedCloud(
        world.worker.settings.data_dir / "simulated-cloud.sqlite3", quota_instances=1
    )
    req = world.create()  # two servers; the backend allows one
    world.verb(world.requester, req["id"], "submit")
    final = world.approve_all(req["id"])
    assert world.run_operation(final["operation"]) == "failed"
    failed = world.requester.get(f"/v1/requests/{req['id']}").json()
    assert failed["state"] == "failed" and "quota" in failed["last_reason"]
    assert reserved(world) == 0 and used(world) == 0, "nothing left behind in the ledger"
    assert world.worker.extras["simulated"].count("server", f"{COUNTY}/{CLOUD}") == 0
    # the tenant may retry once it has fixed the cause
    world.worker.extras["simulated"] = SimulatedCloud(world.worker.settings.data_dir / "simulated-cloud.sqlite3")
    retried = world.verb(world.requester, req["id"], "retry").json()
    assert retried["state"] == "provisioning" and reserved(world) == 4
    assert world.run_operation(retried["operation"]) == "succeeded"


@pytest.mark.parametrize(
    ("verb", "state_after_submit"),
    [("submit", "pending_approval"), ("retry", "pending_approval")],
)
def test_illegal_verbs_are_409_naming_the_state(world: World, verb: str, state_after_submit: str) -> None:
    req = world.create()
    world.verb(world.requester, req["id"], "submit")
    problem = assert_problem(world.verb(world.requester, req["id"], verb), 409, "invalid-transition")
    assert problem["current_state"] == state_after_submit


def test_every_verb_has_an_illegal_state(world: World) -> None:
    draft = world.create()
    for verb in ("approve", "reject", "return", "retry"):
        problem = assert_problem(world.verb(world.county_admin, draft["id"], verb, "x"), 409)
        assert problem["current_state"] == "draft"
    world.verb(world.requester, draft["id"], "cancel")
    problem = assert_problem(world.verb(world.requester, draft["id"], "cancel"), 409)
    assert problem["current_state"] == "cancelled"
    assert_problem(world.verb(world.requester, draft["id"], "submit"), 409)


def test_a_decision_someone_else_made_is_409_and_changes_nothing(world: World, api_as) -> None:  # type: ignore[no-untyped-def]
    req = world.create()
    world.verb(world.requester, req["id"], "submit")
    second_admin = api_as("tenant-admin", COUNTY)
    assert world.verb(world.county_admin, req["id"], "reject", "no").status_code == 200
    problem = assert_problem(world.verb(second_admin, req["id"], "approve"), 409)
    assert problem["current_state"] == "rejected"


def test_step_holder_reads_that_request_only(world: World) -> None:
    req = world.create()
    other = world.create()
    world.verb(world.requester, req["id"], "submit")
    # the lead department's approver holds no role over the county
    assert world.lead_approver.get(f"/v1/requests/{req['id']}").status_code == 200
    assert_problem(world.lead_approver.get(f"/v1/requests/{other['id']}"), 404)
    assert_problem(world.lead_approver.get(f"/v1/tenants/{COUNTY}"), 404)


def test_auto_approval_after_the_system_is_approved(world: World) -> None:
    first = world.create({"kind": "vm", "flavor": "c1.small", "image": "kylin-v10", "count": 1})
    world.verb(world.requester, first["id"], "submit")
    world.approve_all(first["id"])
    small = world.create({"kind": "vm", "flavor": "c1.small", "image": "kylin-v10", "count": 1}, system=first["system"])
    result = world.verb(world.requester, small["id"], "submit").json()
    assert result["state"] == "provisioning" and result["auto_rule"] == "small-vm"
    assert {s["actor"] for s in result["steps"]} == {"auto:small-vm"}


def test_idempotency_key(world: World) -> None:
    body = {
        "tenant": COUNTY,
        "cloud": CLOUD,
        "region": REGION,
        "new_system": {"name": "idem", "mlps_level": 2},
        "spec": {"kind": "volume", "size_gb": 10},
    }
    headers = {"Idempotency-Key": "create-idem-0001"}
    first = world.requester.post("/v1/requests", json=body, headers=headers)
    again = world.requester.post("/v1/requests", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = world.requester.post("/v1/requests", json={**body, "title": "changed"}, headers=headers)
    assert assert_problem(other, 422)["field"] == "Idempotency-Key"
    # another principal may use the same key independently
    assert (
        world.county_admin.post(
            "/v1/requests", json={**body, "new_system": {"name": "idem2", "mlps_level": 2}}, headers=headers
        ).status_code
        == 201
    )


def test_identical_open_request_is_flagged_duplicate(world: World) -> None:
    first = world.create({"kind": "volume", "size_gb": 50})
    second = world.create({"kind": "volume", "size_gb": 50}, system=first["system"])
    assert second["duplicate_of"] == first["id"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"kind": "vm", "flavor": "m8.xlarge", "image": "x"}, "spec.flavor"),  # not offered by education
        ({"kind": "vm", "flavor": "c1.small", "image": "x", "network_zone": "internet"}, "spec.network_zone"),
        ({"kind": "volume", "size_gb": 0}, "spec.volume.size_gb"),
        (
            {"kind": "backup-enrolment", "name": "b", "paths": ["/data"], "target_region": "wuhan", "size_gb": 5},
            "spec.target_region",
        ),
    ],
)
def test_specs_are_checked_against_the_catalogue(world: World, spec: dict, field: str) -> None:
    body = {
        "tenant": COUNTY,
        "cloud": CLOUD,
        "region": REGION,
        "new_system": {"name": "s", "mlps_level": 2},
        "spec": spec,
    }
    problem = assert_problem(world.requester.post("/v1/requests", json=body), 422)
    assert problem["field"] == field


def test_metrics_come_from_rows(world: World, app) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client import generate_latest

    req = world.create()
    world.verb(world.requester, req["id"], "submit")
    final = world.approve_all(req["id"])
    world.run_operation(final["operation"])
    text = generate_latest(app.state.ctx.registry).decode()
    assert 'chutian_requests{kind="vm",state="succeeded"} 1.0' in text
    assert 'chutian_request_transitions_total{from_state="approved",kind="vm",to_state="provisioning"} 1.0' in text
    assert 'chutian_operations{kind="request.vm",state="succeeded"} 1.0' in text
    assert 'chutian_operation_duration_seconds_count{kind="request.vm",result="succeeded"} 1.0' in text


def test_a_retry_while_the_first_is_in_flight_is_409(world: World) -> None:
    from controlplane.errors import Conflict
    from controlplane.requests import idempotency

    args = {
        "principal": "clerk",
        "key": "in-flight-0001",
        "route": "POST /v1/requests",
        "digest": "d" * 64,
        "clock": world.worker.clock,
    }
    assert idempotency.begin(world.engine, **args) is None  # the first attempt is now in flight
    with pytest.raises(Conflict, match="still in flight"):
        idempotency.begin(world.engine, **args)
    idempotency.abandon(world.engine, principal="clerk", key="in-flight-0001")
    assert idempotency.begin(world.engine, **args) is None, "a failed first attempt frees the key"
