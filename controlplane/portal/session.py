"""The portal's session cookie: the API token sealed with the secret keys, plus a CSRF secret.

The cookie never holds a token in plain text: it is a Fernet token (AES + HMAC) of
``{"t": <api token or OIDC JWT>, "c": <csrf secret>, "iat": <unix time>}``. Each request
opens it and authenticates the credential inside exactly as the API does, so a revoked or
expired token ends the session at once and there is no second login system to keep right.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass

from fastapi import Request

from controlplane.api.context import AppContext
from controlplane.secretbox import SecretBox, read_keys

COOKIE = "chutian_session"
MAX_AGE_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    credential: str
    csrf: str


def _box(ctx: AppContext) -> SecretBox:
    box = ctx.extras.get("portal_box")
    if box is None:
        box = SecretBox(read_keys(ctx.settings.resolved_secret_keys_file))
        ctx.extras["portal_box"] = box
    return box


def seal(ctx: AppContext, credential: str) -> tuple[str, Session]:
    session = Session(credential=credential, csrf=secrets.token_urlsafe(24))
    payload = json.dumps({"t": session.credential, "c": session.csrf, "iat": int(time.time())})
    return _box(ctx).seal(payload), session


def read(ctx: AppContext, request: Request) -> Session | None:
    """The session in the request's cookie, or None (absent, tampered with, or too old)."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(_box(ctx).open(raw))
    except (ValueError, UnicodeError):
        return None
    if not isinstance(data, dict) or time.time() - float(data.get("iat", 0)) > MAX_AGE_S:
        return None
    credential, csrf = data.get("t"), data.get("c")
    if not isinstance(credential, str) or not isinstance(csrf, str):
        return None
    return Session(credential=credential, csrf=csrf)


def csrf_ok(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf, presented or "")
