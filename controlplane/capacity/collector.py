"""chutian_capacity_total / _allocated / _used per region and resource, from rows.

total: the region node's limit (measured capacity once the backend reported it, else raw
capacity x overcommit from the site file); allocated: what the ledger has handed out
(the region node's consumption); used: what the backend reports allocated.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from controlplane.capacity.models import CapacitySample
from controlplane.ledger.models import QuotaNode
from controlplane.metrics import COLLECTOR_FACTORIES


class CapacityCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        labels = ["region", "resource"]
        total = GaugeMetricFamily("chutian_capacity_total", "Allocatable capacity after overcommit", labels=labels)
        allocated = GaugeMetricFamily("chutian_capacity_allocated", "Capacity handed out by the ledger", labels=labels)
        used = GaugeMetricFamily("chutian_capacity_used", "Capacity the backend reports allocated", labels=labels)
        with Session(self.engine) as session:
            for node in session.scalars(select(QuotaNode).where(col(QuotaNode.tenant_id).is_(None))):
                for resource, limit in sorted((node.limits or {}).items()):
                    if limit is not None:
                        total.add_metric([node.region, resource], float(limit))
                for resource, amount in sorted((node.consumption or {}).items()):
                    allocated.add_metric([node.region, resource], float(amount))
            for sample in session.scalars(select(CapacitySample)):
                used.add_metric([sample.region, sample.resource], float(sample.allocated))
        yield total
        yield allocated
        yield used

    def describe(self) -> Iterable[Any]:
        return []


COLLECTOR_FACTORIES.append(CapacityCollector)
