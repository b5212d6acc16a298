"""Per-project usage and region capacity, in the ledger's resource names."""

from __future__ import annotations

import math
from typing import Any

from provisioners.base import ProjectRef, RegionCapacity
from provisioners.openstack.common import OpenStackBase
from quotas import INSTANCES, RAM_MB, VCPUS, VOLUME_GB, VOLUMES

PLACEMENT_CLASSES = {"VCPU": VCPUS, "MEMORY_MB": RAM_MB}


def _number(value: Any) -> float | None:
    """Cinder reports `infinite`/`unknown` for some drivers: those pools add nothing we can count."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class UsageOps(OpenStackBase):
    def project_usage(self, project: ProjectRef) -> dict[str, int]:
        """What Nova (limits: total*Used) and Cinder (quota usage in_use) count against the project."""
        with self.errors():
            absolute = self.conn.compute.get_limits(tenant_id=project.id).absolute
            volume = self.conn.block_storage.get_quota_set(project.id, usage=True).usage or {}
        return {
            VCPUS: int(absolute.total_cores_used or 0),
            RAM_MB: int(absolute.total_ram_used or 0),
            INSTANCES: int(absolute.instances_used or 0),
            VOLUME_GB: int(volume.get("gigabytes", 0) or 0),
            VOLUMES: int(volume.get("volumes", 0) or 0),
        }

    def region_capacity(self) -> RegionCapacity:
        """vCPU/RAM: Σ (total − reserved) × allocation_ratio over Placement's providers, as the
        scheduler counts it; volume_gb: Σ Cinder pools' total_capacity_gb. `allocated` is
        Placement's usages and the pools' allocated_capacity_gb."""
        total = {VCPUS: 0.0, RAM_MB: 0.0, VOLUME_GB: 0.0}
        allocated = {VCPUS: 0.0, RAM_MB: 0.0, VOLUME_GB: 0.0}
        with self.errors():
            placement = self.conn.placement
            for provider in placement.resource_providers():
                for inventory in placement.resource_provider_inventories(provider):
                    name = PLACEMENT_CLASSES.get(inventory.resource_class)
                    if name is not None:
                        ratio = inventory.allocation_ratio or 1.0
                        total[name] += (inventory.total - (inventory.reserved or 0)) * ratio
                usages = placement.fetch_resource_provider_usages(provider).usages or {}
                for resource_class, amount in usages.items():
                    name = PLACEMENT_CLASSES.get(resource_class)
                    if name is not None:
                        allocated[name] += amount
            for pool in self.conn.block_storage.backend_pools():
                capabilities = pool.capabilities or {}
                size = _number(capabilities.get("total_capacity_gb"))
                if size is not None and math.isfinite(size):
                    total[VOLUME_GB] += size
                used = _number(capabilities.get("allocated_capacity_gb"))
                if used is not None and math.isfinite(used):
                    allocated[VOLUME_GB] += used
        return RegionCapacity(
            total={k: math.floor(v) for k, v in total.items()},
            allocated={k: math.floor(v) for k, v in allocated.items()},
        )
