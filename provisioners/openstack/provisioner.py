"""`OpenStackProvisioner`: one region's OpenStack behind every Protocol in `provisioners.base`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from provisioners.base import (
    DomainRef,
    GroupRef,
    ProjectRef,
    ProjectTags,
    QuotaSet,
    TenantNetworkRef,
)
from provisioners.errors import InvalidSpec
from provisioners.openstack.common import OpenStackSettings
from provisioners.openstack.connection import CloudConfig, Connection, build_connection
from provisioners.openstack.identity import IdentityOps
from provisioners.openstack.network import NetworkOps
from provisioners.openstack.retire import RetirementOps
from provisioners.openstack.usage import UsageOps
from quotas import BACKUP_GB, INSTANCES, RAM_MB, VCPUS, VOLUME_GB, VOLUMES, Limits

PROJECT_SEPARATOR = "--"


def project_name(tenant_path: str, cloud: str) -> str:
    """`hubei.wuhan.jiangan` + `education` → `hubei.wuhan.jiangan--education` (unique in its domain)."""
    return f"{tenant_path}{PROJECT_SEPARATOR}{cloud}"


def domain_name(tenant_path: str) -> str:
    """The prefecture-level city or provincial department a tenant belongs to: the path's first two codes."""
    codes = tenant_path.split(".")
    if len(codes) < 2 or not all(codes):
        raise InvalidSpec(f"tenant path {tenant_path!r} has no city or department", backend="openstack")
    return ".".join(codes[:2])


# The ledger's resource → (service, backend-native quota name).
LEDGER_QUOTAS: Mapping[str, tuple[str, str]] = {
    VCPUS: ("compute", "cores"),
    RAM_MB: ("compute", "ram"),
    INSTANCES: ("compute", "instances"),
    VOLUME_GB: ("volume", "gigabytes"),
    VOLUMES: ("volume", "volumes"),
    BACKUP_GB: ("volume", "backup_gigabytes"),
}


def quotas_from_limits(limits: Limits) -> QuotaSet:
    """A direct-access slice's limits as OpenStack quotas (UNLIMITED → -1); other resources are ignored."""
    out: dict[str, dict[str, int]] = {"compute": {}, "volume": {}, "network": {}}
    for resource, (service, name) in LEDGER_QUOTAS.items():
        if resource in limits:
            limit = limits[resource]
            out[service][name] = -1 if limit is None else limit
    return QuotaSet(compute=out["compute"], volume=out["volume"], network=out["network"])


@dataclass(frozen=True)
class TenantOnboarding:
    """Everything one allocation's onboarding makes, for `onboard` (steps can also be run one by one)."""

    tenant_path: str
    cloud: str
    mlps_ceiling: int
    zone: str
    external_network: str
    groups: tuple[str, ...] = ()
    direct_access: bool = False
    quotas: QuotaSet = field(default_factory=QuotaSet)


@dataclass(frozen=True)
class Onboarded:
    domain: DomainRef
    project: ProjectRef
    groups: tuple[GroupRef, ...]
    quotas: QuotaSet
    network: TenantNetworkRef


class OpenStackProvisioner(IdentityOps, NetworkOps, RetirementOps, UsageOps):
    """One region. Thread-safe for concurrent steps (openstacksdk connections are); build one per
    region and process, after fork."""

    def __init__(
        self,
        connection: Connection,
        *,
        region: str,
        settings: OpenStackSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(connection, region=region, settings=settings, sleep=sleep, monotonic=monotonic)

    @classmethod
    def from_config(cls, config: CloudConfig, settings: OpenStackSettings | None = None) -> OpenStackProvisioner:
        return cls(build_connection(config), region=config.region, settings=settings)

    def onboard(self, spec: TenantOnboarding, *, progress: Callable[[str], None] | None = None) -> Onboarded:
        """Domain → project → groups and roles → quotas → default network; each step find-or-create.

        ``progress`` hears each part's name once it exists (operation progress; the control
        plane's fault hook kills a worker there to prove a re-run makes no duplicate)."""
        done = progress or (lambda part: None)
        domain = self.ensure_domain(domain_name(spec.tenant_path), (f"unit:{domain_name(spec.tenant_path)}",))
        done("domain")
        project = self.ensure_project(
            domain,
            project_name(spec.tenant_path, spec.cloud),
            ProjectTags(tenant=spec.tenant_path, cloud=spec.cloud, mlps_ceiling=spec.mlps_ceiling),
        )
        done("project")
        groups = tuple(self.ensure_group(domain, name) for name in spec.groups)
        for group in groups:
            self.ensure_group_access(project, group, direct_access=spec.direct_access)
        done("groups")
        quotas = self.set_quotas(
            project, compute=spec.quotas.compute, volume=spec.quotas.volume, network=spec.quotas.network
        )
        done("quotas")
        network = self.ensure_tenant_network(project, spec.zone, spec.external_network)
        done("network")
        return Onboarded(domain=domain, project=project, groups=groups, quotas=quotas, network=network)
