"""Requests through the control plane provisioned on the real local OpenStack box.

Onboarding a county creates its domain, project, group role and quotas (read back through
openstacksdk as admin); a VM request ends ACTIVE in Nova with ledger usage equal to Nova's;
a volume request ends available. Operations run through the same task function the worker
runs, with injected dependencies.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack.connection
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from controlplane.api.app import create_app
from controlplane.catalogue.tasks import sync_region as catalogue_sync
from controlplane.db.uow import RecordingDispatcher, unit_of_work
from controlplane.operations import engine as ops
from controlplane.settings import Settings
from controlplane.worker.runtime import WorkerContext
from provisioners.openstack import CloudConfig, OpenStackProvisioner, domain_name, project_name
from tests.conftest import grant_token
from tests.controlplane.ledger.helpers import allocate, node
from tests.integration.openstack.conftest import BOX_DIR, CLOUD, box_site

CLOUD_CODE, REGION, CITY, COUNTY = "education", "wuhan", "hubei.wuhan", "hubei.wuhan.jiangan"
DECLARATION = {"items": [{"name": "学籍", "sharing": "unconditional", "catalogue_ref": "HB-EDU-1"}]}


@pytest.fixture
def box_world(
    settings: Settings, engine: Engine, tmp_path: Path, box_admin: openstack.connection.Connection
) -> Iterator[dict[str, Any]]:
    configured, site = box_site(settings, tmp_path)
    image = box_admin.image.create_image(
        name=f"chutian-test-{uuid.uuid4().hex[:6]}",
        data=io.BytesIO(b"\0" * 4096),
        disk_format="raw",
        container_format="bare",
        visibility="public",
    )
    allocate(engine, CITY, "shared", {}, cloud=CLOUD_CODE, region=REGION)
    app = create_app(configured, engine=engine, site=site, dispatcher=RecordingDispatcher())
    worker = WorkerContext(settings=configured, engine=engine, site=site)
    token = grant_token(engine, f"box-admin-{uuid.uuid4().hex[:4]}", [("platform-admin", "hubei")])
    provisioner = OpenStackProvisioner.from_config(
        CloudConfig(region=REGION, clouds_yaml=BOX_DIR / "clouds.yaml", cloud=CLOUD)
    )
    synced = catalogue_sync(worker, REGION)  # the region's images are its Glance's
    with TestClient(app, raise_server_exceptions=False) as api:
        api.headers["Authorization"] = f"Bearer {token}"
        yield {"api": api, "worker": worker, "image": image, "provisioner": provisioner, "synced": synced}
    project = provisioner.find_project(domain_name(COUNTY), project_name(COUNTY, CLOUD_CODE))
    if project is not None:
        provisioner.retire_project(project)
    box_admin.image.delete_image(image, ignore_missing=True)


def provisioned(api: TestClient, worker: WorkerContext, body: dict[str, Any]) -> dict[str, Any]:
    created = api.post("/v1/requests", json=body)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    current = api.post(f"/v1/requests/{rid}:submit").json()
    for _ in range(6):  # a platform admin holds every role: decide each step in turn
        if current["state"] != "pending_approval":
            break
        current = api.post(f"/v1/requests/{rid}:approve").json()
    assert current["state"] == "provisioning", current
    assert ops.run(worker, uuid.UUID(current["operation"])) == "succeeded"
    done = api.get(f"/v1/requests/{rid}").json()
    assert done["state"] == "succeeded", done
    return done


def test_onboarding_then_vm_and_volume_on_the_box(
    box_world: dict[str, Any], box_admin: openstack.connection.Connection, engine: Engine
) -> None:
    api, worker, provisioner = box_world["api"], box_world["worker"], box_world["provisioner"]
    slice_limits = {"vcpus": 8, "ram_mb": 16384, "instances": 4, "volume_gb": 50, "volumes": 5}
    onboarded = provisioned(
        api,
        worker,
        {
            "tenant": COUNTY,
            "cloud": CLOUD_CODE,
            "region": REGION,
            "declaration": DECLARATION,
            "new_system": {"name": "box-edu", "mlps_level": 2},
            "spec": {"kind": "tenant-onboarding", "mode": "slice", "limits": slice_limits, "direct_access": True},
        },
    )
    # Keystone: the city's domain, the county's project tagged with tenant and cloud
    domain = box_admin.identity.find_domain(domain_name(COUNTY))
    assert domain is not None
    project = box_admin.identity.find_project(project_name(COUNTY, CLOUD_CODE), domain_id=domain.id)
    assert project is not None and f"tenant:{COUNTY}" in " ".join(project.tags or []) + (project.description or "")
    group = box_admin.identity.find_group(f"{COUNTY}--users", domain_id=domain.id)
    roles = {
        box_admin.identity.get_role(a.role["id"]).name
        for a in box_admin.identity.role_assignments(scope_project_id=project.id, group_id=group.id)
    }
    assert "reader" in roles and "member" in roles, "direct access slices get member"
    # quotas equal the slice
    compute = box_admin.compute.get_quota_set(project.id)
    assert (compute.cores, compute.ram, compute.instances) == (8, 16384, 4)
    assert box_admin.block_storage.get_quota_set(project.id).gigabytes == 50

    vm = provisioned(
        api,
        worker,
        {
            "tenant": COUNTY,
            "cloud": CLOUD_CODE,
            "region": REGION,
            "system": onboarded["system"],
            "declaration": DECLARATION,
            "spec": {"kind": "vm", "flavor": "c1.small", "image": box_world["image"].name, "count": 1},
        },
    )
    servers = list(box_admin.compute.servers(all_projects=True, project_id=project.id))
    assert [s.status for s in servers] == ["ACTIVE"]
    nova = provisioner.project_usage(provisioner.find_project(domain_name(COUNTY), project_name(COUNTY, CLOUD_CODE)))
    ledger = node(engine, COUNTY, CLOUD_CODE, REGION)["used"]
    assert {k: ledger.get(k, 0) for k in ("vcpus", "ram_mb", "instances")} == {
        k: nova[k] for k in ("vcpus", "ram_mb", "instances")
    }, (ledger, nova)
    assert vm["delta"] == {"vcpus": 1, "ram_mb": 2048, "instances": 1}

    provisioned(
        api,
        worker,
        {
            "tenant": COUNTY,
            "cloud": CLOUD_CODE,
            "region": REGION,
            "system": onboarded["system"],
            "declaration": DECLARATION,
            "spec": {"kind": "volume", "size_gb": 1},
        },
    )
    volumes = [v for v in box_admin.block_storage.volumes(all_projects=True) if v.project_id == project.id]
    assert [v.status for v in volumes] == ["available"]


def test_capacity_and_usage_sync_from_the_box(
    box_world: dict[str, Any], box_admin: openstack.connection.Connection, engine: Engine
) -> None:
    from controlplane.capacity.tasks import sync
    from controlplane.ledger.models import UsageReport

    api, worker, provisioner = box_world["api"], box_world["worker"], box_world["provisioner"]
    onboarded = provisioned(
        api,
        worker,
        {
            "tenant": COUNTY,
            "cloud": CLOUD_CODE,
            "region": REGION,
            "declaration": DECLARATION,
            "new_system": {"name": "box-sync", "mlps_level": 2},
            "spec": {"kind": "tenant-onboarding", "mode": "slice", "limits": {"volume_gb": 20, "volumes": 2}},
        },
    )
    provisioned(
        api,
        worker,
        {
            "tenant": COUNTY,
            "cloud": CLOUD_CODE,
            "region": REGION,
            "system": onboarded["system"],
            "declaration": DECLARATION,
            "spec": {"kind": "volume", "size_gb": 2},
        },
    )
    results = {r["region"]: r for r in sync(worker)}
    capacity = provisioner.region_capacity()
    region_node = node(engine, None, CLOUD_CODE, REGION)
    assert region_node["limits"]["vcpus"] == capacity.total["vcpus"] > 0, "Placement replaces the site figures"
    assert region_node["limits"]["volume_gb"] == capacity.total["volume_gb"] > 0
    assert results[REGION]["allocations_with_drift"] == 0, "the ledger agrees with Nova and Cinder"
    assert "skipped" in results["xiangyang"]
    # something changes behind the control plane's back: drift is recorded, never silently applied
    project = provisioner.find_project(domain_name(COUNTY), project_name(COUNTY, CLOUD_CODE))
    for volume in box_admin.block_storage.volumes(all_projects=True):
        if volume.project_id == project.id:
            box_admin.block_storage.delete_volume(volume)
            box_admin.block_storage.wait_for_delete(volume, wait=120)
    assert {r["region"]: r for r in sync(worker)}[REGION]["allocations_with_drift"] == 1
    with engine.connect() as conn:
        drift = conn.execute(select(UsageReport.drift)).scalars().all()
    assert drift == [{"volume_gb": -2, "volumes": -1}]
    assert node(engine, COUNTY, CLOUD_CODE, REGION)["used"] == {"volume_gb": 2, "volumes": 1}, "not overwritten"


def test_catalogue_sync_offers_glance_images_and_refuses_others_at_submit(
    box_world: dict[str, Any], box_admin: openstack.connection.Connection
) -> None:
    api, image = box_world["api"], box_world["image"]
    assert image.name in box_world["synced"]["added"]
    assert "c1.small" in box_world["synced"]["flavors_created"] + [
        f.name for f in box_admin.compute.flavors() if f.name == "c1.small"
    ]
    listed = {i["name"]: i for i in api.get(f"/v1/regions/{REGION}/images").json()}
    assert listed[image.name]["source"] == "glance" and listed[image.name]["image_id"] == image.id
    assert "kylin-v10" not in listed, "the site file's images are not offered where Glance is read"

    body = {
        "tenant": CITY,
        "cloud": CLOUD_CODE,
        "region": REGION,
        "declaration": DECLARATION,
        "new_system": {"name": "box-images", "mlps_level": 2},
        "spec": {"kind": "vm", "flavor": "c1.small", "image": "kylin-v10", "count": 1},
    }
    refused = api.post("/v1/requests", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "spec.image" and image.name in refused.json()["detail"]

    box_admin.image.delete_image(image)
    assert image.name in catalogue_sync(box_world["worker"], REGION)["removed"]
    assert image.name not in {i["name"] for i in api.get(f"/v1/regions/{REGION}/images").json()}


WORKER_SCRIPT = """
import sys, uuid
import controlplane.requests.provisioning  # registers the steps, as the worker's task modules do
from controlplane.operations import engine as ops
from controlplane.settings import Settings
from controlplane.worker.runtime import build_context
print(ops.run(build_context(Settings()), uuid.UUID(sys.argv[1])))
"""


def test_a_worker_killed_during_onboarding_finishes_after_restart_without_duplicates(
    box_world: dict[str, Any],
    box_admin: openstack.connection.Connection,
    database_url: str,
    engine: Engine,
    tmp_path: Path,
) -> None:
    api, worker = box_world["api"], box_world["worker"]
    created = api.post(
        "/v1/requests",
        json={
            "tenant": COUNTY,
            "cloud": CLOUD_CODE,
            "region": REGION,
            "declaration": DECLARATION,
            "new_system": {"name": "box-kill", "mlps_level": 2},
            "spec": {"kind": "tenant-onboarding", "mode": "shared", "limits": {}},
        },
    )
    assert created.status_code == 201, created.text
    current = api.post(f"/v1/requests/{created.json()['id']}:submit").json()
    while current["state"] == "pending_approval":
        current = api.post(f"/v1/requests/{current['id']}:approve").json()
    op_id = current["operation"]

    # A worker process dies (SIGKILL, via the fault hook) right after Keystone made the project.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTIAN_")} | {
        "CHUTIAN_DATABASE_URL": database_url,
        "CHUTIAN_SITE_FILE": str(worker.settings.site_file),
        "CHUTIAN_CLOUDS_YAML": str(worker.settings.clouds_yaml),
        "CHUTIAN_DATA_DIR": str(tmp_path / "killed-worker"),
        "CHUTIAN_OPERATION_LEASE_S": "3",
        "CHUTIAN_FAULT": "kill_after:openstack.project",
    }
    killed = subprocess.run(
        [sys.executable, "-c", WORKER_SCRIPT, op_id], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    domain = box_admin.identity.find_domain(domain_name(COUNTY))
    name = project_name(COUNTY, CLOUD_CODE)

    def projects() -> list[Any]:
        return [p for p in box_admin.identity.projects(domain_id=domain.id) if p.name == name]

    assert len(projects()) == 1, "the project was made before the kill"
    assert api.get(f"/v1/requests/{current['id']}").json()["state"] == "provisioning"

    # The reaper requeues it once the dead worker's lease has run out; a restarted worker claims it.
    assert ops.run(worker, uuid.UUID(op_id)) == "not-claimed", "still leased by the dead worker"
    time.sleep(4)
    with unit_of_work(engine) as uow:
        assert op_id in [str(i) for i in ops.reap(uow)]
    assert ops.run(worker, uuid.UUID(op_id)) == "succeeded"
    assert api.get(f"/v1/requests/{current['id']}").json()["state"] == "succeeded"
    (project,) = projects()
    networks = list(box_admin.network.networks(project_id=project.id))
    routers = list(box_admin.network.routers(project_id=project.id))
    groups = [g for g in box_admin.identity.groups(domain_id=domain.id) if g.name == f"{COUNTY}--users"]
    assert (len(networks), len(routers), len(groups)) == (1, 1, 1), (networks, routers, groups)
