"""The OpenStack adapter (openstacksdk): onboarding, servers, volumes, backups, buckets (Swift),
catalogue, usage, capacity and retirement for one region, errors mapped by `errors.ERROR_TABLE`."""

from provisioners.openstack.common import DEFAULT_ZONES, IngressRule, OpenStackSettings, ZoneProfile
from provisioners.openstack.connection import CloudConfig, ProjectConnections, build_connection
from provisioners.openstack.errors import ERROR_TABLE, ErrorRule, map_error, translated
from provisioners.openstack.network import network_name
from provisioners.openstack.object_store import quota_bytes
from provisioners.openstack.provisioner import (
    LEDGER_QUOTAS,
    Onboarded,
    OpenStackProvisioner,
    TenantOnboarding,
    domain_name,
    project_name,
    quotas_from_limits,
)

__all__ = [
    "DEFAULT_ZONES",
    "ERROR_TABLE",
    "LEDGER_QUOTAS",
    "CloudConfig",
    "ErrorRule",
    "IngressRule",
    "Onboarded",
    "OpenStackProvisioner",
    "OpenStackSettings",
    "ProjectConnections",
    "TenantOnboarding",
    "ZoneProfile",
    "build_connection",
    "domain_name",
    "map_error",
    "network_name",
    "project_name",
    "quota_bytes",
    "quotas_from_limits",
    "translated",
]
