"""Periodic usage and capacity sync from each region's backend into the ledger.

Capacity replaces the site file's raw figures in the region node (`vcpus`, `ram_mb` from
Placement, `volume_gb` from Cinder's pools); per-project usage goes through the ledger's
usage-sync hook, which records drift instead of overwriting `used`.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from controlplane.audit.chain import append_hook
from controlplane.auth.principal import system_principal
from controlplane.capacity.models import CapacitySample
from controlplane.db.uow import UnitOfWork, unit_of_work
from controlplane.ledger import service as ledger
from controlplane.ledger.models import Allocation, AllocationStatus, LimitSource
from controlplane.ledger.usage import report_usage
from controlplane.requests import backends
from controlplane.tenants.models import Tenant
from controlplane.worker.registry import periodic, task
from controlplane.worker.runtime import WorkerContext

log = logging.getLogger(__name__)
SYNC_TASK = "chutian.capacity.sync"
CAPACITY_RESOURCES = ("vcpus", "ram_mb", "volume_gb")


def _unit(ctx: WorkerContext) -> Any:
    return unit_of_work(
        ctx.engine, clock=ctx.clock, principal=system_principal("capacity-sync"), before_commit=[append_hook]
    )


def sync_region(ctx: WorkerContext, region: str) -> dict[str, Any]:
    provisioner = backends.openstack(ctx, region)
    if provisioner is None:
        return {"region": region, "skipped": "not an OpenStack region"}
    capacity = backends.call(provisioner.region_capacity)
    with _unit(ctx) as uow:
        measured = {r: int(capacity.total[r]) for r in CAPACITY_RESOURCES if r in capacity.total}
        ledger.set_region_limits(uow, region, measured, source=LimitSource.MEASURED)
        _store_samples(uow, region, capacity)
    drift = 0
    for allocation_id, path, cloud in _allocations(ctx, region):
        from provisioners.openstack import domain_name, project_name

        project = backends.call(provisioner.find_project, domain_name(path), project_name(path, cloud))
        if project is None:
            continue
        usage = backends.call(provisioner.project_usage, project)
        with _unit(ctx) as uow:
            if report_usage(uow, allocation_id, usage, "openstack") is not None:
                drift += 1
    return {"region": region, "capacity": measured, "allocations_with_drift": drift}


def _store_samples(uow: UnitOfWork, region: str, capacity: Any) -> None:
    now = uow.now()
    for resource, total in capacity.total.items():
        row = uow.session.get(CapacitySample, (region, resource))
        allocated = int(capacity.allocated.get(resource, 0))
        if row is None:
            uow.session.add(
                CapacitySample(
                    region=region,
                    resource=resource,
                    total=int(total),
                    allocated=allocated,
                    source="openstack",
                    measured_at=now,
                )
            )
        else:
            row.total, row.allocated, row.measured_at = int(total), allocated, now


def _allocations(ctx: WorkerContext, region: str) -> list[tuple[Any, str, str]]:
    with unit_of_work(ctx.engine, readonly=True) as uow:
        rows = uow.session.execute(
            select(Allocation.id, Tenant.path, Allocation.cloud)
            .join(Tenant, Tenant.id == Allocation.tenant_id)
            .where(Allocation.region == region, Allocation.status == AllocationStatus.ACTIVE.value)
        ).all()
    return [(a, p, c) for a, p, c in rows if "." in p]  # the province itself has no project


@task(SYNC_TASK)
def sync(ctx: WorkerContext) -> list[dict[str, Any]]:
    return backends.each_region(ctx, sync_region, "capacity/usage sync")


periodic("capacity-sync", SYNC_TASK, lambda s: s.capacity_sync_interval_s)
