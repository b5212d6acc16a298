"""The OpenStack provisioner against the local box: what it makes is read back as the box admin.

Every name carries this run's suffix, and everything made is removed in finalizers even when a
test fails. Tests in this module share one onboarded county (`county`) and one project for the
error rows (`scratch`); a test that changes either puts it back.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import openstack
import openstack.connection
import pytest

from provisioners.base import (
    CapacityReader,
    CatalogueBackend,
    ComputeBackend,
    FlavorSpec,
    IdentityBackend,
    NetworkBackend,
    ProjectRef,
    ProjectTags,
    QuotaSet,
    RetirementBackend,
    ServerSpec,
    UsageReader,
    VolumeBackend,
    VolumeSpec,
)
from provisioners.errors import (
    BackendAuthError,
    BackendMisconfigured,
    BackendNotFound,
    BackendQuotaExceeded,
    BackendResourceFailed,
    BackendTimeout,
    CapacityExhausted,
    InvalidSpec,
    ResourceConflict,
    TransientBackendError,
)
from provisioners.openstack import (
    CloudConfig,
    OpenStackProvisioner,
    OpenStackSettings,
    TenantOnboarding,
    ZoneProfile,
    network_name,
    translated,
)
from provisioners.openstack.provisioner import Onboarded

from .conftest import BOX_DIR, CLOUD

Conn = openstack.connection.Connection
REGION = "wuhan"
FAST = OpenStackSettings(poll_interval_s=0.5, server_timeout_s=120, volume_timeout_s=120, backup_timeout_s=240)
COUNTY_QUOTAS = QuotaSet(
    compute={"cores": 12, "ram": 8192, "instances": 5},
    volume={"gigabytes": 20, "volumes": 4, "backups": 4},
    network={"network": 3, "subnet": 3, "router": 2, "security_group": 4},
)


def box_config(**changes: Any) -> CloudConfig:
    return replace(CloudConfig(region=REGION, clouds_yaml=BOX_DIR / "clouds.yaml", cloud=CLOUD), **changes)


def admin_auth(**changes: str) -> dict[str, str]:
    auth = {
        "auth_url": "http://127.0.0.1:15000/v3",
        "username": "admin",
        "password": "chutian-box-admin",
        "project_name": "admin",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
    }
    auth.update(changes)
    return auth


class Finalizers:
    """Undo actions run last-in first-out; all run even when one fails, and failures are reported."""

    def __init__(self) -> None:
        self.actions: list[Callable[[], object]] = []

    def __call__(self, action: Callable[[], object]) -> None:
        self.actions.append(action)

    def run(self) -> None:
        errors = []
        for action in reversed(self.actions):
            try:
                action()
            except Exception as err:
                errors.append(f"{getattr(action, '__name__', action)}: {err}")
        if errors:
            pytest.fail("cleanup failed: " + "; ".join(errors), pytrace=False)


@pytest.fixture(scope="module")
def module_cleanup() -> Iterator[Finalizers]:
    finalizers = Finalizers()
    yield finalizers
    finalizers.run()


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def provisioner(box_admin: Conn) -> Iterator[OpenStackProvisioner]:
    prov = OpenStackProvisioner.from_config(box_config(), FAST)
    yield prov
    prov.close()


@pytest.fixture(scope="module")
def image(box_admin: Conn, run_id: str, module_cleanup: Finalizers) -> Any:
    made = box_admin.image.create_image(
        name=f"chutian-test-image-{run_id}",
        data=os.urandom(4096),
        disk_format="raw",
        container_format="bare",
        visibility="public",
        wait=True,
        timeout=120,
    )
    module_cleanup(lambda: box_admin.image.delete_image(made, ignore_missing=True))
    return made


@pytest.fixture(scope="module")
def flavor(box_admin: Conn, provisioner: OpenStackProvisioner, run_id: str, module_cleanup: Finalizers) -> FlavorSpec:
    spec = FlavorSpec(name=f"chutian-test-tiny-{run_id}", vcpus=1, ram_mb=128, disk_gb=1)
    module_cleanup(lambda: _delete_flavor(box_admin, spec.name))
    assert provisioner.ensure_flavors([spec]).created == (spec.name,)
    return spec


def _delete_flavor(admin: Conn, name: str) -> None:
    found = admin.compute.find_flavor(name, ignore_missing=True)
    if found is not None:
        admin.compute.delete_flavor(found, ignore_missing=True)


def onboarding(run_id: str, county: str, **changes: Any) -> TenantOnboarding:
    spec = TenantOnboarding(
        tenant_path=f"hubei.t{run_id}.{county}",
        cloud="education",
        mlps_ceiling=3,
        zone="egov-extranet",
        external_network="ext-egov",
        groups=(f"hubei.t{run_id}.{county}--staff",),
        quotas=COUNTY_QUOTAS,
    )
    return replace(spec, **changes)


@pytest.fixture(scope="module")
def county(provisioner: OpenStackProvisioner, run_id: str, module_cleanup: Finalizers) -> Onboarded:
    spec = onboarding(run_id, "jiangan")
    module_cleanup(lambda: _retire_by_name(provisioner, spec))
    return provisioner.onboard(spec)


def _retire_by_name(provisioner: OpenStackProvisioner, spec: TenantOnboarding) -> None:
    """Cleanup that works even when onboarding stopped half-way."""
    domain = ".".join(spec.tenant_path.split(".")[:2])
    project = provisioner.find_project(domain, f"{spec.tenant_path}--{spec.cloud}")
    if project is not None:
        provisioner.retire_project(project)


@pytest.fixture(scope="module")
def scratch(
    provisioner: OpenStackProvisioner, county: Onboarded, run_id: str, module_cleanup: Finalizers
) -> ProjectRef:
    """A second project in the county's domain, without a network, for the error rows."""
    project = provisioner.ensure_project(
        county.domain, f"hubei.t{run_id}.scratch--education", ProjectTags(f"hubei.t{run_id}.scratch", "education", 2)
    )
    module_cleanup(lambda: provisioner.retire_project(project, drop_empty_domain=False))
    return project


