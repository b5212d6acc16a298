"""The ``ansible.baseline`` step of VM provisioning, for real: ``baseline.yml`` runs into a
throwaway Debian root through the chroot connection. No VM with an address can run here (the
OpenStack box's fake servers have none), so the test replaces only the host lookup
(``extras["baseline_hosts"]``); the playbook, ansible-runner and the step are the real ones."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlmodel import Session

from controlplane.operations import engine as ops
from controlplane.operations.models import Operation
from controlplane.site_config import Site
from controlplane.worker.runtime import WorkerContext
from provisioners.ansible import AnsibleRunner, Host
from tests.controlplane.requests.conftest import World
from tests.debian_root import COLLECTIONS


def _worker(world: World, *, baseline: bool, root: Path | None) -> WorkerContext:
    site = world.worker.site
    regions = [r.model_copy(update={"baseline": baseline}) if r.code == "wuhan" else r for r in site.regions]
    worker = WorkerContext(
        settings=world.worker.settings,
        engine=world.engine,
        site=Site.model_construct(**{**site.__dict__, "regions": regions}),
        dispatcher=world.worker.dispatcher,
    )
    worker.extras["ansible"] = AnsibleRunner(collections_path=COLLECTIONS)
    if root is not None:

        def hosts(req: Any, tags: list[str]) -> list[Host]:
            return [Host(tag, str(root), {"ansible_connection": "community.general.chroot"}) for tag in tags]

        worker.extras["baseline_hosts"] = hosts
    return worker


def _provision(world: World, worker: WorkerContext, spec: dict[str, Any], mlps_level: int = 2) -> Operation:
    req = world.create(spec, new_system={"name": f"baseline-{uuid.uuid4().hex[:6]}", "mlps_level": mlps_level})
    world.verb(world.requester, req["id"], "submit")
    final = world.approve_all(req["id"])
    assert final["state"] == "provisioning", final
    state = ops.run(worker, uuid.UUID(final["operation"]))
    with Session(world.engine) as session:
        op = session.get(Operation, uuid.UUID(final["operation"]))
    assert op is not None and state == "succeeded", op.last_error if op else None
    return op


def test_a_new_vm_gets_the_mlps_baseline_with_its_ports(world: World, debian_root: Path) -> None:
    worker = _worker(world, baseline=True, root=debian_root)
    spec = {"kind": "vm", "flavor": "c2.medium", "image": "kylin-v10", "count": 1, "tcp_ports": [22, 8443]}

    op = _provision(world, worker, spec)

    assert op.steps_done == ["servers.create", "ansible.baseline"]
    assert op.memo["baseline"].startswith("MLPS 2: ") and "on 1 host(s)" in op.memo["baseline"]
    ruleset = (debian_root / "etc/nftables.conf").read_text()
    assert "policy drop;" in ruleset and "tcp dport { 22, 8443 } accept" in ruleset
    assert (debian_root / "etc/ssh/sshd_config.d/10-chutian-mlps.conf").is_file()


def test_regions_without_baseline_and_simulated_servers_skip_it_saying_why(world: World) -> None:
    spec = {"kind": "vm", "flavor": "c2.medium", "image": "kylin-v10", "count": 1}

    off = _provision(world, _worker(world, baseline=False, root=None), spec)
    simulated = _provision(world, _worker(world, baseline=True, root=None), spec)

    assert off.memo["baseline"] == "off in region wuhan"
    assert simulated.memo["baseline"] == "skipped: simulated servers"
    assert off.steps_done == simulated.steps_done == ["servers.create", "ansible.baseline"]


def test_ports_are_validated_at_submit(world: World) -> None:
    body = {
        "tenant": "hubei.wuhan.jiangan",
        "cloud": "education",
        "region": "wuhan",
        "spec": {"kind": "vm", "flavor": "c2.medium", "image": "kylin-v10", "tcp_ports": [22, 70000]},
        "new_system": {"name": "ports", "mlps_level": 2},
    }
    response = world.requester.post("/v1/requests", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "tcp_ports" in response.text
