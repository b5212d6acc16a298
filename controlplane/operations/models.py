"""Operations are rows: the durable record and single source of truth of a long job."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, ForeignKey, Integer, String, Text, Uuid
from sqlmodel import Field, SQLModel

from controlplane.db.types import new_id, state_check, state_field, ts_field
from controlplane.db.types_json import JSONType


class OperationState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the tenant must act
    ERRORED = "errored"  # an operator must act


TERMINAL_STATES = frozenset({OperationState.SUCCEEDED, OperationState.FAILED, OperationState.ERRORED})


class Operation(SQLModel, table=True):
    __tablename__ = "operations"
    __table_args__ = (state_check("state", OperationState),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    kind: str = Field(sa_column=Column(String(40), nullable=False, index=True))
    state: str = state_field(OperationState, default=OperationState.QUEUED)
    step: str | None = Field(default=None, sa_column=Column(String(80)))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    tenant_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid(), ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    )
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    created_by: str | None = Field(default=None, sa_column=Column(String(200)))
    # crash safety: who holds it, until when, and when a transient failure may be retried
    owner: str | None = Field(default=None, sa_column=Column(String(200)))
    lease_expires_at: datetime | None = ts_field(nullable=True, index=True)
    next_attempt_at: datetime | None = ts_field(nullable=True, index=True)
    steps_done: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False, default=list))
    memo: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False, default=dict))
    log: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False, default=list))
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()
    started_at: datetime | None = ts_field(nullable=True)
    finished_at: datetime | None = ts_field(nullable=True)


class BackendErrorEvent(SQLModel, table=True):
    """One error a backend raised during an operation step, kept so that
    `chutian_backend_errors_total{backend,kind}` is a counter a restart never resets."""

    __tablename__ = "backend_errors"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    backend: str = Field(sa_column=Column(String(40), nullable=False))
    kind: str = Field(sa_column=Column(String(40), nullable=False))
    operation_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid(), ForeignKey("operations.id", ondelete="CASCADE"), index=True)
    )
    step: str | None = Field(default=None, sa_column=Column(String(80)))
    at: datetime = ts_field()
