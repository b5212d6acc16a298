"""chutian_capacity_total / _allocated / _used per region and resource, from rows.

total: the region node's limit (measured capacity once the backend reported it, else raw
capacity x overcommit from the site file); allocated: what the ledger has handed out
(the region node's consumption); used: what the backend reports allocated.

chutian_capacity_demand{region,cloud,resource}: approved-but-not-provisioned demand, the
part of approved or provisioning requests' reservations not yet committed. Per cloud, the
ledger's allocation is `chutian_quota_used + chutian_quota_reserved` at the province node
(recording rule `chutian:capacity_allocated_by_cloud`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from controlplane.capacity.models import CapacitySample
from controlplane.ledger.models import QuotaNode, Reservation
from controlplane.metrics import COLLECTOR_FACTORIES
from controlplane.requests.models import Request
from controlplane.requests.states import RequestState

DEMAND_STATES = (RequestState.APPROVED.value, RequestState.PROVISIONING.value)


class CapacityCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        labels = ["region", "resource"]
        total = GaugeMetricFamily("chutian_capacity_total", "Allocatable capacity after overcommit", labels=labels)
        allocated = GaugeMetricFamily("chutian_capacity_allocated", "Capacity handed out by the ledger", labels=labels)
        used = GaugeMetricFamily("chutian_capacity_used", "Capacity the backend reports allocated", labels=labels)
        demand = GaugeMetricFamily(
            "chutian_capacity_demand",
            "Approved but not yet provisioned demand (uncommitted reservations of approved requests)",
            labels=["region", "cloud", "resource"],
        )
        with Session(self.engine) as session:
            for node in session.scalars(select(QuotaNode).where(col(QuotaNode.tenant_id).is_(None))):
                for resource, limit in sorted((node.limits or {}).items()):
                    if limit is not None:
                        total.add_metric([node.region, resource], float(limit))
                for resource, amount in sorted((node.consumption or {}).items()):
                    allocated.add_metric([node.region, resource], float(amount))
            for sample in session.scalars(select(CapacitySample)):
                used.add_metric([sample.region, sample.resource], float(sample.allocated))
            pending = _demand(session)
        for (region, cloud, resource), amount in sorted(pending.items()):
            demand.add_metric([region, cloud, resource], amount)
        yield total
        yield allocated
        yield used
        yield demand

    def describe(self) -> Iterable[Any]:
        return []


def _demand(session: Session) -> dict[tuple[str, str, str], float]:
    """Sum what approved/provisioning requests reserved and have not committed yet, per node's
    region and cloud. Only open requests hold reservations, so this stays small."""
    holds = session.execute(
        select(Reservation.owner, Reservation.amounts, Reservation.committed, QuotaNode.region, QuotaNode.cloud)
        .join(QuotaNode, col(QuotaNode.id) == col(Reservation.node_id))
        .where(col(Reservation.owner).startswith("request:"))
    ).all()
    ids = {}
    for owner, *_ in holds:
        try:
            ids[owner] = uuid.UUID(owner.removeprefix("request:"))
        except ValueError:
            continue
    approved = (
        set(
            session.scalars(
                select(Request.id).where(col(Request.id).in_(ids.values()), col(Request.state).in_(DEMAND_STATES))
            )
        )
        if ids
        else set()
    )
    out: dict[tuple[str, str, str], float] = {}
    for owner, amounts, committed, region, cloud in holds:
        if ids.get(owner) not in approved:
            continue
        for resource, amount in (amounts or {}).items():
            left = float(amount) - float((committed or {}).get(resource, 0))
            if left > 0:
                key = (region, cloud or "", resource)
                out[key] = out.get(key, 0.0) + left
    return out


COLLECTOR_FACTORIES.append(CapacityCollector)
