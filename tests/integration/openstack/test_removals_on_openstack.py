"""Volume backups, deletions and allocation retirement through the control plane on the local
OpenStack box (and its Keystone-mode Swift), read back through openstacksdk as admin.

Each test makes its own city (a fresh Keystone domain) so runs sharing the box never touch
each other's projects; whatever a failed test leaves is retired in the fixture's teardown.
"""

from __future__ import annotations

import io
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
from controlplane.ledger.models import Allocation
from controlplane.settings import Settings
from controlplane.worker.runtime import WorkerContext
from provisioners.base import ProjectRef
from provisioners.openstack import CloudConfig, OpenStackProvisioner, domain_name, project_name
from tests.conftest import grant_token
from tests.controlplane.helpers import new_tenant
from tests.controlplane.ledger.helpers import allocate, node
from tests.integration.openstack.conftest import BOX_DIR, CLOUD, SwiftAdmin, box_site
from tests.integration.openstack.test_requests_on_openstack import DECLARATION, provisioned

CLOUD_CODE, REGION = "education", "wuhan"


@pytest.fixture
def city_box(
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
    app = create_app(configured, engine=engine, site=site, dispatcher=RecordingDispatcher())
    worker = WorkerContext(settings=configured, engine=engine, site=site)
    token = grant_token(engine, f"box-admin-{uuid.uuid4().hex[:4]}", [("platform-admin", "hubei")])
    provisioner = OpenStackProvisioner.from_config(
        CloudConfig(region=REGION, clouds_yaml=BOX_DIR / "clouds.yaml", cloud=CLOUD)
    )
    city_code = f"t{uuid.uuid4().hex[:7]}"
    city, county = f"hubei.{city_code}", f"hubei.{city_code}.xian"
    with TestClient(app, raise_server_exceptions=False) as api:
        api.headers["Authorization"] = f"Bearer {token}"
        for body in (new_tenant("hubei", city_code, "city"), new_tenant(city, "xian", "county")):
            assert api.post("/v1/tenants", json=body).status_code == 201
        allocate(engine, city, "shared", {}, cloud=CLOUD_CODE, region=REGION)
        catalogue_sync(worker, REGION)  # the region's images are its Glance's
        yield {"api": api, "worker": worker, "image": image, "provisioner": provisioner, "county": county}
    project = provisioner.find_project(domain_name(county), project_name(county, CLOUD_CODE))
    if project is not None:
        provisioner.retire_project(project)
    box_admin.image.delete_image(image, ignore_missing=True)
    provisioner.close()


def request(box: dict[str, Any], spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {"tenant": box["county"], "cloud": CLOUD_CODE, "region": REGION, "spec": spec, **extra}
    return provisioned(box["api"], box["worker"], body)


def onboard(box: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return request(
        box,
        {"kind": "tenant-onboarding", **spec},
        declaration=DECLARATION,
        new_system={"name": "box-removal", "mlps_level": 2},
    )


def in_project(items: Any, project_id: str) -> list[Any]:
    return [i for i in items if i.project_id == project_id]


def backups_of(admin: openstack.connection.Connection, project_id: str) -> list[Any]:
    """Cinder shows a backup's project only from microversion 3.18: filter on the server too."""
    listed = admin.block_storage.backups(details=True, all_projects=True, project_id=project_id)
    return [b for b in listed if b.project_id in (None, project_id)]


def backups_named(admin: openstack.connection.Connection, *names: str) -> list[Any]:
    return [b for b in admin.block_storage.backups(details=True, all_projects=True) if b.name in names]


def test_a_volume_and_its_backup_become_available_and_deleting_them_leaves_nothing_in_cinder(
    city_box: dict[str, Any], box_admin: openstack.connection.Connection, engine: Engine
) -> None:
    county = city_box["county"]
    onboarded = onboard(city_box, mode="shared", limits={})
    project = city_box["provisioner"].find_project(domain_name(county), project_name(county, CLOUD_CODE))
    volume = request(city_box, {"kind": "volume", "size_gb": 1}, system=onboarded["system"], declaration=DECLARATION)
    backup = request(city_box, {"kind": "volume-backup", "volume": volume["id"], "name": "nightly"})
    (cinder_volume,) = in_project(box_admin.block_storage.volumes(all_projects=True), project.id)
    (cinder_backup,) = backups_of(box_admin, project.id)
    assert cinder_volume.status == "available" and cinder_volume.metadata["chutian_tag"] == f"req-{volume['id']}-0"
    assert cinder_backup.status == "available" and cinder_backup.name == f"req-{backup['id']}-0"
    assert cinder_backup.volume_id == cinder_volume.id
    assert node(engine, county, CLOUD_CODE, REGION)["used"] == {"volume_gb": 1, "volumes": 1, "backup_gb": 1}

    for target in (backup, volume):
        request(city_box, {"kind": "deletion", "target": target["id"]})
        assert city_box["api"].get(f"/v1/requests/{target['id']}").json()["state"] == "retired"
    assert backups_of(box_admin, project.id) == [] and backups_named(box_admin, cinder_backup.name) == []
    assert in_project(box_admin.block_storage.volumes(all_projects=True), project.id) == []
    assert node(engine, county, CLOUD_CODE, REGION)["used"] == {}


def test_retiring_an_onboarded_allocation_leaves_nothing_in_keystone_nova_cinder_neutron_or_swift(
    city_box: dict[str, Any], box_admin: openstack.connection.Connection, engine: Engine, swift: SwiftAdmin
) -> None:
    county, api = city_box["county"], city_box["api"]
    limits = {
        "vcpus": 4,
        "ram_mb": 8192,
        "instances": 2,
        "volume_gb": 20,
        "volumes": 4,
        "backup_gb": 20,
        "object_gb": 5,
    }
    onboarded = onboard(city_box, mode="slice", limits=limits, direct_access=True)
    system = {"system": onboarded["system"], "declaration": DECLARATION}
    domain = box_admin.identity.find_domain(domain_name(county))
    project = box_admin.identity.find_project(project_name(county, CLOUD_CODE), domain_id=domain.id)
    group = box_admin.identity.find_group(f"{county}--users", domain_id=domain.id)
    assert box_admin.block_storage.get_quota_set(project.id).gigabytes == 20, "a direct-access slice's quota"
    image = city_box["image"].name
    vm = request(city_box, {"kind": "vm", "flavor": "c1.small", "image": image, "count": 1}, **system)
    volume = request(city_box, {"kind": "volume", "size_gb": 1}, **system)
    backup = request(city_box, {"kind": "volume-backup", "volume": volume["id"], "name": "before-exit"})
    bucket = request(city_box, {"kind": "bucket", "size_gb": 1, "name": "exit-archive"}, **system)
    assert swift.containers(project.id) == ["exit-archive"]
    put = swift.conn.object_store.put(swift.url(project.id, "exit-archive", "report.csv"), data=io.BytesIO(b"x" * 64))
    assert put.status_code == 201, "the container holds an object when the allocation is retired"
    assert [s.status for s in box_admin.compute.servers(all_projects=True, project_id=project.id)] == ["ACTIVE"]
    assert len(list(box_admin.network.networks(project_id=project.id))) == 1, "the onboarding's network"

    retirement = request(city_box, {"kind": "allocation-retirement"}, system=onboarded["system"])
    assert [(s["role"], s["node"]) for s in retirement["steps"]] == [("tenant-admin", county), ("operator", "hubei")]

    # Keystone: project, group and the (now empty) domain are gone
    assert box_admin.identity.find_project(project.id, ignore_missing=True) is None
    assert box_admin.identity.find_group(group.id, ignore_missing=True) is None
    assert box_admin.identity.find_domain(domain.id, ignore_missing=True) is None
    # Nova, Cinder, Neutron: nothing owned by the project id is left
    assert list(box_admin.compute.servers(all_projects=True, project_id=project.id)) == []
    assert in_project(box_admin.block_storage.volumes(all_projects=True), project.id) == []
    assert backups_of(box_admin, project.id) == [] and backups_named(box_admin, f"req-{backup['id']}-0") == []
    net = box_admin.network
    leftovers = {
        "networks": list(net.networks(project_id=project.id)),
        "subnets": list(net.subnets(project_id=project.id)),
        "routers": list(net.routers(project_id=project.id)),
        "ports": list(net.ports(project_id=project.id)),
        "floating_ips": list(net.ips(project_id=project.id)),
        "security_groups": [g for g in net.security_groups() if g.project_id == project.id],
    }
    assert leftovers == {k: [] for k in leftovers}, leftovers
    # Swift: the project's account holds no container (nor the object in it)
    assert swift.containers(project.id) == []
    assert box_admin.block_storage.get_quota_set(project.id).gigabytes != 20, "Cinder's quota back to its default"

    # the control plane: everything retired, the ledger released, the slice given back
    for made in (vm, volume, backup, bucket):
        assert api.get(f"/v1/requests/{made['id']}").json()["state"] == "retired"
    leaf = node(engine, county, CLOUD_CODE, REGION)
    assert (leaf["used"], leaf["reserved"], leaf["consumption"]) == ({}, {}, {})
    assert set(leaf["limits"].values()) == {0}
    city = county.rsplit(".", 1)[0]
    assert node(engine, city, CLOUD_CODE, REGION)["consumption"] == {}, "the slice is back with the city"
    with unit_of_work(engine, readonly=True) as uow:
        statuses = uow.session.scalars(select(Allocation.status).where(Allocation.cloud == CLOUD_CODE)).all()
    assert "retired" in statuses
    assert api.get(f"/v1/operations/{retirement['operation']}").json()["state"] == "succeeded"
    # a repeat of the sweep finds nothing left to delete
    again = city_box["provisioner"].retire_project(ProjectRef(id=project.id, name=project.name, domain_id=domain.id))
    assert dict(again.deleted) == {} and not again.project_deleted
