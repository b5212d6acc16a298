"""Retiring a project: everything in it (Swift containers too), in dependency order, then the project
and an empty domain."""

from __future__ import annotations

from collections import Counter
from typing import Any

from provisioners.base import ProjectRef, RetirementReport
from provisioners.openstack.common import MANAGED, get_or_none, identity, image
from provisioners.openstack.compute import ComputeOps
from provisioners.openstack.object_store import ObjectStoreOps
from provisioners.openstack.volume import VolumeOps

ROUTER_GATEWAY = "network:router_gateway"


class RetirementOps(ComputeOps, VolumeOps, ObjectStoreOps):
    def retire_project(self, project: ProjectRef, *, drop_empty_domain: bool = True) -> RetirementReport:
        """Idempotent: every step lists what is left by project id (as admin) and deletes it, so a
        pass interrupted anywhere is finished by the next one.

        The domain goes only when no project is left in it; the check is repeated after
        disabling it, but onboarding and retirement in one domain should still be serialised by
        the caller (deleting a domain deletes what is in it).
        """
        deleted: Counter[str] = Counter()
        admin = self.conn
        with self.errors():
            servers = list(admin.compute.servers(details=True, all_projects=True, project_id=project.id))
            self._delete_servers(admin, servers)
            deleted["servers"] += len(servers)

            backups = [
                b
                for b in admin.block_storage.backups(details=True, all_projects=True, project_id=project.id)
                if b.project_id in (None, project.id)
            ]
            self._delete_backups(admin, backups)
            deleted["backups"] += len(backups)
            volumes = list(admin.block_storage.volumes(details=True, all_projects=True, project_id=project.id))
            self._delete_volumes(admin, volumes)
            deleted["volumes"] += len(volumes)
            for found in image(admin).images(owner=project.id):
                image(admin).delete_image(found, ignore_missing=True)
                deleted["images"] += 1

            self._retire_network(project, deleted)

            exists = get_or_none(identity(admin).get_project, project.id) is not None
            if exists:  # Swift's account is reached through a token scoped to the project
                deleted["buckets"] += self._delete_project_buckets(project)
            if exists:  # Nova refuses quota calls for a project Keystone no longer knows
                admin.compute.revert_quota_set(project.id)
            admin.block_storage.revert_quota_set(project.id)
            admin.network.delete_quota(project.id)

            self._projects.forget(project.id)
            if exists:
                identity(admin).delete_project(project.id, ignore_missing=True)
            domain_deleted = drop_empty_domain and self._drop_domain_if_empty(project.domain_id)
        return RetirementReport(
            deleted={k: v for k, v in sorted(deleted.items()) if v},
            project_deleted=exists,
            domain_deleted=domain_deleted,
        )

    def _retire_network(self, project: ProjectRef, deleted: Counter[str]) -> None:
        net = self.conn.network
        for ip in net.ips(project_id=project.id):
            net.delete_ip(ip, ignore_missing=True)
            deleted["floating_ips"] += 1
        for router in net.routers(project_id=project.id):
            if router.external_gateway_info:
                net.update_router(router, external_gateway_info={})
            for port in net.ports(device_id=router.id):
                if port.device_owner != ROUTER_GATEWAY:
                    net.remove_interface_from_router(router, port=port.id)
            net.delete_router(router, ignore_missing=True)
            deleted["routers"] += 1
        networks = list(net.networks(project_id=project.id))
        ports: dict[str, Any] = {p.id: p for p in net.ports(project_id=project.id)}
        for network in networks:
            ports.update({p.id: p for p in net.ports(network_id=network.id)})
        for port in ports.values():
            net.delete_port(port, ignore_missing=True)
            deleted["ports"] += 1
        for subnet in net.subnets(project_id=project.id):
            net.delete_subnet(subnet, ignore_missing=True)
            deleted["subnets"] += 1
        for network in networks:
            net.delete_network(network, ignore_missing=True)
            deleted["networks"] += 1
        # Listing security groups *filtered by project* makes Neutron create that project's
        # `default` group: list them all and filter here instead.
        for group in net.security_groups():
            if group.project_id == project.id:
                net.delete_security_group(group, ignore_missing=True)
                deleted["security_groups"] += 1

    def _drop_domain_if_empty(self, domain_id: str) -> bool:
        idn = identity(self.conn)
        domain = get_or_none(idn.get_domain, domain_id)
        if domain is None or not (domain.description or "").startswith(f"{MANAGED}:"):
            return False
        if next(iter(idn.projects(domain_id=domain_id)), None) is not None:
            return False
        idn.update_domain(domain, is_enabled=False)
        if next(iter(idn.projects(domain_id=domain_id)), None) is not None:
            idn.update_domain(domain, is_enabled=True)  # someone onboarded into it meanwhile
            return False
        idn.delete_domain(domain, ignore_missing=True)
        return True
