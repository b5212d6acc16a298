"""Identity tables: API tokens (hashes only) and role bindings on tenant nodes."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, String, UniqueConstraint, Uuid
from sqlmodel import Field, SQLModel

from controlplane.db.types import new_id, state_check, state_field, ts_field


class Role(StrEnum):
    PLATFORM_ADMIN = "platform-admin"
    OPERATOR = "operator"
    AUDITOR = "auditor"
    APPROVER = "approver"
    SECURITY_OFFICER = "security-officer"
    TENANT_ADMIN = "tenant-admin"
    TENANT_MEMBER = "tenant-member"


class PrincipalKind(StrEnum):
    USER = "user"
    SERVICE = "service"


class ApiToken(SQLModel, table=True):
    """A bearer token. Only a SHA-256 of the secret is kept; the secret is shown once."""

    __tablename__ = "api_tokens"
    __table_args__ = (state_check("kind", PrincipalKind, name="kind_valid"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    prefix: str = Field(sa_column=Column(String(16), nullable=False, unique=True))
    secret_hash: str = Field(sa_column=Column(String(64), nullable=False))
    name: str = Field(sa_column=Column(String(100), nullable=False))
    subject: str = Field(sa_column=Column(String(200), nullable=False, index=True))
    kind: str = state_field(PrincipalKind, default=PrincipalKind.USER, name="kind")
    created_by: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: datetime = ts_field()
    expires_at: datetime | None = ts_field(nullable=True)
    revoked_at: datetime | None = ts_field(nullable=True)


class RoleBinding(SQLModel, table=True):
    """`subject` holds `role` over the subtree rooted at `tenant_id`."""

    __tablename__ = "role_bindings"
    __table_args__ = (
        UniqueConstraint("subject", "role", "tenant_id", name="uq_role_bindings_subject_role_tenant"),
        state_check("role", Role, name="role_valid"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    subject: str = Field(sa_column=Column(String(200), nullable=False, index=True))
    role: str = state_field(Role, default=Role.TENANT_MEMBER, name="role")
    tenant_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("tenants.id", ondelete="RESTRICT"), nullable=False, index=True)
    )
    created_by: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: datetime = ts_field()
