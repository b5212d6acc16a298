"""chutian_quota_limit / _used / _reserved, read from the ledger rows at scrape time.

Labels: region, cloud, tenant (code), tenant_level (the tenant's kind: province, department,
city, county, district, unit; ``region`` for region nodes), resource. Only nodes down to
``CHUTIAN_QUOTA_METRICS_DEPTH`` tenant levels below the province are exported (default 1:
the province, departments and cities), so cardinality stays bounded however many counties
and units are onboarded; deeper consumption is already inside their ancestors' figures.

chutian_quota_nodes{region,cloud,tenant_level,mode} counts every node, at every depth, by
mode (slice or shared; root for region nodes): bounded by regions x clouds x kinds x modes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from controlplane.ledger.models import QuotaNode
from controlplane.metrics import COLLECTOR_FACTORIES
from controlplane.settings import get_settings
from controlplane.tenants.models import Tenant

LABELS = ["region", "cloud", "tenant", "tenant_level", "resource"]


class QuotaCollector(Collector):
    def __init__(self, engine: Engine, *, max_depth: int = 1) -> None:
        self.engine = engine
        self.max_depth = max_depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        limit = GaugeMetricFamily(
            "chutian_quota_limit", "Quota limit of a ledger node (absent: unlimited)", labels=LABELS
        )
        used = GaugeMetricFamily("chutian_quota_used", "Committed usage at a ledger node itself", labels=LABELS)
        reserved = GaugeMetricFamily(
            "chutian_quota_reserved", "Reserved, not yet committed, at a ledger node", labels=LABELS
        )
        stmt = (
            select(QuotaNode, Tenant.code, Tenant.kind)
            .outerjoin(Tenant, col(Tenant.id) == col(QuotaNode.tenant_id))
            .where(or_(col(QuotaNode.tenant_id).is_(None), col(QuotaNode.depth) <= self.max_depth + 1))
            .order_by(col(QuotaNode.region), col(QuotaNode.depth))
        )
        nodes = GaugeMetricFamily(
            "chutian_quota_nodes",
            "Ledger nodes by tenant level and mode (slice, shared; root: region)",
            labels=["region", "cloud", "tenant_level", "mode"],
        )
        counts = (
            select(QuotaNode.region, QuotaNode.cloud, Tenant.kind, QuotaNode.mode, func.count())
            .outerjoin(Tenant, col(Tenant.id) == col(QuotaNode.tenant_id))
            .group_by(QuotaNode.region, QuotaNode.cloud, Tenant.kind, QuotaNode.mode)
        )
        with Session(self.engine) as session:
            rows = list(session.execute(stmt))
            for region, cloud, kind, mode, n in session.execute(counts):
                nodes.add_metric([region, cloud or "", kind or "region", mode], float(n))
        for node, code, kind in rows:
            base = [node.region, node.cloud or "", code or "", kind or "region"]
            resources = sorted(set(node.limits) | set(node.used) | set(node.reserved))
            for resource in resources:
                labels = [*base, resource]
                if resource in node.limits:
                    limit.add_metric(labels, float(node.limits[resource]))
                used.add_metric(labels, float(node.used.get(resource, 0)))
                reserved.add_metric(labels, float(node.reserved.get(resource, 0)))
        yield limit
        yield used
        yield reserved
        yield nodes

    def describe(self) -> Iterable[Any]:
        return []


def quota_collector(engine: Engine) -> QuotaCollector:
    return QuotaCollector(engine, max_depth=get_settings().quota_metrics_depth)


if quota_collector not in COLLECTOR_FACTORIES:
    COLLECTOR_FACTORIES.append(quota_collector)
