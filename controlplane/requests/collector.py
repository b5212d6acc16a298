"""Request metrics from rows: requests by state and kind, every transition ever made (a
counter read from the transitions table, so a restart never resets it), and how long
approval took for requests approved in the last 24 h (submitted → approved)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from controlplane.metrics import COLLECTOR_FACTORIES
from controlplane.operations.collector import histogram_buckets
from controlplane.requests.models import Request, RequestTransition

APPROVAL_BUCKETS = (60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400, float("inf"))
WINDOW = timedelta(hours=24)


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
            waits = _approval_waits(session, datetime.now(UTC) - WINDOW)
        approval = HistogramMetricFamily(
            "chutian_request_approval_seconds",
            "Submitted to approved, for requests approved in the last 24 h",
            labels=["kind"],
        )
        for kind, values in sorted(waits.items()):
            approval.add_metric([kind], histogram_buckets(values, APPROVAL_BUCKETS), sum(values))
        yield by_state
        yield transitions
        yield approval

    def describe(self) -> Iterable[Any]:
        return []


def _approval_waits(session: Session, since: datetime) -> dict[str, list[float]]:
    """Per kind: from the last submit before each approval (in the window) to that approval."""
    approvals = session.execute(
        select(RequestTransition.request_id, RequestTransition.kind, RequestTransition.at).where(
            RequestTransition.to_state == "approved", col(RequestTransition.at) >= since
        )
    ).all()
    if not approvals:
        return {}
    submits: dict[Any, list[datetime]] = {}
    for request_id, at in session.execute(
        select(RequestTransition.request_id, RequestTransition.at).where(
            RequestTransition.to_state == "submitted",
            col(RequestTransition.request_id).in_({a.request_id for a in approvals}),
        )
    ):
        submits.setdefault(request_id, []).append(at)
    waits: dict[str, list[float]] = {}
    for request_id, kind, approved_at in approvals:
        before = [t for t in submits.get(request_id, []) if t <= approved_at]
        if before:
            waits.setdefault(kind, []).append((approved_at - max(before)).total_seconds())
    return waits


COLLECTOR_FACTORIES.append(RequestCollector)
