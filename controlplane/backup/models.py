"""Remote-backup tables: what to protect (policy), each execution (run), each restore test (drill).

Runs and drills cascade with their policy, so deleting a policy drops its rows and its
metric series at the next scrape. Run states are `backup.states.RunState`; a run or drill
that a worker holds carries an owner and a lease, so a killed worker is noticed by the
reaper and the row ends `failed` with the reason instead of hanging in `running`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, Float, ForeignKey, Integer, String, Text, UniqueConstraint, Uuid
from sqlmodel import Field, SQLModel

from backup.states import RunState
from controlplane.db.types import new_id, state_check, state_field, ts_field
from controlplane.db.types_json import JSONType


class PolicyState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class SourceKind(StrEnum):
    PATHS = "paths"  # paths readable by the worker
    VM = "vm"  # a VM's paths, through the Ansible backup agent


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"


class DrillState(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"


class DrillPurpose(StrEnum):
    DRILL = "drill"  # restore into scratch, compare, record RTO, discard
    RESTORE = "restore"  # restore on demand into the tenant's restore area, kept


VERIFIED_STATES = (RunState.VERIFIED.value, RunState.PARTIALLY_FAILED.value)
"""Runs whose snapshot is a recovery point: listed at the DR site and checked after it was written."""


def _policy_fk() -> Any:
    return Field(
        sa_column=Column(Uuid(), ForeignKey("backup_policies.id", ondelete="CASCADE"), nullable=False, index=True)
    )


def _tenant_fk() -> Any:
    return Field(sa_column=Column(Uuid(), ForeignKey("tenants.id", ondelete="RESTRICT"), nullable=False, index=True))


class BackupPolicy(SQLModel, table=True):
    __tablename__ = "backup_policies"
    __table_args__ = (
        UniqueConstraint("tenant_id", "slug", name="uq_backup_policies_tenant_slug"),
        state_check("state", PolicyState),
        state_check("source_kind", SourceKind, name="source_kind_valid"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    tenant_id: uuid.UUID = _tenant_fk()
    system_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("information_systems.id", ondelete="RESTRICT"), nullable=False, index=True)
    )
    request_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid(), ForeignKey("requests.id", ondelete="SET NULL"), unique=True)
    )
    slug: str = Field(sa_column=Column(String(63), nullable=False))
    source_kind: str = state_field(SourceKind, default=SourceKind.PATHS, name="source_kind")
    source_paths: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    source_vm: str | None = Field(default=None, sa_column=Column(String(200)))
    schedule: str = Field(sa_column=Column(String(100), nullable=False))
    drill_schedule: str = Field(sa_column=Column(String(100), nullable=False))
    rpo_target_s: int = Field(sa_column=Column(Integer, nullable=False))
    retention: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    source_region: str = Field(sa_column=Column(String(20), nullable=False))
    target_region: str = Field(sa_column=Column(String(20), nullable=False))
    repository_url: str = Field(sa_column=Column(String(400), nullable=False))
    """DR-side location, without credentials (those come from the worker's DR store settings)."""
    repository_prefix: str = Field(sa_column=Column(String(300), nullable=False))
    password_sealed: str = Field(sa_column=Column(Text, nullable=False))
    """The repository password, encrypted with the SecretBox; never returned by the API."""
    state: str = state_field(PolicyState, default=PolicyState.ACTIVE)
    next_due_at: datetime | None = ts_field(nullable=True, index=True)
    last_claimed_at: datetime = ts_field()
    """Nominal time of the newest run the scheduler claimed (conditional UPDATE on it)."""
    drill_next_due_at: datetime | None = ts_field(nullable=True, index=True)
    drill_last_claimed_at: datetime = ts_field()
    drill_deferred_reason: str | None = Field(default=None, sa_column=Column(Text))
    """Why the due drill waits (no verified recovery point yet); cleared when a drill is created."""
    claimed_by: str | None = Field(default=None, sa_column=Column(String(200)))
    claimed_at: datetime | None = ts_field(nullable=True)
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()


class BackupRun(SQLModel, table=True):
    __tablename__ = "backup_runs"
    __table_args__ = (
        UniqueConstraint("policy_id", "trigger", "scheduled_for", name="uq_backup_runs_policy_slot"),
        state_check("state", RunState),
        state_check("trigger", Trigger, name="trigger_valid"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    policy_id: uuid.UUID = _policy_fk()
    tenant_id: uuid.UUID = _tenant_fk()
    state: str = state_field(RunState, default=RunState.SCHEDULED)
    trigger: str = state_field(Trigger, default=Trigger.SCHEDULE, name="trigger")
    scheduled_for: datetime = ts_field(index=True)
    started_at: datetime | None = ts_field(nullable=True)
    uploaded_at: datetime | None = ts_field(nullable=True)
    finished_at: datetime | None = ts_field(nullable=True, index=True)
    bytes_uploaded: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    files_new: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    files_changed: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    snapshot_id: str | None = Field(default=None, sa_column=Column(String(64), index=True))
    snapshot_time: datetime | None = ts_field(nullable=True)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    progress: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    manifest: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    owner: str | None = Field(default=None, sa_column=Column(String(200)))
    lease_expires_at: datetime | None = ts_field(nullable=True, index=True)
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()


class BackupDrill(SQLModel, table=True):
    __tablename__ = "backup_drills"
    __table_args__ = (
        state_check("state", DrillState),
        state_check("purpose", DrillPurpose, name="purpose_valid"),
        state_check("trigger", Trigger, name="trigger_valid"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    policy_id: uuid.UUID = _policy_fk()
    tenant_id: uuid.UUID = _tenant_fk()
    run_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid(), ForeignKey("backup_runs.id", ondelete="SET NULL"))
    )
    purpose: str = state_field(DrillPurpose, default=DrillPurpose.DRILL, name="purpose")
    trigger: str = state_field(Trigger, default=Trigger.SCHEDULE, name="trigger")
    state: str = state_field(DrillState, default=DrillState.SCHEDULED)
    snapshot_id: str | None = Field(default=None, sa_column=Column(String(64)))
    target: str | None = Field(default=None, sa_column=Column(String(400)))
    scheduled_for: datetime = ts_field()
    started_at: datetime | None = ts_field(nullable=True)
    finished_at: datetime | None = ts_field(nullable=True, index=True)
    rto_s: float | None = Field(default=None, sa_column=Column(Float))
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(Text))
    owner: str | None = Field(default=None, sa_column=Column(String(200)))
    lease_expires_at: datetime | None = ts_field(nullable=True, index=True)
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()
