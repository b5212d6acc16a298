"""Information systems, requests, their transitions and approval steps, idempotency keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Column, ForeignKey, Integer, String, Text, UniqueConstraint, Uuid
from sqlmodel import Field, SQLModel

from controlplane.db.types import new_id, state_check, state_field, ts_field
from controlplane.db.types_json import JSONType
from controlplane.requests.specs import RequestKind
from controlplane.requests.states import RequestState


class SystemStatus(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    RETIRED = "retired"


class Decision(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    RETURNED = "returned"
    SUPERSEDED = "superseded"  # the request left this round before the step was decided


class IdempotencyState(StrEnum):
    IN_FLIGHT = "in_flight"
    DONE = "done"


def _tenant_fk() -> Any:
    return Field(sa_column=Column(Uuid(), ForeignKey("tenants.id", ondelete="RESTRICT"), nullable=False, index=True))


class InformationSystem(SQLModel, table=True):
    """信息系统: what MLPS grading and data-sharing declarations apply to."""

    __tablename__ = "information_systems"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_information_systems_tenant_name"),
        state_check("status", SystemStatus, name="status_valid"),
        CheckConstraint("mlps_level BETWEEN 2 AND 4", name="mlps_level_range"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    tenant_id: uuid.UUID = _tenant_fk()
    cloud: str = Field(sa_column=Column(String(20), nullable=False))
    name: str = Field(sa_column=Column(String(100), nullable=False))
    mlps_level: int = Field(sa_column=Column(Integer, nullable=False))
    filing_ref: str | None = Field(default=None, sa_column=Column(String(100)))
    declaration: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    dr_required: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    status: str = state_field(SystemStatus, default=SystemStatus.PROPOSED, name="status")
    created_by: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()


class Request(SQLModel, table=True):
    __tablename__ = "requests"
    __table_args__ = (
        state_check("state", RequestState),
        state_check("kind", RequestKind, name="kind_valid"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    tenant_id: uuid.UUID = _tenant_fk()
    system_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("information_systems.id", ondelete="RESTRICT"), nullable=False, index=True)
    )
    kind: str = state_field(RequestKind, default=RequestKind.VM, name="kind")
    cloud: str = Field(sa_column=Column(String(20), nullable=False))
    region: str = Field(sa_column=Column(String(20), nullable=False))
    spec: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    spec_hash: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    delta: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    declaration: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    state: str = state_field(RequestState, default=RequestState.DRAFT)
    round: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    title: str | None = Field(default=None, sa_column=Column(String(200)))
    duplicate_of: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid()))
    auto_rule: str | None = Field(default=None, sa_column=Column(String(100)))
    operation_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid(), index=True))
    # the request a `volume-backup` or `deletion` names (same tenant, fulfilled when named)
    target_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid(), ForeignKey("requests.id", ondelete="RESTRICT"), index=True)
    )
    last_reason: str | None = Field(default=None, sa_column=Column(Text))
    created_by: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field(index=True)
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))


class RequestTransition(SQLModel, table=True):
    __tablename__ = "request_transitions"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    request_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("requests.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    kind: str = Field(sa_column=Column(String(40), nullable=False))
    from_state: str = Field(sa_column=Column(String(30), nullable=False))
    to_state: str = Field(sa_column=Column(String(30), nullable=False))
    actor: str = Field(sa_column=Column(String(200), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(Text))
    at: datetime = ts_field()


class ApprovalStep(SQLModel, table=True):
    __tablename__ = "approval_steps"
    __table_args__ = (state_check("decision", Decision, name="decision_valid"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    request_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("requests.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    round: int = Field(sa_column=Column(Integer, nullable=False))
    order: int = Field(sa_column=Column("step_order", Integer, nullable=False))
    group: str = Field(sa_column=Column("parallel_group", String(40), nullable=False))
    role: str = Field(sa_column=Column(String(40), nullable=False))
    node_path: str = Field(sa_column=Column(String(400), nullable=False, index=True))
    decision: str = state_field(Decision, default=Decision.PENDING, name="decision")
    actor: str | None = Field(default=None, sa_column=Column(String(200)))
    reason: str | None = Field(default=None, sa_column=Column(Text))
    decided_at: datetime | None = ts_field(nullable=True)


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("principal", "key", name="uq_idempotency_keys_principal_key"),
        state_check("state", IdempotencyState),
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    principal: str = Field(sa_column=Column(String(200), nullable=False))
    key: str = Field(sa_column=Column(String(200), nullable=False))
    route: str = Field(sa_column=Column(String(200), nullable=False))
    body_hash: str = Field(sa_column=Column(String(64), nullable=False))
    state: str = state_field(IdempotencyState, default=IdempotencyState.IN_FLIGHT)
    status_code: int | None = Field(default=None, sa_column=Column(Integer))
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    created_at: datetime = ts_field(index=True)