def project_inventory(admin: Conn, project_id: str, domain_id: str) -> dict[str, int]:
    """How many of each thing exist for the project (and its domain), read as admin."""
    idn = admin.identity
    net = admin.network
    groups = [g.id for g in net.security_groups() if g.project_id == project_id]  # unfiltered: see retire.py
    return {
        "domains": 1 if idn.find_domain(domain_id, ignore_missing=True) else 0,
        "projects_in_domain": len(list(idn.projects(domain_id=domain_id))),
        "groups_in_domain": len(list(idn.groups(domain_id=domain_id))),
        "role_assignments": len(list(idn.role_assignments(scope_project_id=project_id))),
        "servers": len(list(admin.compute.servers(all_projects=True, project_id=project_id))),
        "volumes": len(list(admin.block_storage.volumes(all_projects=True, project_id=project_id))),
        "backups": len(
            [
                b
                for b in admin.block_storage.backups(details=True, all_projects=True, project_id=project_id)
                if b.project_id == project_id
            ]
        ),
        "networks": len(list(net.networks(project_id=project_id))),
        "subnets": len(list(net.subnets(project_id=project_id))),
        "routers": len(list(net.routers(project_id=project_id))),
        "ports": len(list(net.ports(project_id=project_id))),
        "security_groups": len(groups),
        "security_group_rules": sum(len(list(net.security_group_rules(security_group_id=g))) for g in groups),
    }


# ---------------------------------------------------------------- onboarding


def test_provisioner_satisfies_the_protocols(provisioner: OpenStackProvisioner) -> None:
    for protocol in (
        IdentityBackend,
        NetworkBackend,
        ComputeBackend,
        VolumeBackend,
        CatalogueBackend,
        UsageReader,
        CapacityReader,
        RetirementBackend,
    ):
        assert isinstance(provisioner, protocol)


