"""Periodic catalogue sync with each OpenStack region: the site file's flavors are ensured in
Nova (created if missing, never changed: a mismatch is reported) and the region's public,
active Glance images become what VM requests may name."""

from __future__ import annotations

import logging
from typing import Any

from controlplane.audit.chain import append_hook
from controlplane.auth.principal import system_principal
from controlplane.catalogue import service
from controlplane.db.uow import unit_of_work
from controlplane.requests import backends
from controlplane.worker.registry import periodic, task
from controlplane.worker.runtime import WorkerContext

log = logging.getLogger(__name__)
SYNC_TASK = "chutian.catalogue.sync"


def sync_region(ctx: WorkerContext, region: str) -> dict[str, Any]:
    provisioner = backends.openstack(ctx, region)
    if provisioner is None:
        return {"region": region, "skipped": "not an OpenStack region: images come from the site file"}
    from provisioners.base import FlavorSpec

    flavors = backends.call(
        provisioner.ensure_flavors, [FlavorSpec(f.name, f.vcpus, f.ram_mb, f.disk_gb) for f in ctx.site.flavors]
    )
    for mismatch in flavors.mismatches:
        log.warning("region %s: flavor differs from the site file, left alone: %s", region, mismatch)
    found = backends.call(provisioner.public_images)
    with unit_of_work(
        ctx.engine, clock=ctx.clock, principal=system_principal("catalogue-sync"), before_commit=[append_hook]
    ) as uow:
        changed = service.sync_glance_images(uow, region, found)
    return {
        "region": region,
        "flavors_created": list(flavors.created),
        "flavor_mismatches": len(flavors.mismatches),
        "images": len(found),
        **changed,
    }


@task(SYNC_TASK)
def sync(ctx: WorkerContext) -> list[dict[str, Any]]:
    return backends.each_region(ctx, sync_region, "catalogue sync")


periodic("catalogue-sync", SYNC_TASK, lambda s: s.catalogue_sync_interval_s)
