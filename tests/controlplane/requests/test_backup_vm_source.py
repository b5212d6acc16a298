"""A VM source is checked at submit (a succeeded VM request of the tenant, one named server) and,
without an append-only gateway the VM could write through, its run fails saying why instead of
pretending. The agent's run itself is tested for real in tests/integration/dr/test_dr_vm_agent.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from controlplane.backup import runner
from tests.controlplane.helpers import assert_problem
from tests.controlplane.requests.conftest import COUNTY, SIBLING, World
from tests.controlplane.requests.test_backup_enrolment import _enrol, _restic, _spec  # noqa: F401

VM = {"kind": "vm", "flavor": "c2.medium", "image": "kylin-v10"}


def _vm(world: World, count: int) -> str:
    req = world.create({**VM, "count": count})
    assert world.verb(world.requester, req["id"], "submit").status_code == 200
    assert world.run_operation(world.approve_all(req["id"])["operation"]) == "succeeded"
    return str(req["id"])


def _submit(world: World, vm: str) -> dict[str, object]:
    req = world.create(_spec(Path("/srv/data"), name="other", vm=vm), cloud="health")
    return assert_problem(world.verb(world.requester, req["id"], "submit"), 422)


def test_vm_must_name_one_succeeded_server_of_the_tenant(
    world: World, api_as: Callable[..., TestClient], tmp_path: Path
) -> None:
    pair = _vm(world, count=2)
    request = _enrol(world, api_as, Path("/srv/data"), vm=f"{pair}/1")  # (also makes the allocations)
    assert request["state"] == "succeeded", request
    assert "give the VM request's id" in str(_submit(world, "not-an-id")["detail"])
    assert "no VM request" in str(_submit(world, str(uuid.uuid4()))["detail"])
    assert "name one as" in str(_submit(world, pair)["detail"])  # two servers: which one?
    assert "0-1" in str(_submit(world, f"{pair}/2")["detail"])
    draft = world.create({**VM, "count": 1})["id"]
    assert "is draft, not succeeded" in str(_submit(world, draft)["detail"])
    neighbour = world.create({**VM, "count": 1}, client=api_as("tenant-member", SIBLING), tenant=SIBLING)["id"]
    assert "no VM request" in str(_submit(world, neighbour)["detail"])  # another tenant's VM


def test_without_a_gateway_a_vm_run_fails_saying_why(
    world: World, api_as: Callable[..., TestClient], tmp_path: Path
) -> None:
    vm = _vm(world, count=1)
    _enrol(world, api_as, Path("/srv/data"), vm=vm)
    admin = api_as("tenant-admin", COUNTY)
    policy = admin.get("/v1/backup-policies").json()["items"][0]
    started = admin.post(f"/v1/backup-policies/{policy['id']}:run").json()

    assert runner.execute_run(world.worker, uuid.UUID(started["id"])) == "failed"
    run = admin.get(f"/v1/backup-runs/{started['id']}").json()
    assert "append-only gateway" in run["reason"], run