def test_onboarding_a_county_creates_domain_project_group_roles_quotas_and_network(
    box_admin: Conn, county: Onboarded, run_id: str
) -> None:
    idn = box_admin.identity
    domain = idn.get_domain(county.domain.id)
    assert (domain.name, domain.is_enabled) == (f"hubei.t{run_id}", True)
    assert domain.description.startswith("chutian:")

    project = idn.get_project(county.project.id)
    assert (project.name, project.domain_id) == (f"hubei.t{run_id}.jiangan--education", domain.id)
    assert set(project.tags) == {"chutian", f"tenant:hubei.t{run_id}.jiangan", "cloud:education", "mlps:3"}

    group = idn.get_group(county.groups[0].id)
    assert (group.name, group.domain_id) == (f"hubei.t{run_id}.jiangan--staff", domain.id)
    roles = {a.role["id"] for a in idn.role_assignments(scope_project_id=project.id, group_id=group.id)}
    assert roles == {idn.find_role("reader").id}
    admin_roles = {
        a.role["id"] for a in idn.role_assignments(scope_project_id=project.id, user_id=box_admin.current_user_id)
    }
    assert admin_roles == {idn.find_role("member").id}

    compute = box_admin.compute.get_quota_set(project.id)
    assert (compute.cores, compute.ram, compute.instances) == (12, 8192, 5)
    volume = box_admin.block_storage.get_quota_set(project.id)
    assert (volume.gigabytes, volume.volumes, volume.backups) == (20, 4, 4)
    network_quota = box_admin.network.get_quota(project.id)
    assert (network_quota.networks, network_quota.subnets, network_quota.routers, network_quota.security_groups) == (
        3,
        3,
        2,
        4,
    )
    assert county.quotas.compute["cores"] == 12
    assert county.quotas.volume["gigabytes"] == 20
    assert county.quotas.network["router"] == 2

    net = box_admin.network
    ext = net.find_network("ext-egov", ignore_missing=False)
    network = net.get_network(county.network.network_id)
    assert (network.name, network.project_id) == (network_name("egov-extranet"), project.id)
    subnet = net.get_subnet(county.network.subnet_id)
    assert (subnet.cidr, subnet.network_id) == ("10.80.0.0/24", network.id)
    router = net.get_router(county.network.router_id)
    assert router.project_id == project.id
    assert router.external_gateway_info["network_id"] == ext.id
    interfaces = [p for p in net.ports(device_id=router.id, network_id=network.id)]
    assert [ip["subnet_id"] for p in interfaces for ip in p.fixed_ips] == [subnet.id]
    group_sg = net.get_security_group(county.network.security_group_id)
    assert group_sg.project_id == project.id
    ingress = {
        (r["protocol"], r["port_range_min"], r["remote_ip_prefix"])
        for r in group_sg.security_group_rules
        if r["direction"] == "ingress"
    }
    assert ingress == {("icmp", None, "10.0.0.0/8"), ("tcp", 22, "10.0.0.0/8"), ("tcp", 443, "10.0.0.0/8")}


def test_onboarding_twice_creates_nothing_new(
    box_admin: Conn, provisioner: OpenStackProvisioner, county: Onboarded, run_id: str
) -> None:
    before = project_inventory(box_admin, county.project.id, county.domain.id)
    again = provisioner.onboard(onboarding(run_id, "jiangan"))
    after = project_inventory(box_admin, county.project.id, county.domain.id)
    assert after == before
    assert again == county
    assert before["networks"] == before["routers"] == before["subnets"] == 1


def test_project_of_someone_else_is_not_adopted(
    box_admin: Conn, provisioner: OpenStackProvisioner, county: Onboarded, run_id: str, cleanup: Any
) -> None:
    name = f"hubei.t{run_id}.foreign--education"
    foreign = box_admin.identity.create_project(name=name, domain_id=county.domain.id)
    cleanup(lambda: box_admin.identity.delete_project(foreign, ignore_missing=True))
    with pytest.raises(ResourceConflict, match="not made by Chutian"):
        provisioner.ensure_project(county.domain, name, ProjectTags("x", "education", 2))
    assert box_admin.identity.get_project(foreign.id).tags == []


def test_direct_access_grants_member_and_taking_it_back_revokes_it(
    box_admin: Conn, provisioner: OpenStackProvisioner, county: Onboarded
) -> None:
    idn = box_admin.identity
    group = county.groups[0]

    def held() -> set[str]:
        return {
            idn.get_role(a.role["id"]).name
            for a in idn.role_assignments(scope_project_id=county.project.id, group_id=group.id)
        }

    try:
        assert provisioner.ensure_group_access(county.project, group, direct_access=True) == {"reader", "member"}
        assert held() == {"reader", "member"}
        assert provisioner.ensure_group_access(county.project, group, direct_access=True, manager=True) == {
            "reader",
            "member",
            "manager",
        }
        assert held() == {"reader", "member", "manager"}
    finally:
        provisioner.ensure_group_access(county.project, group)
    assert held() == {"reader"}
    with pytest.raises(InvalidSpec):
        provisioner.ensure_group_access(county.project, group, manager=True)


