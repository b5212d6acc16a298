"""k8s-namespace requests and onboarding into a region with a cluster, against the Kubernetes
API emulator over real HTTP (tests/provisioners/kube_emulator.py says what it does not do)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from controlplane.operations import engine as ops
from controlplane.site_config import Site
from controlplane.worker.runtime import WorkerContext
from provisioners.kubernetes import LABEL_CLOUD, LABEL_MLPS, LABEL_TENANT, namespace_name
from tests.controlplane.ledger.helpers import node
from tests.controlplane.requests.conftest import CLOUD, COUNTY, REGION, World
from tests.provisioners.kube_emulator import EmulatorServer, running_emulator


@pytest.fixture
def cluster(world: World, tmp_path: Path) -> Iterator[tuple[WorkerContext, k8s.CoreV1Api]]:
    with running_emulator() as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", context="wuhan-cluster")
        site = world.worker.site
        regions = [
            r.model_copy(update={"kube_context": "wuhan-cluster"}) if r.code == "wuhan" else r for r in site.regions
        ]
        worker = WorkerContext(
            settings=world.worker.settings.model_copy(update={"kubeconfig": kubeconfig}),
            engine=world.engine,
            site=Site.model_construct(**{**site.__dict__, "regions": regions}),
            dispatcher=world.worker.dispatcher,
        )
        yield worker, _core(server, kubeconfig)


def _core(server: EmulatorServer, kubeconfig: Path) -> k8s.CoreV1Api:
    from kubernetes import config

    return k8s.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig), context="wuhan-cluster"))


def test_namespace_request_produces_a_fenced_namespace(
    world: World, cluster: tuple[WorkerContext, k8s.CoreV1Api]
) -> None:
    worker, core = cluster
    req = world.create({"kind": "k8s-namespace", "cpu_m": 2000, "memory_mb": 4096})
    world.verb(world.requester, req["id"], "submit")
    final = world.approve_all(req["id"])
    assert ops.run(worker, uuid.UUID(final["operation"])) == "succeeded"
    name = namespace_name(CLOUD, COUNTY)
    namespace = core.read_namespace(name)
    labels = namespace.metadata.labels
    assert labels[LABEL_CLOUD] == CLOUD and labels[LABEL_TENANT] == "jiangan" and labels[LABEL_MLPS] == "2"
    quota = core.read_namespaced_resource_quota(core.list_namespaced_resource_quota(name).items[0].metadata.name, name)
    assert quota.spec.hard["limits.cpu"] in ("2", "2000m") and quota.spec.hard["limits.memory"] in ("4Gi", "4096Mi")
    assert world.requester.get(f"/v1/requests/{req['id']}").json()["state"] == "succeeded"


def test_deleting_a_namespace_request_and_retiring_the_allocation_remove_the_namespace(
    world: World, cluster: tuple[WorkerContext, k8s.CoreV1Api]
) -> None:
    worker, core = cluster
    name = namespace_name(CLOUD, COUNTY)

    def fulfil(spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
        req = world.create(spec, **extra)
        world.verb(world.requester, req["id"], "submit")
        final = world.approve_all(req["id"])
        assert ops.run(worker, uuid.UUID(final["operation"])) == "succeeded"
        return world.requester.get(f"/v1/requests/{req['id']}").json()

    first = fulfil({"kind": "k8s-namespace", "cpu_m": 1000, "memory_mb": 1024})
    assert core.read_namespace(name).metadata.name == name
    fulfil({"kind": "deletion", "target": first["id"]}, system=None, declaration=None)
    assert name not in {n.metadata.name for n in core.list_namespace().items}
    assert world.requester.get(f"/v1/requests/{first['id']}").json()["state"] == "retired"
    assert node(world.engine, COUNTY, CLOUD, REGION)["used"] == {}

    second = fulfil({"kind": "k8s-namespace", "cpu_m": 500, "memory_mb": 512}, system=first["system"])
    retirement = world.create({"kind": "allocation-retirement"}, system=first["system"], declaration=None)
    world.verb(world.requester, retirement["id"], "submit")
    final = world.approve_all(retirement["id"])
    assert ops.run(worker, uuid.UUID(final["operation"])) == "succeeded"
    assert name not in {n.metadata.name for n in core.list_namespace().items}
    assert world.requester.get(f"/v1/requests/{second['id']}").json()["state"] == "retired"
    assert node(world.engine, COUNTY, CLOUD, REGION)["used"] == {}
