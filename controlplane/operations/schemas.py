from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from controlplane.operations.models import Operation, OperationState


class OperationPublic(BaseModel):
    id: uuid.UUID
    name: str
    kind: str
    state: OperationState
    done: bool
    step: str | None
    attempts: int
    last_error: str | None
    result: dict[str, Any] | None
    steps_done: list[str]
    log: list[dict[str, Any]]
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Operation) -> OperationPublic:
        state = OperationState(row.state)
        return cls(
            id=row.id,
            name=f"operations/{row.id}",
            kind=row.kind,
            state=state,
            done=state in {OperationState.SUCCEEDED, OperationState.FAILED, OperationState.ERRORED},
            step=row.step,
            attempts=row.attempts,
            last_error=row.last_error,
            result=row.result if row.result is not None else (row.memo or None),
            steps_done=list(row.steps_done or []),
            log=list(row.log or [])[-20:],
            next_attempt_at=row.next_attempt_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )
