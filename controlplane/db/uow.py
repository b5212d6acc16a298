"""The unit of work: one session, one transaction, a job buffer, an audit buffer and a clock.

Services receive it and never commit; the edge (an API request or a task) calls `commit()`.
Jobs leave only after a successful commit and carry ids, so a rollback drops them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlmodel import Session

from controlplane.db.types import utcnow
from controlplane.errors import BackendUnavailable, Conflict

log = logging.getLogger(__name__)

SERIALIZATION_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected


@dataclass(frozen=True)
class Job:
    """A task to send after commit: a registered task name and JSON-safe keyword ids."""

    task: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None


class Dispatcher(Protocol):
    def send(self, job: Job) -> None: ...


class NullDispatcher:
    """Drops jobs: for CLI commands that enqueue nothing. The Operation row stays the outbox."""

    def send(self, job: Job) -> None:
        log.info("job %s not sent (no dispatcher); the reaper will pick it up", job.task)


class RecordingDispatcher:
    """Keeps jobs in a list: tests read what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[Job] = []

    def send(self, job: Job) -> None:
        self.sent.append(job)


AuditHook = Callable[["UnitOfWork"], None]


class RetryableConflict(Exception):
    """A serialization failure or deadlock: the whole unit may be retried once."""


class UnitOfWork:
    def __init__(
        self,
        engine: Engine,
        *,
        dispatcher: Dispatcher | None = None,
        clock: Callable[[], datetime] = utcnow,
        readonly: bool = False,
        before_commit: list[AuditHook] | None = None,
        principal: Any = None,
        request_id: str | None = None,
        client_addr: str | None = None,
    ) -> None:
        self.engine = engine
        self.session = Session(engine, expire_on_commit=False)
        if readonly:
            self.session.connection(execution_options={"chutian_readonly": True})
        self.dispatcher = dispatcher or NullDispatcher()
        self._clock = clock
        self._now: datetime | None = None
        self.readonly = readonly
        self.jobs: list[Job] = []
        self.cache: dict[Any, Any] = {}  # per-unit memo for read-mostly rows (catalogue)
        self.audit_events: list[Any] = []
        self._before_commit = list(before_commit or [])
        self._after_commit: list[Callable[[], object]] = []
        self.principal = principal
        self.request_id = request_id
        self.client_addr = client_addr
        self.committed = False

    def now(self) -> datetime:
        """One timestamp per unit, so every row it writes agrees on when it happened."""
        if self._now is None:
            self._now = self._clock()
        return self._now

    def enqueue(self, job: Job) -> None:
        self.jobs.append(job)

    def audit(self, event: Any) -> None:
        """Buffer an audit event; appended last, just before commit, by the audit hook."""
        self.audit_events.append(event)

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once the unit has committed (a failure is logged, never raised:
        the change is durable by then and the caller must hear that it succeeded)."""
        self._after_commit.append(callback)

    def commit(self) -> None:
        """Run pre-commit hooks (audit last), commit, send the buffered jobs, run after-commit callbacks."""
        try:
            for hook in self._before_commit:
                hook(self)
            self.session.commit()
        except sa_exc.DBAPIError as exc:
            self.session.rollback()
            raise translate_db_error(exc) from exc
        self.committed = True
        jobs, self.jobs = self.jobs, []
        for job in jobs:
            try:
                self.dispatcher.send(job)
            except Exception:  # the row is the outbox: the reaper re-sends
                log.exception("sending job %s failed after commit; left for the reaper", job.task)
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback %r failed; the change itself is committed", callback)

    def rollback(self) -> None:
        self.jobs.clear()
        self._after_commit.clear()
        self.audit_events.clear()
        self.session.rollback()

    def close(self) -> None:
        self.session.close()


def translate_db_error(exc: sa_exc.DBAPIError) -> Exception:
    """Database failures as domain errors: retryable, conflict or unavailable."""
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if sqlstate in SERIALIZATION_SQLSTATES:
        return RetryableConflict(str(exc.orig))
    if isinstance(exc, sa_exc.IntegrityError):
        return Conflict("the change conflicts with existing data", reason=_first_line(exc))
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        if "locked" in str(exc.orig).lower():
            return RetryableConflict(str(exc.orig))
        return BackendUnavailable("the database is unavailable; try again shortly", backend="database")
    return exc


def _first_line(exc: Exception) -> str:
    orig = getattr(exc, "orig", exc)
    return str(orig).splitlines()[0][:200]


@contextmanager
def unit_of_work(engine: Engine, **kwargs: Any) -> Iterator[UnitOfWork]:
    """For tasks and the CLI: commit on success, roll back on any error."""
    uow = UnitOfWork(engine, **kwargs)
    try:
        yield uow
        if not uow.committed:
            uow.commit()
    except BaseException:
        uow.rollback()
        raise
    finally:
        uow.close()


def run_in_unit(engine: Engine, work: Callable[[UnitOfWork], Any], *, retries: int = 1, **kwargs: Any) -> Any:
    """Run `work` in a unit, retrying the whole unit once on a serialization failure."""
    for attempt in range(retries + 1):
        try:
            with unit_of_work(engine, **kwargs) as uow:
                return work(uow)
        except RetryableConflict:
            if attempt == retries:
                raise Conflict("concurrent update; please retry") from None
        except sa_exc.DBAPIError as exc:
            translated = translate_db_error(exc)
            if isinstance(translated, RetryableConflict) and attempt < retries:
                continue
            if isinstance(translated, RetryableConflict):
                raise Conflict("concurrent update; please retry") from exc
            raise translated from exc
    raise AssertionError("unreachable")
