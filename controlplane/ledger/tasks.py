"""The reservation reaper: releases reservations whose owner is terminal or missing, or
whose explicit ``expires_at`` has passed. Nothing else is ever released by time."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col

from controlplane.audit.chain import append_hook
from controlplane.auth.principal import system_principal
from controlplane.db.types import utcnow
from controlplane.db.uow import UnitOfWork, run_in_unit, unit_of_work
from controlplane.ledger import allocations as _allocations  # noqa: F401  (registers the tenant checks)
from controlplane.ledger import service
from controlplane.ledger.models import Reservation
from controlplane.ledger.owners import OwnerState, owner_states
from controlplane.worker.registry import periodic, task
from controlplane.worker.runtime import WorkerContext

log = logging.getLogger(__name__)

REAP_TASK = "chutian.ledger.reap-reservations"
REAP_INTERVAL_S = 60.0
BATCH = 500


def reap(engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> dict[str, int]:
    """One pass over every reservation; each release is its own unit (one failure stops nothing)."""
    now = clock()
    counts = {"checked": 0, "expired": 0, "terminal": 0, "missing": 0, "failed": 0}
    after = ""
    while True:
        with unit_of_work(engine, clock=clock, readonly=True) as uow:
            rows = list(
                uow.session.execute(
                    select(Reservation.owner, Reservation.expires_at)
                    .where(col(Reservation.owner) > after)
                    .order_by(col(Reservation.owner))
                    .limit(BATCH)
                )
            )
            states = owner_states(uow.session, [owner for owner, _ in rows])
        if not rows:
            return counts
        after = rows[-1][0]
        counts["checked"] += len(rows)
        for owner, expires_at in rows:
            if not _due(expires_at, states.get(owner), now):
                continue
            try:
                why = run_in_unit(
                    engine,
                    partial(_reap_one, owner=owner, now=now),
                    clock=clock,
                    principal=system_principal("reservation-reaper"),
                    before_commit=[append_hook],
                )
            except Exception:
                log.exception("releasing the reservation of %s failed; the next pass retries", owner)
                counts["failed"] += 1
                continue
            if why is not None:
                counts[why] += 1


def _due(expires_at: datetime | None, state: OwnerState | None, now: datetime) -> str | None:
    if expires_at is not None and expires_at <= now:
        return "expired"
    if state in {OwnerState.TERMINAL, OwnerState.MISSING}:
        return str(state)
    return None


def _reap_one(uow: UnitOfWork, owner: str, now: datetime) -> str | None:
    """Decide again under the reservation's lock: the owner may have renewed it meanwhile."""
    reservation = uow.session.scalars(
        select(Reservation).where(col(Reservation.owner) == owner).with_for_update()
    ).first()
    if reservation is None:
        return None
    why = _due(reservation.expires_at, owner_states(uow.session, [owner]).get(owner), now)
    if why is not None:
        service.release(uow, owner, reason=f"reaper: {why}")
    return why


@task(REAP_TASK)
def reap_reservations(ctx: WorkerContext) -> dict[str, int]:
    return reap(ctx.engine, clock=ctx.clock)


periodic("ledger-reap-reservations", REAP_TASK, lambda s: REAP_INTERVAL_S)
