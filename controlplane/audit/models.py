"""The append-only, hash-chained audit trail and its single chain-head row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Integer, String, Text
from sqlmodel import Field, SQLModel

from controlplane.db.types import ts_field
from controlplane.db.types_json import JSONType

GENESIS_HASH = "0" * 64


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"

    seq: int = Field(
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    )
    occurred_at: datetime = ts_field(index=True)
    actor: str = Field(sa_column=Column(String(200), nullable=False, index=True))
    action: str = Field(sa_column=Column(String(80), nullable=False, index=True))
    target_type: str = Field(sa_column=Column(String(40), nullable=False))
    target: str = Field(sa_column=Column(String(400), nullable=False))
    tenant_path: str | None = Field(default=None, sa_column=Column(String(400), index=True))
    request_id: str | None = Field(default=None, sa_column=Column(String(64)))
    client_addr: str | None = Field(default=None, sa_column=Column(String(64)))
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    extra: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    before_digest: str | None = Field(default=None, sa_column=Column(String(64)))
    after_digest: str | None = Field(default=None, sa_column=Column(String(64)))
    prev_hash: str = Field(sa_column=Column(String(64), nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))


class AuditQueued(SQLModel, table=True):
    """An event committed with its change but not yet chained (see ``chain.integrate``).

    Redacted and digested already; only ``seq``, ``prev_hash`` and ``hash`` are added when it
    moves into ``audit_events``. Keeping the chain head out of every writing transaction is
    what lets unrelated writers (and the quota ledger's hot rows) commit in parallel."""

    __tablename__ = "audit_queue"

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    occurred_at: datetime = ts_field()
    actor: str = Field(sa_column=Column(String(200), nullable=False))
    action: str = Field(sa_column=Column(String(80), nullable=False))
    target_type: str = Field(sa_column=Column(String(40), nullable=False))
    target: str = Field(sa_column=Column(String(400), nullable=False))
    tenant_path: str | None = Field(default=None, sa_column=Column(String(400)))
    request_id: str | None = Field(default=None, sa_column=Column(String(64)))
    client_addr: str | None = Field(default=None, sa_column=Column(String(64)))
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    extra: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    before_digest: str | None = Field(default=None, sa_column=Column(String(64)))
    after_digest: str | None = Field(default=None, sa_column=Column(String(64)))


class AuditHead(SQLModel, table=True):
    """One row (id=1): the newest sequence and hash. Only ``chain.integrate`` locks it."""

    __tablename__ = "audit_head"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    seq: int = Field(sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))
    updated_at: datetime = ts_field()


class AuditCheckpoint(SQLModel, table=True):
    """What the periodic verification saw; a later head behind it means tail truncation."""

    __tablename__ = "audit_checkpoints"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    seq: int = Field(sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))
    verified: bool = Field(sa_column=Column(Boolean, nullable=False))
    problem: str | None = Field(default=None, sa_column=Column(Text))
    checked_at: datetime = ts_field(index=True)
