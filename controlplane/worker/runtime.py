"""What a task needs, built once per worker process (after fork), injected into task functions."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from controlplane.db.engine import make_engine
from controlplane.db.types import utcnow
from controlplane.db.uow import Dispatcher, NullDispatcher
from controlplane.settings import Settings
from controlplane.site_config import Site, load_site


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    site: Site
    dispatcher: Dispatcher = field(default_factory=NullDispatcher)
    clock: Callable[[], datetime] = utcnow
    hostname: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    extras: dict[str, Any] = field(default_factory=dict)


def build_context(settings: Settings, dispatcher: Dispatcher | None = None) -> WorkerContext:
    return WorkerContext(
        settings=settings,
        engine=make_engine(settings.resolved_database_url),
        site=load_site(settings.site_file),
        dispatcher=dispatcher or NullDispatcher(),
    )
