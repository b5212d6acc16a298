"""The Celery application, built by function from settings (never at import time).

Every mode (embedded, Redis, RabbitMQ) runs the same task functions and beat schedule.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery

from controlplane.db.uow import Job
from controlplane.settings import Settings
from controlplane.worker.registry import PERIODIC, TASKS, TaskSpec
from controlplane.worker.runtime import WorkerContext, build_context

DEFAULT_QUEUE = "chutian"


def load_task_modules() -> None:
    """Import every module that registers tasks (explicit list: no scanning magic)."""
    from controlplane.audit import tasks as _audit  # noqa: F401
    from controlplane.capacity import tasks as _capacity  # noqa: F401
    from controlplane.catalogue import tasks as _catalogue  # noqa: F401
    from controlplane.db import registry as _tables  # noqa: F401  (all mappers configured)
    from controlplane.ledger import tasks as _ledger  # noqa: F401
    from controlplane.operations import tasks as _operations  # noqa: F401
    from controlplane.requests import provisioning as _provisioning  # noqa: F401
    from controlplane.system import tasks as _system  # noqa: F401


class _ContextHolder:
    """One WorkerContext per process, built on first use (after the prefork fork)."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings, self.app = settings, app
        self._ctx: WorkerContext | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def get(self) -> WorkerContext:
        import os

        with self._lock:
            if self._ctx is None or self._pid != os.getpid():
                self._ctx = build_context(self.settings, CeleryDispatcher(self.app))
                self._pid = os.getpid()
            return self._ctx


def create_celery(settings: Settings) -> Celery:
    load_task_modules()
    app = Celery("chutian", broker=settings.resolved_broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=DEFAULT_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        timezone="Asia/Shanghai",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # In-memory beat schedule: our periodic work is idempotent and claims its due items
        # from the database, so no shelve file is needed (and none can be corrupted).
        beat_scheduler="celery.beat:Scheduler",
        beat_schedule={
            spec.name: {"task": spec.task, "schedule": spec.every_s(settings), "kwargs": spec.kwargs or {}}
            for spec in PERIODIC.values()
        },
        broker_transport_options={"connect_args": {"timeout": 30}} if settings.embedded else {},
    )
    holder = _ContextHolder(settings, app)
    app.chutian_context = holder
    for spec in TASKS.values():
        _register(app, spec, holder)
    return app


def _register(app: Celery, spec: TaskSpec, holder: _ContextHolder) -> None:
    fn = spec.fn

    def run(**kwargs: Any) -> Any:
        return fn(holder.get(), **kwargs)

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    app.task(name=spec.name, queue=spec.queue, acks_late=True, reject_on_worker_lost=True)(run)


class CeleryDispatcher:
    """Sends jobs after commit. Publishing failures are left to the Operation outbox."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def send(self, job: Job) -> None:
        spec = TASKS.get(job.task)
        queue = job.queue or (spec.queue if spec else DEFAULT_QUEUE)
        self.app.send_task(job.task, kwargs=job.kwargs, queue=queue)
