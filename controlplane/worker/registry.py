"""Task and operation-kind registries. Domains add entries; nothing edits a shared function.

A task function takes the WorkerContext first and JSON-safe ids after it, so tests call it
directly with an injected context and Celery calls it through a thin wrapper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controlplane.worker.runtime import WorkerContext

TaskFn = Callable[..., Any]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    fn: TaskFn
    queue: str = "chutian"


@dataclass(frozen=True)
class PeriodicSpec:
    name: str
    task: str
    every_s: Callable[[Any], float]  # settings -> seconds
    kwargs: dict[str, Any] | None = None


TASKS: dict[str, TaskSpec] = {}
PERIODIC: dict[str, PeriodicSpec] = {}
OperationHandler = Callable[[WorkerContext, Any], dict[str, Any] | None]
OPERATION_HANDLERS: dict[str, OperationHandler] = {}


def task(name: str, *, queue: str = "chutian") -> Callable[[TaskFn], TaskFn]:
    def register(fn: TaskFn) -> TaskFn:
        TASKS[name] = TaskSpec(name, fn, queue)
        return fn

    return register


def periodic(name: str, task_name: str, every_s: Callable[[Any], float], **kwargs: Any) -> None:
    PERIODIC[name] = PeriodicSpec(name, task_name, every_s, kwargs or None)


def operation_handler(kind: str) -> Callable[[OperationHandler], OperationHandler]:
    def register(fn: OperationHandler) -> OperationHandler:
        OPERATION_HANDLERS[kind] = fn
        return fn

    return register
