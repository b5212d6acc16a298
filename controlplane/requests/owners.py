"""Requests own reservations (`request:<id>`): live while open, terminal otherwise."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlmodel import Session, col

from controlplane.ledger.owners import OWNER_CHECKS, OwnerState
from controlplane.requests.models import Request
from controlplane.requests.states import OPEN


def request_states(session: Session, ids: Sequence[str]) -> Mapping[str, OwnerState]:
    parsed: dict[uuid.UUID, str] = {}
    states: dict[str, OwnerState] = {}
    for ident in ids:
        try:
            parsed[uuid.UUID(ident)] = ident
        except ValueError:
            states[ident] = OwnerState.MISSING
    if parsed:
        found: dict[uuid.UUID, str] = dict(
            session.execute(select(Request.id, Request.state).where(col(Request.id).in_(list(parsed)))).all()
        )
        for key, ident in parsed.items():
            state = found.get(key)
            states[ident] = (
                OwnerState.MISSING
                if state is None
                else OwnerState.LIVE
                if state in {s.value for s in OPEN}
                else OwnerState.TERMINAL
            )
    return states


OWNER_CHECKS["request"] = request_states
