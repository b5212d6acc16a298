"""`Idempotency-Key` on creating POSTs, scoped per principal.

The same key and body replays the stored response; another body is 422; a retry while the
first is still in flight is 409. The in-flight marker is committed on its own first, so a
concurrent retry sees it; the response is stored in the creating request's own transaction.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from controlplane.db.uow import UnitOfWork, unit_of_work
from controlplane.errors import Conflict, ValidationFailed
from controlplane.requests.models import IdempotencyRecord, IdempotencyState


def body_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def begin(engine: Engine, *, principal: str, key: str, route: str, digest: str, clock: Any) -> tuple[int, Any] | None:
    """A stored (status, body) to replay, or None after marking the key in flight."""
    with unit_of_work(engine, clock=clock) as uow:
        found = uow.session.scalars(
            select(IdempotencyRecord).where(IdempotencyRecord.principal == principal, IdempotencyRecord.key == key)
        ).first()
        if found is not None:
            if found.body_hash != digest or found.route != route:
                raise ValidationFailed(
                    "this Idempotency-Key was used with another request body", field="Idempotency-Key"
                )
            if found.state == IdempotencyState.IN_FLIGHT.value:
                raise Conflict(
                    "a request with this Idempotency-Key is still in flight; retry later", field="Idempotency-Key"
                )
            return int(found.status_code or 200), found.response
        uow.session.add(
            IdempotencyRecord(principal=principal, key=key, route=route, body_hash=digest, created_at=uow.now())
        )
        try:
            uow.session.flush()
        except sa_exc.IntegrityError:
            raise Conflict(
                "a request with this Idempotency-Key is still in flight; retry later", field="Idempotency-Key"
            ) from None
    return None


def finish(uow: UnitOfWork, *, principal: str, key: str, status: int, response: Any) -> None:
    """Store the response in the creating unit: it becomes visible exactly when the work does."""
    record = uow.session.scalars(
        select(IdempotencyRecord).where(IdempotencyRecord.principal == principal, IdempotencyRecord.key == key)
    ).one()
    record.state, record.status_code, record.response = IdempotencyState.DONE.value, status, response


def abandon(engine: Engine, *, principal: str, key: str) -> None:
    """The first attempt failed: forget the key so the client may try again."""
    with unit_of_work(engine) as uow:
        uow.session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.principal == principal,
                IdempotencyRecord.key == key,
                IdempotencyRecord.state == IdempotencyState.IN_FLIGHT.value,
            )
        )
