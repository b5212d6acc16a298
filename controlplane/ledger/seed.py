"""Seeding the ledger from the catalogue (runs on every start, idempotent).

Every region gets its region node, limited by raw capacity x overcommit (a resource with no
capacity is unlimited); the site file is followed until the provisioner reports measured
capacity. The province gets a shared allocation without own limits in every region of
every themed cloud.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from controlplane.catalogue.models import CloudRow, RegionRow
from controlplane.db.uow import UnitOfWork
from controlplane.ledger.allocations import insert_allocation
from controlplane.ledger.chain import limits_json
from controlplane.ledger.models import AllocationMode, LimitSource, QuotaNode
from controlplane.ledger.service import apply_region_limits
from controlplane.tenants.models import Tenant
from quotas import NodeMode, region_limits


def seed_ledger(uow: UnitOfWork) -> dict[str, int]:
    counts = {"regions": 0, "region_limits": 0, "allocations": 0}
    now = uow.now()
    for region in uow.session.scalars(select(RegionRow).order_by(col(RegionRow.code))):
        limits = region_limits(region.spec.get("capacity", {}), region.spec.get("overcommit", {}))
        node = uow.session.scalars(
            select(QuotaNode).where(col(QuotaNode.region) == region.code, col(QuotaNode.tenant_id).is_(None))
        ).first()
        if node is None:
            uow.session.add(
                QuotaNode(
                    region=region.code,
                    depth=0,
                    mode=NodeMode.ROOT.value,
                    limits=limits_json(limits),
                    limits_source=LimitSource.SITE.value,
                    updated_at=now,
                )
            )
            counts["regions"] += 1
        elif node.limits_source == LimitSource.SITE and node.limits != limits_json(limits):
            apply_region_limits(uow, region.code, limits, source=LimitSource.SITE)
            counts["region_limits"] += 1
    uow.session.flush()
    province = uow.session.scalars(select(Tenant).where(col(Tenant.parent_id).is_(None))).first()
    if province is None:
        return counts
    existing = {
        (cloud, region)
        for cloud, region in uow.session.execute(
            select(QuotaNode.cloud, QuotaNode.region).where(col(QuotaNode.tenant_id) == province.id)
        )
    }
    for cloud in uow.session.scalars(select(CloudRow).order_by(col(CloudRow.code))):
        for region in cloud.spec.get("regions", []):
            if (cloud.code, region) not in existing:
                insert_allocation(uow, province.path, cloud.code, region, AllocationMode.SHARED, {}, actor="seed")
                counts["allocations"] += 1
    return counts
