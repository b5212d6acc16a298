"""Is a reservation's owner still alive? Pluggable by owner kind.

Owners are ``<kind>:<id>``. Each kind registers one batch check returning, per id, whether
the owner is live, terminal or missing; the reaper releases only terminal or missing
owners' reservations (or those whose explicit ``expires_at`` has passed). A kind nobody
registered is never guessed at: its reservations wait for their owner's kind to register
(requests add ``OWNER_CHECKS["request"]``) or for ``expires_at``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum

from sqlalchemy import select
from sqlmodel import Session, col

from controlplane.operations.models import TERMINAL_STATES, Operation


class OwnerState(StrEnum):
    LIVE = "live"
    TERMINAL = "terminal"
    MISSING = "missing"


OwnerCheck = Callable[[Session, Sequence[str]], Mapping[str, OwnerState]]
OWNER_CHECKS: dict[str, OwnerCheck] = {}


def operation_owner(operation_id: uuid.UUID | str) -> str:
    return f"operation:{operation_id}"


def split_owner(owner: str) -> tuple[str, str]:
    kind, _, ident = owner.partition(":")
    return kind, ident


def _operation_states(session: Session, ids: Sequence[str]) -> Mapping[str, OwnerState]:
    parsed: dict[uuid.UUID, str] = {}
    states = {}
    for ident in ids:
        try:
            parsed[uuid.UUID(ident)] = ident
        except ValueError:
            states[ident] = OwnerState.MISSING  # no operation can have this id
    if parsed:
        rows = session.execute(select(Operation.id, Operation.state).where(col(Operation.id).in_(list(parsed))))
        found = {op_id: state for op_id, state in rows}
        for op_id, ident in parsed.items():
            if op_id not in found:
                states[ident] = OwnerState.MISSING
            else:
                states[ident] = OwnerState.TERMINAL if found[op_id] in TERMINAL_STATES else OwnerState.LIVE
    return states


OWNER_CHECKS["operation"] = _operation_states


def owner_states(session: Session, owners: Sequence[str]) -> dict[str, OwnerState | None]:
    """State per owner; ``None`` for kinds no check is registered for."""
    by_kind: dict[str, list[str]] = {}
    for owner in owners:
        kind, ident = split_owner(owner)
        by_kind.setdefault(kind, []).append(ident)
    result: dict[str, OwnerState | None] = {}
    for kind, idents in by_kind.items():
        check = OWNER_CHECKS.get(kind)
        states = check(session, idents) if check is not None else {}
        for ident in idents:
            result[f"{kind}:{ident}"] = states.get(ident) if check is not None else None
    return result
