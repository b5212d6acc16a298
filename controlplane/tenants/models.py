"""The organisation tree, stored with a materialised path so subtree queries are one range scan."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Column, ForeignKey, Integer, String, UniqueConstraint, Uuid
from sqlmodel import Field, SQLModel

from controlplane.db.types import new_id, state_check, state_field, ts_field
from controlplane.site_config import NetworkZone


class TenantKind(StrEnum):
    PROVINCE = "province"
    DEPARTMENT = "department"
    CITY = "city"
    COUNTY = "county"
    DISTRICT = "district"
    UNIT = "unit"


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    RETIRED = "retired"


ALLOWED_PARENTS: dict[TenantKind, frozenset[TenantKind]] = {
    TenantKind.PROVINCE: frozenset(),
    TenantKind.DEPARTMENT: frozenset({TenantKind.PROVINCE}),
    TenantKind.CITY: frozenset({TenantKind.PROVINCE}),
    TenantKind.COUNTY: frozenset({TenantKind.CITY}),
    TenantKind.DISTRICT: frozenset({TenantKind.CITY}),
    TenantKind.UNIT: frozenset(
        {TenantKind.DEPARTMENT, TenantKind.CITY, TenantKind.COUNTY, TenantKind.DISTRICT, TenantKind.UNIT}
    ),
}


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"
    __table_args__ = (
        UniqueConstraint("parent_id", "code", name="uq_tenants_parent_code"),
        state_check("status", TenantStatus, name="status_valid"),
        state_check("kind", TenantKind, name="kind_valid"),
        state_check("network_zone", NetworkZone, name="network_zone_valid"),
        CheckConstraint("mlps_ceiling BETWEEN 2 AND 4", name="mlps_ceiling_range"),
        CheckConstraint("dr_link_mbps >= 0", name="dr_link_nonnegative"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    parent_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid(), ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    )
    code: str = Field(sa_column=Column(String(20), nullable=False))
    path: str = Field(sa_column=Column(String(400), nullable=False, unique=True))
    depth: int = Field(sa_column=Column(Integer, nullable=False))
    name_zh: str = Field(sa_column=Column(String(200), nullable=False))
    name_en: str = Field(sa_column=Column(String(200), nullable=False))
    kind: str = state_field(TenantKind, default=TenantKind.UNIT, name="kind")
    credit_code: str = Field(sa_column=Column(String(18), nullable=False, unique=True))
    mlps_ceiling: int = Field(default=2, sa_column=Column(Integer, nullable=False))
    network_zone: str = state_field(NetworkZone, default=NetworkZone.EGOV_EXTRANET, name="network_zone")
    dr_link_mbps: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    status: str = state_field(TenantStatus, default=TenantStatus.ACTIVE, name="status")
    status_reason: str | None = Field(default=None, sa_column=Column(String(500)))
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
