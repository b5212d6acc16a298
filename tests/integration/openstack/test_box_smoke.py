"""Smoke test of the local OpenStack box: every API the control plane drives, as the box admin.

Each check reads back through the API what a user would notice; everything a
test creates is removed in a finalizer, even when the test fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import openstack.connection
import openstack.exceptions
import pytest

Conn = openstack.connection.Connection
Cleanup = Callable[[Callable[[], object]], None]
Names = Callable[[str], str]


def _ignore_missing(fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        try:
            return fn()
        except openstack.exceptions.NotFoundException:
            return None

    run.__name__ = getattr(fn, "__name__", "cleanup")
    return run


def test_catalog_has_every_service_in_region_wuhan(box_admin: Conn) -> None:
    services = {s.type for s in box_admin.identity.services()}
    assert {"identity", "compute", "placement", "block-storage", "image", "network"} <= services
    endpoints = list(box_admin.identity.endpoints(interface="public"))
    assert endpoints and {e.region_id for e in endpoints} == {"wuhan"}


def test_domain_project_group_and_role_assignment(box_admin: Conn, unique_name: Names, cleanup: Cleanup) -> None:
    idn = box_admin.identity
    domain = idn.create_domain(name=unique_name("domain"), description="smoke")

    def drop_domain() -> None:
        idn.update_domain(domain, is_enabled=False)
        idn.delete_domain(domain, ignore_missing=True)

    cleanup(drop_domain)
    project = idn.create_project(name=unique_name("project"), domain_id=domain.id, description="smoke project")
    cleanup(lambda: idn.delete_project(project, ignore_missing=True))
    group = idn.create_group(name=unique_name("group"), domain_id=domain.id)
    cleanup(lambda: idn.delete_group(group, ignore_missing=True))
    role = idn.find_role("member", ignore_missing=False)
    idn.assign_project_role_to_group(project, group, role)

    assert idn.get_domain(domain.id).name == domain.name
    fetched = idn.get_project(project.id)
    assert (fetched.name, fetched.domain_id, fetched.description) == (
        project.name,
        domain.id,
        "smoke project",
    )
    assert idn.get_group(group.id).domain_id == domain.id
    assert idn.validate_group_has_project_role(project, group, role)
    assignments = list(idn.role_assignments(scope_project_id=project.id, group_id=group.id))
    assert [a.role["id"] for a in assignments] == [role.id]

    idn.unassign_project_role_from_group(project, group, role)
    assert not idn.validate_group_has_project_role(project, group, role)


def test_compute_and_volume_quotas(box_admin: Conn, unique_name: Names, cleanup: Cleanup) -> None:
    project = box_admin.identity.create_project(name=unique_name("quota"), domain_id="default")
    cleanup(lambda: box_admin.identity.delete_project(project, ignore_missing=True))

    box_admin.set_compute_quotas(project.id, cores=37, ram=51200, instances=13)
    box_admin.set_volume_quotas(project.id, volumes=17, gigabytes=300, backups=7)

    compute = box_admin.get_compute_quotas(project.id)
    assert (compute.cores, compute.ram, compute.instances) == (37, 51200, 13)
    volume = box_admin.get_volume_quotas(project.id)
    assert (volume.volumes, volume.gigabytes, volume.backups) == (17, 300, 7)


@pytest.fixture
def tiny_image(box_admin: Conn, unique_name: Names, cleanup: Cleanup):
    data = os.urandom(4096)
    image = box_admin.image.create_image(
        name=unique_name("image"),
        data=data,
        disk_format="raw",
        container_format="bare",
        wait=True,
        timeout=120,
    )
    cleanup(_ignore_missing(lambda: box_admin.image.delete_image(image, ignore_missing=True)))
    return image


@pytest.fixture
def tiny_flavor(box_admin: Conn, unique_name: Names, cleanup: Cleanup):
    flavor = box_admin.compute.create_flavor(name=unique_name("flavor"), ram=64, vcpus=1, disk=1)
    cleanup(lambda: box_admin.compute.delete_flavor(flavor, ignore_missing=True))
    return flavor


def test_image_upload(box_admin: Conn, tiny_image) -> None:
    image = box_admin.image.get_image(tiny_image.id)
    assert image.status == "active"
    assert image.size == 4096
    assert image.disk_format == "raw"


def test_flavor(box_admin: Conn, tiny_flavor) -> None:
    flavor = box_admin.compute.get_flavor(tiny_flavor.id)
    assert (flavor.ram, flavor.vcpus, flavor.disk) == (64, 1, 1)


def test_server_boots_to_active_and_deletes(
    box_admin: Conn, tiny_image, tiny_flavor, unique_name: Names, cleanup: Cleanup
) -> None:
    compute = box_admin.compute
    server = compute.create_server(
        name=unique_name("server"), image_id=tiny_image.id, flavor_id=tiny_flavor.id, networks="none"
    )

    def drop_server() -> None:
        compute.delete_server(server, ignore_missing=True)
        compute.wait_for_delete(server, wait=120)

    cleanup(drop_server)
    server = compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=1, wait=180)
    fetched = compute.get_server(server.id)
    assert fetched.status == "ACTIVE"
    assert fetched.image.id == tiny_image.id
    assert fetched.flavor.name == tiny_flavor.name
    assert server.id in {s.id for s in compute.servers(name=server.name)}

    compute.delete_server(server)
    compute.wait_for_delete(server, interval=1, wait=120)
    assert compute.find_server(server.id, ignore_missing=True) is None


def test_volume_and_backup(box_admin: Conn, unique_name: Names, cleanup: Cleanup) -> None:
    bs = box_admin.block_storage
    volume = bs.create_volume(name=unique_name("volume"), size=1)

    def drop_volume() -> None:
        bs.delete_volume(volume, ignore_missing=True)
        bs.wait_for_delete(volume, wait=120)

    cleanup(drop_volume)
    volume = bs.wait_for_status(volume, status="available", failures=["error"], interval=1, wait=120)
    assert bs.get_volume(volume.id).size == 1

    backup = bs.create_backup(volume_id=volume.id, name=unique_name("backup"))

    def drop_backup() -> None:
        bs.delete_backup(backup, ignore_missing=True)
        bs.wait_for_delete(backup, wait=180)

    cleanup(drop_backup)
    backup = bs.wait_for_status(backup, status="available", failures=["error"], interval=2, wait=300)
    fetched = bs.get_backup(backup.id)
    assert (fetched.volume_id, fetched.size, fetched.status) == (volume.id, 1, "available")
    assert bs.get_volume(volume.id).status == "available"

    bs.delete_backup(backup)
    bs.wait_for_delete(backup, interval=2, wait=180)
    bs.delete_volume(volume)
    bs.wait_for_delete(volume, interval=1, wait=120)
    assert bs.find_volume(volume.id, ignore_missing=True) is None


def test_network_subnet_router_and_security_group(box_admin: Conn, unique_name: Names, cleanup: Cleanup) -> None:
    net = box_admin.network
    external = net.find_network("ext-egov", ignore_missing=False)
    assert external.is_router_external

    network = net.create_network(name=unique_name("net"))
    cleanup(lambda: net.delete_network(network, ignore_missing=True))
    subnet = net.create_subnet(name=unique_name("subnet"), network_id=network.id, ip_version=4, cidr="10.42.7.0/24")
    cleanup(lambda: net.delete_subnet(subnet, ignore_missing=True))
    router = net.create_router(name=unique_name("router"), external_gateway_info={"network_id": external.id})
    cleanup(lambda: net.delete_router(router, ignore_missing=True))
    net.add_interface_to_router(router, subnet_id=subnet.id)
    cleanup(_ignore_missing(lambda: net.remove_interface_from_router(router, subnet_id=subnet.id)))
    group = net.create_security_group(name=unique_name("sg"), description="smoke")
    cleanup(lambda: net.delete_security_group(group, ignore_missing=True))
    rule = net.create_security_group_rule(
        security_group_id=group.id,
        direction="ingress",
        ethertype="IPv4",
        protocol="tcp",
        port_range_min=22,
        port_range_max=22,
        remote_ip_prefix="10.0.0.0/8",
    )

    assert net.get_network(network.id).name == network.name
    fetched_subnet = net.get_subnet(subnet.id)
    assert (fetched_subnet.cidr, fetched_subnet.network_id) == ("10.42.7.0/24", network.id)
    fetched_router = net.get_router(router.id)
    assert fetched_router.external_gateway_info["network_id"] == external.id
    interfaces = list(net.ports(device_id=router.id, network_id=network.id))
    assert [p.fixed_ips[0]["subnet_id"] for p in interfaces] == [subnet.id]
    rules = {r["id"]: r for r in net.get_security_group(group.id).security_group_rules}
    assert rules[rule.id]["port_range_min"] == 22
    assert rules[rule.id]["remote_ip_prefix"] == "10.0.0.0/8"

    net.remove_interface_from_router(router, subnet_id=subnet.id)
    net.delete_router(router)
    net.delete_security_group(group)
    net.delete_subnet(subnet)
    net.delete_network(network)
    assert net.find_network(network.id, ignore_missing=True) is None
    assert net.find_router(router.id, ignore_missing=True) is None
    assert net.find_security_group(group.id, ignore_missing=True) is None
