"""API shapes for tenants: validated at the edge, so services receive clean values."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from controlplane.site_config import NetworkZone
from controlplane.tenants.credit_code import credit_code_problem
from controlplane.tenants.models import Tenant, TenantKind, TenantStatus

CODE_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?$"
PATH_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?)*$"


def _credit_code(value: str) -> str:
    value = value.strip().upper()
    problem = credit_code_problem(value)
    if problem:
        raise ValueError(f"invalid unified social credit code: {problem}")
    return value


TenantCode = Annotated[str, Field(pattern=CODE_PATTERN, max_length=20, examples=["wuhan"])]
TenantPath = Annotated[str, Field(pattern=PATH_PATTERN, max_length=400, examples=["hubei.wuhan"])]
CreditCode = Annotated[str, Field(min_length=18, max_length=18), AfterValidator(_credit_code)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
MlpsLevel = Annotated[int, Field(ge=2, le=4)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TenantCreate(_In):
    parent: TenantPath = Field(description="Path of the parent tenant, e.g. `hubei.wuhan`")
    code: TenantCode
    name_zh: Name
    name_en: Name
    kind: TenantKind
    credit_code: CreditCode
    mlps_ceiling: MlpsLevel | None = Field(default=None, description="Defaults to the parent's")
    network_zone: NetworkZone | None = Field(default=None, description="Defaults to the parent's")
    dr_link_mbps: Annotated[int, Field(ge=0, le=1_000_000)] = 0


class TenantUpdate(_In):
    code: TenantCode | None = None
    name_zh: Name | None = None
    name_en: Name | None = None
    credit_code: CreditCode | None = None
    mlps_ceiling: MlpsLevel | None = None
    network_zone: NetworkZone | None = None
    dr_link_mbps: Annotated[int, Field(ge=0, le=1_000_000)] | None = None


class StatusChange(_In):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class TenantPublic(BaseModel):
    id: uuid.UUID
    code: str
    path: str
    parent: str | None
    depth: int
    name_zh: str
    name_en: str
    kind: TenantKind
    credit_code: str
    mlps_ceiling: int
    network_zone: NetworkZone
    dr_link_mbps: int
    status: TenantStatus
    status_reason: str | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def from_row(cls, row: Tenant) -> TenantPublic:
        parent = row.path.rsplit(".", 1)[0] if "." in row.path else None
        return cls(
            id=row.id,
            code=row.code,
            path=row.path,
            parent=parent,
            depth=row.depth,
            name_zh=row.name_zh,
            name_en=row.name_en,
            kind=TenantKind(row.kind),
            credit_code=row.credit_code,
            mlps_ceiling=row.mlps_ceiling,
            network_zone=NetworkZone(row.network_zone),
            dr_link_mbps=row.dr_link_mbps,
            status=TenantStatus(row.status),
            status_reason=row.status_reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
            version=row.version,
        )
