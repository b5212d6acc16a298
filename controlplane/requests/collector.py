"""Request metrics from rows: requests by state and kind, and every transition ever made
(a counter read from the transitions table, so a restart never resets it)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from controlplane.metrics import COLLECTOR_FACTORIES
from controlplane.requests.models import Request, RequestTransition


class RequestCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily("chutian_requests", "Requests by state and kind", labels=["state", "kind"])
        transitions = CounterMetricFamily(
            "chutian_request_transitions", "Request state transitions", labels=["from_state", "to_state", "kind"]
        )
        with Session(self.engine) as session:
            for state, kind, n in session.execute(
                select(Request.state, Request.kind, func.count()).group_by(Request.state, Request.kind)
            ):
                by_state.add_metric([state, kind], float(n))
            for source, target, kind, n in session.execute(
                select(
                    RequestTransition.from_state, RequestTransition.to_state, RequestTransition.kind, func.count()
                ).group_by(RequestTransition.from_state, RequestTransition.to_state, RequestTransition.kind)
            ):
                transitions.add_metric([source, target, kind], float(n))
        yield by_state
        yield transitions

    def describe(self) -> Iterable[Any]:
        return []


COLLECTOR_FACTORIES.append(RequestCollector)
