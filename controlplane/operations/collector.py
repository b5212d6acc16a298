"""Operation metrics from rows at scrape time: counts by state, oldest running, durations,
and backend errors (one row per error a provisioner raised in a step, so a counter)."""

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
from controlplane.operations.models import TERMINAL_STATES, BackendErrorEvent, Operation, OperationState

BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, float("inf"))
WINDOW = timedelta(hours=24)


class OperationCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        counts = GaugeMetricFamily("chutian_operations", "Operations by kind and state", labels=["kind", "state"])
        oldest = GaugeMetricFamily(
            "chutian_operation_oldest_running_seconds",
            "Age of the oldest running operation (0: none running)",
            labels=["kind"],
        )
        durations = HistogramMetricFamily(
            "chutian_operation_duration_seconds",
            "Durations of operations finished in the last 24 h",
            labels=["kind", "result"],
        )
        backend_errors = CounterMetricFamily(
            "chutian_backend_errors", "Errors backends raised in operation steps", labels=["backend", "kind"]
        )
        with Session(self.engine) as session:
            ages: dict[str, float] = {}  # every kind seen: 0 while none runs, so the series persists
            for kind, state, n in session.execute(
                select(Operation.kind, Operation.state, func.count()).group_by(Operation.kind, Operation.state)
            ):
                counts.add_metric([kind, state], float(n))
                ages.setdefault(kind, 0.0)
            for kind, first in session.execute(
                select(Operation.kind, func.min(Operation.started_at))
                .where(Operation.state == OperationState.RUNNING.value)
                .group_by(Operation.kind)
            ):
                if first is not None:
                    started = first if first.tzinfo else first.replace(tzinfo=UTC)
                    ages[kind] = max(0.0, (now - started).total_seconds())
            for backend, kind, n in session.execute(
                select(BackendErrorEvent.backend, BackendErrorEvent.kind, func.count()).group_by(
                    BackendErrorEvent.backend, BackendErrorEvent.kind
                )
            ):
                backend_errors.add_metric([backend, kind], float(n))
            finished = session.execute(
                select(Operation.kind, Operation.state, Operation.created_at, Operation.finished_at).where(
                    col(Operation.state).in_([s.value for s in TERMINAL_STATES]),
                    col(Operation.finished_at) >= now - WINDOW,
                )
            ).all()
        for kind, age in sorted(ages.items()):
            oldest.add_metric([kind], age)
        series: dict[tuple[str, str], list[float]] = {}
        for kind, state, created, done in finished:
            series.setdefault((kind, state), []).append((done - created).total_seconds())
        for (kind, state), values in sorted(series.items()):
            durations.add_metric([kind, state], histogram_buckets(values, BUCKETS), sum(values))
        yield counts
        yield oldest
        yield durations
        yield backend_errors

    def describe(self) -> Iterable[Any]:
        return []


def histogram_buckets(values: list[float], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    """Cumulative bucket counts for a histogram family built from rows at scrape time."""
    return [(str(b) if b != float("inf") else "+Inf", float(sum(1 for v in values if v <= b))) for b in bounds]


COLLECTOR_FACTORIES.append(OperationCollector)
