"""The province's rules at submit: each gate has a refusing and a passing case."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from controlplane.ledger import service as ledger
from controlplane.operations import engine as ops
from provisioners.errors import BackendQuotaExceeded, ProvisionerError
from provisioners.simulated import ServerSpec, SimulatedCloud
from tests.controlplane.helpers import assert_problem
from tests.controlplane.ledger.helpers import allocate, node, run
from tests.controlplane.requests.conftest import CLOUD, COUNTY, REGION, World

NO_DECLARATION = None


def test_new_system_without_declaration_cannot_be_submitted(world: World) -> None:
    req = world.create(declaration=NO_DECLARATION)
    problem = assert_problem(world.verb(world.requester, req["id"], "submit"), 422, "policy-violation")
    assert problem["field"] == "declaration" and "数据共享申报" in problem["detail"]
    assert world.requester.get(f"/v1/requests/{req['id']}").json()["state"] == "draft"


def test_declaration_items_must_be_complete(world: World) -> None:
    bad = {
        "items": [
            {"name": "户籍", "sharing": "none", "catalogue_ref": "HB-1"},
            {"name": "社保", "sharing": "conditional", "catalogue_ref": ""},
        ]
    }
    req = world.create(declaration=bad)
    problem = assert_problem(world.verb(world.requester, req["id"], "submit"), 422)
    assert set(problem["missing"]) == {
        "declaration.items[0].legal_basis: 不予共享 needs the law or regulation that forbids sharing",
        "declaration.items[1].catalogue_ref: the data catalogue reference (目录编号) is required",
        "declaration.items[1].owner: 有条件共享 needs the data owner (a tenant path) to countersign",
    }


def test_conditional_sharing_adds_the_data_owner_to_the_route(world: World) -> None:
    good = {
        "items": [
            {"name": "社保", "sharing": "conditional", "catalogue_ref": "HB-RS-7", "owner": "hubei.czt"},
            {"name": "户籍", "sharing": "none", "catalogue_ref": "HB-GA-1", "legal_basis": "《居民身份证法》"},
        ]
    }
    req = world.create(declaration=good)
    submitted = world.verb(world.requester, req["id"], "submit").json()
    assert submitted["state"] == "pending_approval"
    assert ("approver", "hubei.czt", "data-owner") in {(s["role"], s["node"], s["group"]) for s in submitted["steps"]}


def test_mlps3_is_refused_without_a_backup_enrolment(world: World) -> None:
    req = world.create(new_system={"name": "grade3", "mlps_level": 3, "filing_ref": "42010099001-20001"})
    problem = assert_problem(world.verb(world.requester, req["id"], "submit"), 422)
    assert any("backup-enrolment" in m for m in problem["missing"])


def test_mlps3_with_a_backup_enrolment_passes_and_needs_a_security_officer(world: World) -> None:
    # the health cloud runs in wuhan and in the DR region yichang, where backup_gb is charged
    for region in ("wuhan", "yichang"):
        allocate(world.engine, "hubei.wuhan", "shared", {}, cloud="health", region=region)
        allocate(world.engine, COUNTY, "shared", {}, cloud="health", region=region)
    grade3 = {"name": "grade3", "mlps_level": 3, "filing_ref": "42010099001-20001"}
    first = world.create(new_system=grade3, cloud="health")
    backup_spec = {
        "kind": "backup-enrolment",
        "name": "grade3-db",
        "paths": ["/data"],
        "target_region": "yichang",
        "size_gb": 10,
    }
    slack = world.create(backup_spec, system=first["system"], cloud="health")  # the default RPO is 24 h
    problem = assert_problem(world.verb(world.requester, slack["id"], "submit"), 422)
    assert problem["field"] == "spec.rpo_target_s", "a level-3 system may promise at most 4 h"
    backup = world.create({**backup_spec, "rpo_target_s": 4 * 3600}, system=first["system"], cloud="health")
    assert world.verb(world.requester, backup["id"], "submit").json()["state"] == "pending_approval"
    vm = world.verb(world.requester, first["id"], "submit").json()
    assert vm["state"] == "pending_approval", vm
    assert ("security-officer", "hubei") in {(s["role"], s["node"]) for s in vm["steps"]}


def test_mlps_level_must_be_assessed_in_the_region(
    world: World, engine: Engine, api_as: Callable[..., TestClient]
) -> None:
    # xiangyang is assessed for levels 2 and 3 only; the education cloud runs there too
    allocate(engine, "hubei.wuhan", "shared", {}, cloud=CLOUD, region="xiangyang")
    allocate(engine, COUNTY, "shared", {}, cloud=CLOUD, region="xiangyang")
    with_backup = world.create(
        new_system={"name": "grade4", "mlps_level": 4, "filing_ref": "42010099001-40001"}, region="xiangyang"
    )
    problem = assert_problem(world.verb(world.requester, with_backup["id"], "submit"), 422)
    assert any("assessed for MLPS levels [2, 3]" in m for m in problem["missing"])


def test_errored_without_compensation_keeps_the_reservation(world: World) -> None:
    class CannotUndo(SimulatedCloud):
        def ensure_server(self, spec: ServerSpec):  # type: ignore[no-untyped-def]
            if spec.tag.endswith("-1"):
                raise BackendQuotaExceeded("quota exceeded for instances", backend="simulated")
            return super().ensure_server(spec)

        def delete_by_tag(self, tag: str) -> bool:
            raise ProvisionerError("backend refused the delete", backend="simulated")

    world.worker.extras["simulated"] = CannotUndo(world.worker.settings.data_dir / "simulated-cloud.sqlite3")
    req = world.create()  # two servers: the second is refused, the first cannot be deleted
    world.verb(world.requester, req["id"], "submit")
    final = world.approve_all(req["id"])
    assert ops.run(world.worker, __import__("uuid").UUID(final["operation"])) == "errored"
    errored = world.requester.get(f"/v1/requests/{req['id']}").json()
    assert errored["state"] == "errored"
    held = run(world.engine, lambda uow: ledger.get_reservation(uow, f"request:{req['id']}"))
    assert held is not None and held.amounts, "the reservation stays for the operator"
    assert node(world.engine, COUNTY, CLOUD, REGION)["reserved"].get("vcpus") == 4
    queue = world.operator.get("/v1/requests?state=errored").json()["items"]
    assert [r["id"] for r in queue] == [req["id"]], "the operator queue lists it"
    # only an operator may retry an errored request
    assert_problem(world.verb(world.requester, req["id"], "retry"), 403)