# ---------------------------------------------------------------- catalogue


def test_flavors_are_created_once_and_a_changed_one_is_reported_not_touched(
    box_admin: Conn, provisioner: OpenStackProvisioner, flavor: FlavorSpec, run_id: str, cleanup: Any
) -> None:
    other = FlavorSpec(name=f"chutian-test-c2-{run_id}", vcpus=2, ram_mb=256, disk_gb=2)
    cleanup(lambda: _delete_flavor(box_admin, other.name))
    drifted = replace(flavor, ram_mb=flavor.ram_mb * 2)

    report = provisioner.ensure_flavors([drifted, other])
    assert report.created == (other.name,)
    assert [(m.name, m.field, m.expected, m.actual) for m in report.mismatches] == [
        (flavor.name, "ram_mb", flavor.ram_mb * 2, flavor.ram_mb)
    ]
    assert box_admin.compute.find_flavor(flavor.name).ram == flavor.ram_mb

    again = provisioner.ensure_flavors([flavor, other])
    assert (again.created, again.mismatches, set(again.unchanged)) == ((), (), {flavor.name, other.name})
    made = box_admin.compute.find_flavor(other.name)
    assert (made.vcpus, made.ram, made.disk, made.is_public) == (2, 256, 2, True)


def test_public_images_lists_public_active_images_only(
    box_admin: Conn, provisioner: OpenStackProvisioner, image: Any, run_id: str, cleanup: Any
) -> None:
    private = box_admin.image.create_image(
        name=f"chutian-test-private-{run_id}",
        data=b"x" * 512,
        disk_format="raw",
        container_format="bare",
        visibility="private",
        wait=True,
        timeout=120,
    )
    cleanup(lambda: box_admin.image.delete_image(private, ignore_missing=True))
    listed = {ref.id: ref for ref in provisioner.public_images()}
    assert listed[image.id].name == image.name
    assert listed[image.id].size_bytes == 4096
    assert private.id not in listed


# ---------------------------------------------------------------- servers, volumes, backups


def test_server_is_active_in_the_tenant_project_once_and_usage_equals_novas(
    box_admin: Conn, provisioner: OpenStackProvisioner, county: Onboarded, flavor: FlavorSpec, image: Any
) -> None:
    spec = ServerSpec(tag=f"{county.project.name}/vm-1", flavor=flavor.name, image=image.name)
    impatient = OpenStackProvisioner(provisioner.conn, region=REGION, settings=replace(FAST, server_timeout_s=0))
    try:
        with pytest.raises(BackendTimeout):  # the step's first attempt times out (transient) ...
            impatient.ensure_server(county.project, spec)
        ref = provisioner.ensure_server(county.project, spec)  # ... and the retry finds the same server
        assert provisioner.ensure_server(county.project, spec) == ref

        server = box_admin.compute.get_server(ref.id)
        assert (server.status, server.project_id) == ("ACTIVE", county.project.id)
        assert server.metadata["chutian_tag"] == spec.tag
        tagged = [
            s
            for s in box_admin.compute.servers(all_projects=True, project_id=county.project.id)
            if s.metadata.get("chutian_tag") == spec.tag
        ]
        assert [s.id for s in tagged] == [ref.id]

        nova = box_admin.compute.get_limits(tenant_id=county.project.id).absolute
        usage = provisioner.project_usage(county.project)
        assert (usage["vcpus"], usage["ram_mb"], usage["instances"]) == (
            nova.total_cores_used,
            nova.total_ram_used,
            nova.instances_used,
        )
        assert (usage["vcpus"], usage["ram_mb"], usage["instances"]) == (flavor.vcpus, flavor.ram_mb, 1)
    finally:
        impatient.close()
        assert provisioner.delete_server(county.project, spec.tag) in (True, False)
    assert box_admin.compute.find_server(ref.id, ignore_missing=True) is None
    assert provisioner.delete_server(county.project, spec.tag) is False
    assert provisioner.project_usage(county.project)["instances"] == 0


