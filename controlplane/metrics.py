"""One collector registry, served on its own port. Domain gauges are read from rows at
scrape time, so a restart never resets them and deleted objects drop their series."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from controlplane.system.models import WorkerHeartbeat

CollectorFactory = Callable[[Engine], Collector]
# Later features append a factory here (quota, requests, DR, audit collectors).
COLLECTOR_FACTORIES: list[CollectorFactory] = []


class HeartbeatCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "chutian_worker_last_heartbeat_timestamp_seconds",
            "Unix time of the newest heartbeat a worker wrote for the queue",
            labels=["queue"],
        )
        with Session(self.engine) as session:
            newest: dict[str, float] = {}
            for row in session.scalars(select(WorkerHeartbeat)):
                newest[row.queue] = max(newest.get(row.queue, 0.0), row.last_seen.timestamp())
        for queue, ts in sorted(newest.items()):
            family.add_metric([queue], ts)
        yield family

    def describe(self) -> Iterable[Any]:
        return []


COLLECTOR_FACTORIES.append(HeartbeatCollector)


def load_collector_modules() -> None:
    """Import every module that appends to COLLECTOR_FACTORIES (explicit, no scanning)."""
    from controlplane.audit import collector as _audit  # noqa: F401
    from controlplane.backup import collector as _backup  # noqa: F401
    from controlplane.capacity import collector as _capacity  # noqa: F401
    from controlplane.ledger import collector as _ledger  # noqa: F401
    from controlplane.operations import collector as _operations  # noqa: F401
    from controlplane.requests import collector as _requests  # noqa: F401


def build_registry(engine: Engine, *, domain: bool = True) -> tuple[CollectorRegistry, Histogram]:
    """The process's registry: the DB-derived collectors (unless `domain` is off, as on API
    replicas whose gauges one `chutian metrics` process serves) and the API latency histogram."""
    registry = CollectorRegistry(auto_describe=False)
    if domain:
        load_collector_modules()
        for factory in COLLECTOR_FACTORIES:
            registry.register(factory(engine))
    latency = Histogram(
        "chutian_api_request_duration_seconds",
        "API request latency by route template, method and status class",
        ["method", "route", "status"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )
    return registry, latency


class LatencyMiddleware:
    """Pure ASGI middleware: labels by route template (bounded), never the raw path."""

    def __init__(self, app: Any, histogram: Histogram) -> None:
        self.app, self.histogram = app, histogram

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.histogram.labels(scope["method"], template, f"{status['code'] // 100}xx").observe(
                time.perf_counter() - start
            )
