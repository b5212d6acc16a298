"""Allocations, ledger nodes, reservations and usage reports as rows.

A ledger node is keyed (tenant, themed cloud, region); the region node has neither tenant
nor cloud. Vectors are JSON objects resource -> int; a resource missing from ``limits`` is
unlimited. ``consumption`` is stored and maintained under the chain's row locks, so an
admission reads O(depth) rows, never a subtree.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlmodel import Field, SQLModel

from controlplane.db.types import new_id, state_check, state_field, ts_field
from controlplane.db.types_json import JSONType
from quotas import NodeMode


class AllocationMode(StrEnum):
    SLICE = "slice"  # carved out of the parent and guaranteed
    SHARED = "shared"  # competes for the parent's pool


class AllocationStatus(StrEnum):
    ACTIVE = "active"
    RETIRING = "retiring"
    RETIRED = "retired"


class LimitSource(StrEnum):
    SITE = "site"  # region capacity x overcommit from the site file / catalogue
    MEASURED = "measured"  # reported by the provisioner: the site file no longer applies
    OPERATOR = "operator"  # set through the API or a service call


class UsageReportStatus(StrEnum):
    OPEN = "open"  # the backend disagrees with the ledger
    APPLIED = "applied"  # an operator (or configured auto-apply) made the ledger follow
    DISMISSED = "dismissed"  # an operator decided the ledger is right
    RESOLVED = "resolved"  # a later report agreed with the ledger again


class Allocation(SQLModel, table=True):
    """A tenant's footprint in one themed cloud and region."""

    __tablename__ = "allocations"
    __table_args__ = (
        UniqueConstraint("tenant_id", "cloud", "region", name="uq_allocations_tenant_cloud_region"),
        state_check("mode", AllocationMode, name="mode_valid"),
        state_check("status", AllocationStatus, name="status_valid"),
        CheckConstraint("mode = 'slice' OR NOT direct_access", name="direct_access_needs_slice"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    tenant_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("tenants.id", ondelete="RESTRICT"), nullable=False, index=True)
    )
    cloud: str = Field(
        sa_column=Column(String(20), ForeignKey("themed_clouds.code", ondelete="RESTRICT"), nullable=False)
    )
    region: str = Field(sa_column=Column(String(20), ForeignKey("regions.code", ondelete="RESTRICT"), nullable=False))
    mode: str = state_field(AllocationMode, default=AllocationMode.SHARED, name="mode")
    direct_access: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    status: str = state_field(AllocationStatus, default=AllocationStatus.ACTIVE, name="status")
    status_reason: str | None = Field(default=None, sa_column=Column(String(500)))
    created_by: str | None = Field(default=None, sa_column=Column(String(200)))
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()


class QuotaNode(SQLModel, table=True):
    """One ledger node. ``depth`` is 0 for the region node and tenant depth + 1 otherwise,
    so ``ORDER BY depth`` is the fixed root-to-leaf lock order of a chain."""

    __tablename__ = "quota_nodes"
    __table_args__ = (
        UniqueConstraint("tenant_id", "cloud", "region", name="uq_quota_nodes_tenant_cloud_region"),
        # NULLs are distinct in the constraint above: one region node per region needs its own index.
        Index(
            "uq_quota_nodes_region_root",
            "region",
            unique=True,
            sqlite_where=text("tenant_id IS NULL"),
            postgresql_where=text("tenant_id IS NULL"),
        ),
        state_check("mode", NodeMode, name="mode_valid"),
        state_check("limits_source", LimitSource, name="limits_source_valid"),
        CheckConstraint("(tenant_id IS NULL) = (cloud IS NULL)", name="region_node_shape"),
        CheckConstraint("(tenant_id IS NULL) = (mode = 'root')", name="root_mode"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    tenant_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid(), ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    )
    cloud: str | None = Field(
        default=None, sa_column=Column(String(20), ForeignKey("themed_clouds.code", ondelete="RESTRICT"))
    )
    region: str = Field(sa_column=Column(String(20), ForeignKey("regions.code", ondelete="RESTRICT"), nullable=False))
    allocation_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(Uuid(), ForeignKey("allocations.id", ondelete="RESTRICT"), unique=True),
    )
    depth: int = Field(sa_column=Column(Integer, nullable=False))
    mode: str = state_field(NodeMode, default=NodeMode.SHARED, name="mode")
    limits: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    limits_source: str = state_field(LimitSource, default=LimitSource.OPERATOR, name="limits_source")
    used: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    reserved: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    consumption: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    over_limit: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    updated_at: datetime = ts_field()


class Reservation(SQLModel, table=True):
    """Resources held at a node for ``owner`` (``operation:<id>``, ``request:<id>``) until it
    commits them (reserved -> used) or releases them. One reservation per owner."""

    __tablename__ = "quota_reservations"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    owner: str = Field(sa_column=Column(String(120), nullable=False, unique=True))
    node_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("quota_nodes.id", ondelete="RESTRICT"), nullable=False, index=True)
    )
    amounts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    committed: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    expires_at: datetime | None = ts_field(nullable=True, index=True)
    created_by: str | None = Field(default=None, sa_column=Column(String(200)))
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()


class UsageReport(SQLModel, table=True):
    """What a backend measured for an allocation when it disagreed with the ledger's used.

    At most one open report per (allocation, source): a newer measurement updates it.
    """

    __tablename__ = "quota_usage_reports"
    __table_args__ = (state_check("status", UsageReportStatus, name="status_valid"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    allocation_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("allocations.id", ondelete="RESTRICT"), nullable=False, index=True)
    )
    source: str = Field(sa_column=Column(String(40), nullable=False))
    measured: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    ledger_used: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    drift: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    status: str = state_field(UsageReportStatus, default=UsageReportStatus.OPEN, name="status")
    first_seen_at: datetime = ts_field()
    reported_at: datetime = ts_field()
    resolved_at: datetime | None = ts_field(nullable=True)
    resolved_by: str | None = Field(default=None, sa_column=Column(String(200)))