def test_a_server_is_found_by_its_nova_tag_even_renamed(
    box_admin: Conn, provisioner: OpenStackProvisioner, county: Onboarded, flavor: FlavorSpec, image: Any
) -> None:
    """Find-or-create asks Nova for the server tag (no listing of the whole project): a
    server the tenant renamed is still the one a retried step finds."""
    tag = f"req-{uuid.uuid4()}-0"
    spec = ServerSpec(tag=tag, flavor=flavor.name, image=image.name, name="cp-vm")
    try:
        ref = provisioner.ensure_server(county.project, spec)
        assert box_admin.compute.get_server(ref.id).tags == [tag]
        listed = box_admin.compute.servers(all_projects=True, project_id=county.project.id, tags=tag)
        assert [s.id for s in listed] == [ref.id]
        box_admin.compute.update_server(ref.id, name="renamed-by-the-tenant")
        assert provisioner.ensure_server(county.project, spec).id == ref.id
        assert len(list(box_admin.compute.servers(all_projects=True, project_id=county.project.id))) == 1
    finally:
        assert provisioner.delete_server(county.project, tag) in (True, False)
    assert provisioner.delete_server(county.project, tag) is False


def test_volume_and_its_backup_become_available_once(
    box_admin: Conn, provisioner: OpenStackProvisioner, county: Onboarded
) -> None:
    bs = box_admin.block_storage
    spec = VolumeSpec(tag=f"{county.project.name}/data-1", size_gb=1)
    backup_tag = f"{county.project.name}/data-1/backup-1"
    impatient = OpenStackProvisioner(provisioner.conn, region=REGION, settings=replace(FAST, backup_timeout_s=0.2))
    try:
        volume = provisioner.ensure_volume(county.project, spec)
        assert provisioner.ensure_volume(county.project, spec) == volume
        fetched = bs.get_volume(volume.id)
        assert (fetched.status, fetched.size, fetched.project_id) == ("available", 1, county.project.id)

        with pytest.raises(BackendTimeout):
            impatient.ensure_volume_backup(county.project, spec.tag, backup_tag)
        backup = provisioner.ensure_volume_backup(county.project, spec.tag, backup_tag)
        assert provisioner.ensure_volume_backup(county.project, spec.tag, backup_tag) == backup
        got = bs.get_backup(backup.id)
        assert (got.status, got.volume_id, got.size) == ("available", volume.id, 1)
        named = [
            b for b in bs.backups(details=True, all_projects=True, project_id=county.project.id) if b.name == backup_tag
        ]
        assert [b.id for b in named] == [backup.id]

        cinder = bs.get_quota_set(county.project.id, usage=True).usage
        usage = provisioner.project_usage(county.project)
        assert (usage["volume_gb"], usage["volumes"]) == (cinder["gigabytes"], cinder["volumes"]) == (1, 1)
        with pytest.raises(ResourceConflict, match="exists with 1 GB"):
            provisioner.ensure_volume(county.project, replace(spec, size_gb=2))
    finally:
        impatient.close()
        provisioner.delete_volume_backup(county.project, backup_tag)
        provisioner.delete_volume(county.project, spec.tag)
    assert provisioner.delete_volume_backup(county.project, backup_tag) is False
    assert provisioner.delete_volume(county.project, spec.tag) is False
    assert [v for v in bs.volumes(all_projects=True, project_id=county.project.id)] == []


# ---------------------------------------------------------------- capacity


def test_region_capacity_equals_placement_and_cinder_read_by_hand(
    box_admin: Conn, provisioner: OpenStackProvisioner
) -> None:
    placement = box_admin.placement
    vcpus = ram = 0.0
    for provider in placement.get("/resource_providers").json()["resource_providers"]:
        inventories = placement.get(f"/resource_providers/{provider['uuid']}/inventories").json()["inventories"]
        for resource_class, inv in inventories.items():
            capacity = (inv["total"] - inv["reserved"]) * inv["allocation_ratio"]
            if resource_class == "VCPU":
                vcpus += capacity
            elif resource_class == "MEMORY_MB":
                ram += capacity
    pools = box_admin.block_storage.get("/scheduler-stats/get_pools?detail=True").json()["pools"]
    volume_gb = sum(pool["capabilities"]["total_capacity_gb"] for pool in pools)

    capacity = provisioner.region_capacity()
    assert capacity.total == {"vcpus": int(vcpus), "ram_mb": int(ram), "volume_gb": int(volume_gb)}
    assert all(amount > 0 for amount in capacity.total.values())
    assert all(0 <= capacity.allocated[k] <= capacity.total[k] for k in capacity.total)


