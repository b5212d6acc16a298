"""Appending to and verifying the hash chain.

Two steps. The unit of work's last pre-commit hook *queues* its events (``audit_queue``) in
the same transaction as the change, taking no lock. After the commit, ``integrate`` locks the
single head row, gives queued events gapless sequence numbers and hashes in queue order, moves
them into ``audit_events`` and moves the head, many units' events per transaction under load.
The head is never locked while a writer holds other row locks, so auditing adds no
serialisation point to the quota ledger's hot rows (it used to: ``docs/architecture.md``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from controlplane.audit.models import GENESIS_HASH, AuditCheckpoint, AuditEvent, AuditHead, AuditQueued
from controlplane.audit.record import AuditRecord
from controlplane.db.types import utcnow
from controlplane.db.uow import UnitOfWork

SECRET_MARKERS = ("password", "secret", "token", "credential", "private_key", "api_key", "passphrase")
REDACTED = "[redacted]"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any) -> str | None:
    return None if value is None else hashlib.sha256(canonical(value).encode()).hexdigest()


def redact(value: Any) -> Any:
    """Secret-looking keys are replaced wherever they nest; the digest keeps proof of content."""
    if isinstance(value, dict):
        return {k: REDACTED if any(m in k.lower() for m in SECRET_MARKERS) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


_HASHED = (
    "seq",
    "occurred_at",
    "actor",
    "action",
    "target_type",
    "target",
    "tenant_path",
    "request_id",
    "client_addr",
    "before",
    "after",
    "extra",
    "before_digest",
    "after_digest",
)


def _hash(prev_hash: str, fields: Any) -> str:
    """``fields``: anything with the event's columns by item; what the chain commits to."""
    body = {name: fields[name] for name in _HASHED}
    body["occurred_at"] = _ts(body["occurred_at"])
    return hashlib.sha256((prev_hash + canonical(body)).encode()).hexdigest()


def event_hash(event: AuditEvent) -> str:
    return _hash(event.prev_hash, {name: getattr(event, name) for name in _HASHED})


def append_hook(uow: UnitOfWork) -> None:
    """Pre-commit hook: queue the unit's buffered records in its own transaction.

    Atomic with the change (a rolled-back unit leaves no event; a committed one cannot lose
    its event), but no lock: the chain head is taken only by ``integrate``, which runs after
    the commit. The head used to be locked here, so every audited writer in the system,
    whatever it changed, queued behind it while holding its own row locks."""
    if not uow.audit_events:
        return
    records: list[AuditRecord] = list(uow.audit_events)
    uow.audit_events.clear()
    actor = getattr(uow.principal, "name", None) or "system"
    occurred = uow.now()
    rows = [
        {
            "occurred_at": occurred,
            "actor": actor,
            "action": record.action,
            "target_type": record.target_type,
            "target": record.target,
            "tenant_path": record.tenant_path,
            "request_id": uow.request_id,
            "client_addr": uow.client_addr,
            "before": redact(record.before),
            "after": redact(record.after),
            "extra": redact(record.extra) or None,
            "before_digest": digest(record.before),
            "after_digest": digest(record.after),
        }
        for record in records
    ]
    uow.session.connection().execute(_ENQUEUE, rows)
    uow.after_commit(partial(integrate, uow.engine))


_ENQUEUE = insert(AuditQueued)
_QUEUE = AuditQueued.__table__  # type: ignore[attr-defined]
# SKIP LOCKED: an integrator that finds another at work leaves at once (PostgreSQL; SQLite
# serialises write transactions anyway and renders no FOR UPDATE).
_LOCK_HEAD = select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update(skip_locked=True)
_READ_QUEUE = select(_QUEUE).order_by(_QUEUE.c.id).limit(bindparam("batch"))
INTEGRATE_BATCH = 500


