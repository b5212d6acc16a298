from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from controlplane.auth.models import ApiToken, PrincipalKind, Role, RoleBinding
from controlplane.tenants.schemas import TenantPath

Subject = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._@:+-]+$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TokenCreate(_In):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    subject: Subject | None = Field(default=None, description="Defaults to the caller; others need platform-admin")
    kind: PrincipalKind = PrincipalKind.USER
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class TokenPublic(BaseModel):
    id: uuid.UUID
    name: str
    subject: str
    kind: PrincipalKind
    prefix: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: ApiToken) -> TokenPublic:
        return cls(
            id=row.id,
            name=row.name,
            subject=row.subject,
            kind=PrincipalKind(row.kind),
            prefix=row.prefix,
            created_by=row.created_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )


class TokenCreated(TokenPublic):
    token: str = Field(description="Shown once; only its hash is stored")


class BindingCreate(_In):
    subject: Subject
    role: Role
    tenant: TenantPath


class BindingPublic(BaseModel):
    id: uuid.UUID
    subject: str
    role: Role
    tenant: str
    created_by: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: RoleBinding, path: str) -> BindingPublic:
        return cls(
            id=row.id,
            subject=row.subject,
            role=Role(row.role),
            tenant=path,
            created_by=row.created_by,
            created_at=row.created_at,
        )


class WhoAmI(BaseModel):
    subject: str
    via: str
    bindings: list[dict[str, str]]