# ---------------------------------------------------------------- retirement


def test_retirement_leaves_nothing_behind_and_repeats_harmlessly(
    box_admin: Conn, provisioner: OpenStackProvisioner, flavor: FlavorSpec, image: Any, run_id: str, cleanup: Any
) -> None:
    spec = onboarding(run_id, "hongshan", zone="internet", tenant_path=f"hubei.r{run_id}.hongshan")
    cleanup(lambda: _retire_by_name(provisioner, spec))
    done = provisioner.onboard(spec)
    project = done.project
    provisioner.ensure_server(project, ServerSpec(tag="web-1", flavor=flavor.name, image=image.id))
    provisioner.ensure_server(project, ServerSpec(tag="web-2", flavor=flavor.name, image=image.id))
    # Servers on the box boot without NICs (its Neutron has no agents, ports never bind), so a
    # tenant's stray port stands in for a networked server's.
    box_admin.network.create_port(network_id=done.network.network_id, project_id=project.id, name="stray")
    provisioner.ensure_volume(project, VolumeSpec(tag="data", size_gb=1))
    provisioner.ensure_volume_backup(project, "data", "data-backup")
    before = project_inventory(box_admin, project.id, done.domain.id)
    assert (before["servers"], before["volumes"], before["backups"], before["routers"]) == (2, 1, 1, 1)
    assert before["ports"] == 2  # the router interface and the stray port

    report = provisioner.retire_project(project)
    assert (report.project_deleted, report.domain_deleted) == (True, True)
    assert report.deleted["servers"] == 2 and report.deleted["volumes"] == 1 and report.deleted["backups"] == 1

    idn = box_admin.identity
    assert idn.find_project(project.id, ignore_missing=True) is None
    assert idn.find_domain(done.domain.id, ignore_missing=True) is None
    assert idn.find_group(done.groups[0].id, ignore_missing=True) is None
    left = project_inventory(box_admin, project.id, done.domain.id)
    assert left == dict.fromkeys(left, 0)
    # Quotas went back to the defaults (Nova's can no longer be read: it refuses unknown projects).
    assert box_admin.block_storage.get_quota_set(project.id).gigabytes == (
        box_admin.block_storage.get_quota_set_defaults(project.id).gigabytes
    )
    assert project.id not in {q.project_id for q in box_admin.network.quotas()}

    again = provisioner.retire_project(project)
    assert (again.deleted, again.project_deleted, again.domain_deleted) == ({}, False, False)
    assert project_inventory(box_admin, project.id, done.domain.id) == left


# ---------------------------------------------------------------- the error table, row by row


@pytest.mark.parametrize("service", ["compute", "volume", "network"])
def test_zero_quota_is_backend_quota_exceeded(
    box_admin: Conn,
    provisioner: OpenStackProvisioner,
    scratch: ProjectRef,
    flavor: FlavorSpec,
    image: Any,
    service: str,
) -> None:
    provisioner.set_quotas(
        scratch, compute={"instances": 0}, volume={"gigabytes": 0, "volumes": 0}, network={"network": 0}
    )
    try:
        with pytest.raises(BackendQuotaExceeded, match=r"(?i)quota"):
            if service == "compute":
                provisioner.ensure_server(scratch, ServerSpec(tag="over-quota", flavor=flavor.name, image=image.id))
            elif service == "volume":
                provisioner.ensure_volume(scratch, VolumeSpec(tag="over-quota", size_gb=1))
            else:
                provisioner.ensure_tenant_network(scratch, "egov-intranet", "ext-egov")
    finally:
        provisioner.set_quotas(
            scratch, compute={"instances": 10}, volume={"gigabytes": 1000, "volumes": 10}, network={"network": 10}
        )
    inventory = project_inventory(box_admin, scratch.id, scratch.domain_id)
    assert (inventory["servers"], inventory["volumes"], inventory["networks"]) == (0, 0, 0)


