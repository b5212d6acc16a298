"""What the application needs at run time, built once at start-up (never at import)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy.engine import Engine

from controlplane.db.types import utcnow
from controlplane.db.uow import AuditHook, Dispatcher
from controlplane.settings import Settings
from controlplane.site_config import Site


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    site: Site
    dispatcher: Dispatcher
    registry: CollectorRegistry
    latency: Histogram
    clock: Callable[[], datetime] = utcnow
    before_commit: list[AuditHook] = field(default_factory=list)
    broker_probe: Callable[[], bool] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
