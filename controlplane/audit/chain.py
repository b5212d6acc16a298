"""Appending to and verifying the hash chain.

The append runs as the unit of work's last pre-commit hook: pending changes are flushed
first (taking whatever row locks they need), then the single head row is locked, events
get gapless sequence numbers and hashes, the head moves, and the unit commits. No lock is
ever taken after the head, so the audit cannot deadlock with anything that locks rows first.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlmodel import Session, col

from controlplane.audit.models import GENESIS_HASH, AuditCheckpoint, AuditEvent, AuditHead
from controlplane.audit.record import AuditRecord
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


def event_hash(event: AuditEvent) -> str:
    body = {
        "seq": event.seq,
        "occurred_at": _ts(event.occurred_at),
        "actor": event.actor,
        "action": event.action,
        "target_type": event.target_type,
        "target": event.target,
        "tenant_path": event.tenant_path,
        "request_id": event.request_id,
        "client_addr": event.client_addr,
        "before": event.before,
        "after": event.after,
        "extra": event.extra,
        "before_digest": event.before_digest,
        "after_digest": event.after_digest,
    }
    return hashlib.sha256((event.prev_hash + canonical(body)).encode()).hexdigest()


def append_hook(uow: UnitOfWork) -> None:
    """Pre-commit hook: append the unit's buffered records to the chain (last step).

    Core statements, not the ORM: the head lock is held from the SELECT to the commit, so
    every round trip saved inside that window is throughput for every concurrent writer."""
    if not uow.audit_events:
        return
    records: list[AuditRecord] = list(uow.audit_events)
    uow.audit_events.clear()
    uow.session.flush()  # every other row lock is taken before the head's
    conn = uow.session.connection()
    seq, prev = conn.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update()).one()
    actor = getattr(uow.principal, "name", None) or "system"
    occurred = uow.now()
    rows: list[dict[str, Any]] = []
    for record in records:
        seq += 1
        event = AuditEvent(
            seq=seq,
            occurred_at=occurred,
            actor=actor,
            action=record.action,
            target_type=record.target_type,
            target=record.target,
            tenant_path=record.tenant_path,
            request_id=uow.request_id,
            client_addr=uow.client_addr,
            before=redact(record.before),
            after=redact(record.after),
            extra=redact(record.extra) or None,
            before_digest=digest(record.before),
            after_digest=digest(record.after),
            prev_hash=prev,
            hash="",
        )
        event.hash = event_hash(event)
        prev = event.hash
        rows.append({c.name: getattr(event, c.name) for c in AuditEvent.__table__.columns})  # type: ignore[attr-defined]
    conn.execute(insert(AuditEvent), rows)
    conn.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=seq, hash=prev, updated_at=occurred))


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problem: str | None = None
    bad_seq: int | None = None


def verify(session: Session) -> Verification:
    """Walk the whole chain; report the first broken link by sequence number."""
    head = session.scalars(select(AuditHead).where(AuditHead.id == 1)).one()
    expected_seq, expected_prev, checked = 1, GENESIS_HASH, 0

    def fail(problem: str, seq: int | None) -> Verification:
        return Verification(False, checked, head.seq, head.hash, problem, seq)

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
    return Verification(True, checked, head.seq, head.hash)


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