def test_flavor_larger_than_any_host_is_capacity_exhausted(
    box_admin: Conn, provisioner: OpenStackProvisioner, scratch: ProjectRef, image: Any, run_id: str, cleanup: Any
) -> None:
    provider = next(box_admin.placement.resource_providers())
    vcpu = box_admin.placement.get_resource_provider_inventory("VCPU", provider)
    huge = FlavorSpec(name=f"chutian-test-huge-{run_id}", vcpus=vcpu.max_unit + 1, ram_mb=128, disk_gb=1)
    cleanup(lambda: _delete_flavor(box_admin, huge.name))
    provisioner.ensure_flavors([huge])
    provisioner.set_quotas(scratch, compute={"cores": -1, "instances": 10})
    cleanup(lambda: provisioner.delete_server(scratch, "too-big"))

    with pytest.raises(CapacityExhausted, match="No valid host"):
        provisioner.ensure_server(scratch, ServerSpec(tag="too-big", flavor=huge.name, image=image.id))
    with pytest.raises(CapacityExhausted):  # a retried step reports the same, and makes nothing new
        provisioner.ensure_server(scratch, ServerSpec(tag="too-big", flavor=huge.name, image=image.id))
    errored = list(box_admin.compute.servers(all_projects=True, project_id=scratch.id))
    assert [s.status for s in errored] == ["ERROR"]


def test_volume_larger_than_any_pool_is_capacity_exhausted(
    box_admin: Conn, provisioner: OpenStackProvisioner, scratch: ProjectRef, cleanup: Any
) -> None:
    pools = [p.capabilities for p in box_admin.block_storage.backend_pools()]
    biggest = max(int(c["total_capacity_gb"] * max(1.0, float(c.get("max_over_subscription_ratio", 1)))) for c in pools)
    provisioner.set_quotas(scratch, volume={"gigabytes": -1, "volumes": 10})
    cleanup(lambda: provisioner.delete_volume(scratch, "too-big"))
    with pytest.raises(CapacityExhausted, match="available weighted backend"):
        provisioner.ensure_volume(scratch, VolumeSpec(tag="too-big", size_gb=biggest + 1))


def test_server_failing_for_another_reason_is_backend_resource_failed(
    box_admin: Conn, provisioner: OpenStackProvisioner, county: Onboarded, flavor: FlavorSpec, image: Any, cleanup: Any
) -> None:
    """The box's Neutron has no agents, so a port never binds and Nova aborts the build."""
    spec = ServerSpec(tag="on-a-network", flavor=flavor.name, image=image.id, networks=(network_name("egov-extranet"),))
    cleanup(lambda: provisioner.delete_server(county.project, spec.tag))
    with pytest.raises(BackendResourceFailed, match="ERROR"):
        provisioner.ensure_server(county.project, spec)


def test_wrong_password_is_backend_auth_error(box_admin: Conn) -> None:
    wrong = OpenStackProvisioner.from_config(
        CloudConfig(region=REGION, auth=admin_auth(password="not-the-password")), FAST
    )
    with pytest.raises(BackendAuthError, match="401"):
        wrong.ensure_domain("never-made")
    assert box_admin.identity.find_domain("never-made", ignore_missing=True) is None


def test_policy_refusal_and_revoked_credentials_are_backend_auth_errors(
    box_admin: Conn, provisioner: OpenStackProvisioner, scratch: ProjectRef, run_id: str, cleanup: Any
) -> None:
    idn = box_admin.identity
    password = uuid.uuid4().hex
    user = idn.create_user(name=f"chutian-test-user-{run_id}", domain_id=scratch.domain_id, password=password)
    cleanup(lambda: idn.delete_user(user, ignore_missing=True))
    idn.assign_project_role_to_user(scratch.id, user, idn.find_role("member"))
    member = OpenStackProvisioner.from_config(
        CloudConfig(
            region=REGION,
            auth={
                "auth_url": "http://127.0.0.1:15000/v3",
                "username": user.name,
                "password": password,
                "user_domain_id": scratch.domain_id,
                "project_id": scratch.id,
            },
        ),
        FAST,
    )
    cleanup(member.close)
    assert member.find_server(scratch, "nothing") is None  # the credentials work

    with pytest.raises(BackendAuthError, match="403"):
        member.ensure_domain(f"hubei.t{run_id}-forbidden")

    # Disabling the user revokes its tokens; Keystone notices at once (Nova and Cinder only when
    # their keystonemiddleware token cache expires). keystoneauth re-authenticates on the 401,
    # which the disabled user cannot.
    idn.update_user(user, is_enabled=False)
    with pytest.raises(BackendAuthError, match="401"):
        member.ensure_domain(f"hubei.t{run_id}-forbidden")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_keystone_on_a_closed_port_is_transient() -> None:
    gone = OpenStackProvisioner.from_config(
        CloudConfig(region=REGION, auth=admin_auth(auth_url=f"http://127.0.0.1:{_closed_port()}/v3")), FAST
    )
    with pytest.raises(TransientBackendError, match=r"(?i)unable to establish connection"):
        gone.ensure_domain("never-made")


