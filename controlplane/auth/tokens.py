"""API tokens: random secrets shown once, stored as SHA-256, with expiry and revocation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select

from controlplane.audit.record import AuditRecord
from controlplane.auth.models import ApiToken, PrincipalKind
from controlplane.auth.policy import can
from controlplane.auth.principal import Principal
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Forbidden, NotFound

TOKEN_PREFIX = "ctk_"  # noqa: S105 - a public marker, not a secret


def _hash(secret: str) -> str:
    # Tokens carry 256 bits of randomness: a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def mint(
    uow: UnitOfWork, *, subject: str, name: str, kind: PrincipalKind, created_by: str, ttl: timedelta | None
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the only copy of the secret."""
    prefix = secrets.token_hex(6)
    secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    now = uow.now()
    row = ApiToken(
        prefix=prefix,
        secret_hash=_hash(secret),
        name=name,
        subject=subject,
        kind=kind.value,
        created_by=created_by,
        created_at=now,
        expires_at=now + ttl if ttl else None,
    )
    uow.session.add(row)
    uow.session.flush()
    uow.audit(
        AuditRecord(
            "token.create",
            "token",
            str(row.id),
            after={
                "id": str(row.id),
                "name": name,
                "subject": subject,
                "kind": kind.value,
                "expires_at": row.expires_at.isoformat() if row.expires_at else None,
            },
        )
    )
    return row, secret


def resolve(uow: UnitOfWork, presented: str, now: datetime) -> ApiToken | None:
    """The live token matching `presented`, compared in constant time; None otherwise."""
    if not presented.startswith(TOKEN_PREFIX):
        return None
    prefix = presented[len(TOKEN_PREFIX) :].split("_", 1)[0]
    row = uow.session.scalars(select(ApiToken).where(ApiToken.prefix == prefix)).first()
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(presented)):
        return None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return row


def visible(uow: UnitOfWork, who: Principal, *, subject: str | None) -> Sequence[ApiToken]:
    stmt = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
    if can(who, "tokens.manage-others", None):
        if subject is not None:
            stmt = stmt.where(ApiToken.subject == subject)
    else:
        stmt = stmt.where(ApiToken.subject == who.name)
        if subject is not None and subject != who.name:
            return []
    return list(uow.session.scalars(stmt))


def get_visible(uow: UnitOfWork, who: Principal, token_id: uuid.UUID) -> ApiToken:
    row = uow.session.get(ApiToken, token_id)
    if row is None or (row.subject != who.name and not can(who, "tokens.manage-others", None)):
        raise NotFound("token not found")
    return row


def revoke(uow: UnitOfWork, who: Principal, token_id: uuid.UUID) -> ApiToken:
    row = get_visible(uow, who, token_id)
    if row.revoked_at is None:
        row.revoked_at = uow.now()
        uow.session.flush()
        uow.audit(
            AuditRecord(
                "token.revoke",
                "token",
                str(row.id),
                before={"revoked_at": None},
                after={"revoked_at": row.revoked_at.isoformat(), "subject": row.subject},
            )
        )
    return row


def check_can_mint_for(who: Principal, subject: str) -> None:
    if subject != who.name and not can(who, "tokens.manage-others", None):
        raise Forbidden("only a platform admin may create tokens for another subject", field="subject")
