"""Claims and leases of backup runs and drills (one copy for both tables).

A worker claims a row with a conditional UPDATE (`state = <ready>` → running, owner, lease)
and a keeper thread renews the lease while restic works. A worker that is SIGKILLed stops
renewing: the scheduler's tick ends such rows `failed` with the reason, never leaves them
`running` — the next run then clears restic's stale lock and succeeds.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import CursorResult
from sqlmodel import col

from controlplane.db.uow import UnitOfWork, run_in_unit
from controlplane.worker.runtime import WorkerContext

log = logging.getLogger(__name__)


def lease_of(ctx: WorkerContext) -> timedelta:
    return timedelta(seconds=ctx.settings.backup_lease_s)


def owner_name(ctx: WorkerContext) -> str:
    return f"{ctx.hostname}:{ctx.pid}:{uuid.uuid4().hex[:8]}"


def claim(uow: UnitOfWork, table: Any, row_id: uuid.UUID, *, ready: str, owner: str, lease: timedelta) -> bool:
    now = uow.now()
    result = uow.session.execute(
        update(table)
        .where(table.id == row_id, table.state == ready)
        .values(state="running", owner=owner, lease_expires_at=now + lease, started_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


def renew(uow: UnitOfWork, table: Any, row_id: uuid.UUID, *, owner: str, lease: timedelta) -> bool:
    result = uow.session.execute(
        update(table)
        .where(table.id == row_id, table.owner == owner)
        .values(lease_expires_at=uow.now() + lease)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


class LeaseKeeper(threading.Thread):
    """Renews the lease every third of its length until stopped; `lost` when the row was taken."""

    def __init__(self, ctx: WorkerContext, table: Any, row_id: uuid.UUID, owner: str) -> None:
        super().__init__(name=f"lease-{row_id}", daemon=True)
        self.ctx, self.table, self.row_id, self.owner = ctx, table, row_id, owner
        self.halt = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        lease = lease_of(self.ctx)
        while not self.halt.wait(lease.total_seconds() / 3):
            try:
                kept = run_in_unit(
                    self.ctx.engine,
                    lambda uow: renew(uow, self.table, self.row_id, owner=self.owner, lease=lease),
                    clock=self.ctx.clock,
                )
            except Exception:  # a blip: the lease has slack for two more tries
                log.warning("renewing the lease of %s failed; retrying", self.row_id, exc_info=True)
                continue
            if not kept:
                self.lost.set()
                return

    def __enter__(self) -> LeaseKeeper:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()


def expire(uow: UnitOfWork, table: Any, *, active: list[str], now: datetime) -> int:
    """Rows whose worker stopped renewing end `failed` with the reason (never silently)."""
    result = uow.session.execute(
        update(table)
        .where(col(table.state).in_(active), col(table.lease_expires_at) < now)
        .values(
            state="failed",
            owner=None,
            finished_at=now,
            updated_at=now,
            reason="worker lost: its lease expired while the job ran (worker or restic killed?)",
        )
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