def test_a_service_endpoint_on_a_closed_port_is_transient(box_admin: Conn) -> None:
    conn = openstack.connect(
        auth=admin_auth(),
        region_name=REGION,
        load_yaml_config=False,
        load_envvars=False,
        compute_endpoint_override=f"http://127.0.0.1:{_closed_port()}/v2.1",
    )
    partial = OpenStackProvisioner(conn, region=REGION, settings=FAST)
    try:
        with pytest.raises(TransientBackendError, match=r"(?i)unable to establish connection"):
            partial.ensure_flavors([FlavorSpec("never-made", 1, 64, 1)])
    finally:
        partial.close()


class _Refusing(http.server.BaseHTTPRequestHandler):
    """Stands in for an overloaded API: no box service can be made to answer 429/503 safely."""

    status = 503

    def _answer(self) -> None:
        body = json.dumps({"error": {"code": self.status, "message": "try again later"}}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("where", ["keystone", "compute"])
def test_rate_limit_and_unavailable_are_transient(status: int, where: str) -> None:
    handler = type("Refusing", (_Refusing,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        if where == "keystone":
            conn = openstack.connect(
                auth=admin_auth(auth_url=f"{url}/v3"), region_name=REGION, load_yaml_config=False, load_envvars=False
            )
        else:  # a real token from the box, then a refusing Nova
            conn = openstack.connect(
                auth=admin_auth(),
                region_name=REGION,
                load_yaml_config=False,
                load_envvars=False,
                compute_endpoint_override=f"{url}/v2.1",
            )
        prov = OpenStackProvisioner(conn, region=REGION, settings=FAST)
        try:
            with pytest.raises(TransientBackendError, match=str(status)):
                if where == "keystone":
                    prov.ensure_domain("never-made")
                else:
                    prov.ensure_flavors([FlavorSpec("never-made", 1, 64, 1)])
        finally:
            prov.close()
    finally:
        server.shutdown()
        server.server_close()


def test_duplicate_name_conflict_is_transient(box_admin: Conn, county: Onboarded) -> None:
    """Keystone's 409, as when two workers create the same project at once: the retry finds it."""
    with pytest.raises(TransientBackendError, match="409"), translated("openstack:wuhan"):
        box_admin.identity.create_project(name=county.project.name, domain_id=county.domain.id)


def test_unknown_project_is_backend_not_found(provisioner: OpenStackProvisioner, county: Onboarded) -> None:
    ghost = ProjectRef(id=uuid.uuid4().hex, name="ghost", domain_id=county.domain.id)
    with pytest.raises(BackendNotFound, match="404"):
        provisioner.ensure_group_access(ghost, county.groups[0])


def test_request_the_service_rejects_is_invalid_spec(
    provisioner: OpenStackProvisioner, scratch: ProjectRef, flavor: FlavorSpec, image: Any
) -> None:
    bad_zone = {"broken": ZoneProfile(cidr="10.1.2.0/33", ingress=())}
    broken = OpenStackProvisioner(provisioner.conn, region=REGION, settings=replace(FAST, zones=bad_zone))
    with pytest.raises(InvalidSpec, match="400"):  # Neutron refuses the CIDR
        broken.ensure_tenant_network(scratch, "broken", "ext-egov")
    with pytest.raises(InvalidSpec, match="unknown flavor"):  # refused before any create
        provisioner.ensure_server(scratch, ServerSpec(tag="x", flavor="no-such-flavor", image=image.id))
    with pytest.raises(InvalidSpec, match="unknown compute quota"):
        provisioner.set_quotas(scratch, compute={"vcpus": 4})


def test_a_service_the_region_does_not_run_is_misconfigured(box_admin: Conn) -> None:
    with pytest.raises(BackendMisconfigured), translated("openstack:wuhan"):
        list(box_admin.dns.zones())
