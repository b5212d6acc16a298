"""A project's default network per network zone: network, subnet, router (gateway on the
zone's external network) and a security group with the zone's ingress rules."""

from __future__ import annotations

from typing import Any

from provisioners.base import ProjectRef, TenantNetworkRef
from provisioners.openstack.common import MANAGED, IngressRule, OpenStackBase

ANYWHERE = "0.0.0.0/0"


def network_name(zone: str) -> str:
    return f"chutian-{zone}"


def _rule_key(protocol: str | None, prefix: str | None, low: int | None, high: int | None) -> tuple[Any, ...]:
    return (protocol, prefix or ANYWHERE, low, high)


def _wanted_key(rule: IngressRule) -> tuple[Any, ...]:
    return _rule_key(rule.protocol, rule.remote_ip_prefix, rule.port_min, rule.port_max)


class NetworkOps(OpenStackBase):
    def ensure_tenant_network(self, project: ProjectRef, zone: str, external_network: str) -> TenantNetworkRef:
        """Find-or-create each piece by name in the project; a missing gateway or interface is added.

        Existing subnets keep their CIDR and extra security-group rules stay (a direct-access
        tenant may have added them); only what is missing is created.
        """
        profile = self.settings.zones.get(zone)
        if profile is None:
            raise self.invalid(f"unknown network zone {zone!r}; known: {sorted(self.settings.zones)}")
        name = network_name(zone)
        with self.errors():
            candidates = list(self.conn.network.networks(name=external_network, is_router_external=True))
            if len(candidates) != 1:
                raise self.invalid(
                    f"{external_network!r} names {len(candidates)} external networks in region {self.region}, not 1"
                )
            external = candidates[0]
            net = self.scoped(project).network
            network = next(iter(net.networks(name=name, project_id=project.id)), None)
            if network is None:
                network = net.create_network(name=name, description=f"{MANAGED}: default network, zone {zone}")
            subnet = next(iter(net.subnets(name=name, network_id=network.id)), None)
            if subnet is None:
                subnet = net.create_subnet(
                    name=name,
                    network_id=network.id,
                    ip_version=4,
                    cidr=profile.cidr,
                    dns_nameservers=list(profile.dns_nameservers),
                )
            router = next(iter(net.routers(name=name, project_id=project.id)), None)
            if router is None:
                router = net.create_router(name=name, external_gateway_info={"network_id": external.id})
            elif (router.external_gateway_info or {}).get("network_id") != external.id:
                router = net.update_router(router, external_gateway_info={"network_id": external.id})
            attached = any(
                ip.get("subnet_id") == subnet.id
                for port in net.ports(device_id=router.id, network_id=network.id)
                for ip in port.fixed_ips or []
            )
            if not attached:
                net.add_interface_to_router(router, subnet=subnet.id)
            group = next(iter(net.security_groups(name=name, project_id=project.id)), None)
            if group is None:
                group = net.create_security_group(name=name, description=f"{MANAGED}: zone {zone}")
            have = {
                _rule_key(r.protocol, r.remote_ip_prefix, r.port_range_min, r.port_range_max)
                for r in net.security_group_rules(security_group_id=group.id, direction="ingress")
            }
            for rule in profile.ingress:
                if _wanted_key(rule) not in have:
                    net.create_security_group_rule(
                        security_group_id=group.id,
                        direction="ingress",
                        ethertype="IPv4",
                        protocol=rule.protocol,
                        port_range_min=rule.port_min,
                        port_range_max=rule.port_max,
                        remote_ip_prefix=rule.remote_ip_prefix,
                    )
            return TenantNetworkRef(
                network_id=network.id,
                subnet_id=subnet.id,
                router_id=router.id,
                security_group_id=group.id,
                external_network_id=external.id,
            )