def integrate(engine: Engine, *, batch: int = INTEGRATE_BATCH, drain: bool = False) -> int:
    """Move queued events into the chain, oldest first: gapless sequence numbers and hashes.

    Returns how many were chained. An integrator that finds the head locked leaves at once:
    the holder takes everything committed before its read. A unit's own after-commit call makes
    one pass (a writer must not become everybody's integrator under load); an event committed
    after the holder's read waits for the next writer's pass or the periodic ``audit-integrate``
    task, which drains the queue. A failure here never reaches a caller that already committed:
    the unit of work logs it and the event waits in the queue.
    """
    total = 0
    while drain or not total:
        with engine.begin() as conn:
            head = conn.execute(_LOCK_HEAD).first()
            if head is None:
                return total
            queued = conn.execute(_READ_QUEUE, {"batch": batch}).mappings().all()
            if not queued:
                return total
            seq, prev = head
            rows: list[dict[str, Any]] = []
            for item in queued:  # plain dicts: building ORM objects here cost a third of the time
                seq += 1
                row = {k: v for k, v in item.items() if k != "id"} | {"seq": seq, "prev_hash": prev}
                row["hash"] = prev = _hash(prev, row)
                rows.append(row)
            conn.execute(insert(AuditEvent), rows)
            conn.execute(delete(_QUEUE).where(_QUEUE.c.id.in_([item["id"] for item in queued])))
            conn.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=seq, hash=prev, updated_at=utcnow()))
        total += len(queued)
    return total


def pending(session: Session) -> int:
    """Events committed but not chained yet (normally 0 within a second)."""
    return int(session.scalar(select(func.count()).select_from(_QUEUE)) or 0)


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problem: str | None = None
    bad_seq: int | None = None
    pending: int = 0  # committed events not chained yet: not a fault, unless it keeps growing


def verify(session: Session) -> Verification:
    """Walk the whole chain; report the first broken link by sequence number."""
    head = session.scalars(select(AuditHead).where(AuditHead.id == 1)).one()
    expected_seq, expected_prev, checked = 1, GENESIS_HASH, 0

    def fail(problem: str, seq: int | None) -> Verification:
        return Verification(False, checked, head.seq, head.hash, problem, seq, pending(session))

    stmt = select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000)
    for event in session.scalars(stmt):
        if event.seq != expected_seq:
            return fail(
                f"event {expected_seq} is missing (the chain jumps from {expected_seq - 1} to {event.seq})",
                expected_seq,
            )
        if event.prev_hash != expected_prev:
            return fail(f"event {event.seq} does not link to event {event.seq - 1}", event.seq)
        if event_hash(event) != event.hash:
            return fail(
                f"event {event.seq} ({event.action} {event.target}) was altered: its content does not match its hash",
                event.seq,
            )
        expected_prev, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
    last_seq = expected_seq - 1
    if head.seq != last_seq or head.hash != expected_prev:
        return fail(
            f"the head records event {head.seq} but the chain ends at event {last_seq}: "
            f"event {last_seq + 1} through event {head.seq} were deleted",
            last_seq + 1,
        )
    checkpoint = session.scalars(
        select(AuditCheckpoint)
        .where(col(AuditCheckpoint.verified).is_(True))
        .order_by(col(AuditCheckpoint.seq).desc())
        .limit(1)
    ).first()
    if checkpoint is not None and checkpoint.seq > head.seq:
        return fail(
            f"the chain ends at event {head.seq} but event {checkpoint.seq} was verified and published "
            f"at {_ts(checkpoint.checked_at)}: the tail was truncated",
            head.seq + 1,
        )
    return Verification(True, checked, head.seq, head.hash, pending=pending(session))


def checkpoint(uow: UnitOfWork) -> Verification:
    """Verify and publish the result (read by the metrics collector and later verifications)."""
    result = verify(uow.session)
    uow.session.add(
        AuditCheckpoint(
            seq=result.head_seq,
            hash=result.head_hash,
            verified=result.ok,
            problem=result.problem,
            checked_at=uow.now(),
        )
    )
    return result
