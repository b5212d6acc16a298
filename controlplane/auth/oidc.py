"""OIDC bearer tokens: signature and claims checked against the configured issuer's JWKS;
roles come only from the configured claim mappings (no stored bindings)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import jwt

from controlplane.auth.principal import Principal
from controlplane.settings import Settings

JWKS_TTL_S = 300.0


class OidcVerifier:
    def __init__(self, settings: Settings, *, http: httpx.Client | None = None) -> None:
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience or None
        self.jwks_url = settings.oidc_jwks_url
        self.algorithms = settings.oidc_algorithms
        self.mappings = settings.oidc_claim_mappings
        self._http = http or httpx.Client(timeout=5.0)
        self._keys: dict[str, Any] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.issuer and self.jwks_url)

    def _key(self, kid: str | None) -> Any:
        with self._lock:
            stale = time.monotonic() - self._fetched > JWKS_TTL_S
            if stale or kid not in self._keys:
                jwks = jwt.PyJWKSet.from_dict(self._http.get(self.jwks_url).raise_for_status().json())
                self._keys = {k.key_id or "": k for k in jwks.keys}
                self._fetched = time.monotonic()
            key = self._keys.get(kid) if kid else (next(iter(self._keys.values())) if len(self._keys) == 1 else None)
        if key is None:
            raise jwt.InvalidTokenError("signing key not in the issuer's JWKS")
        return key

    def principal(self, token: str) -> Principal | None:
        """A principal for a valid token, None for anything invalid (expired, wrong issuer...)."""
        try:
            header = jwt.get_unverified_header(token)
            key = self._key(header.get("kid"))
            claims = jwt.decode(
                token,
                key=key,
                algorithms=self.algorithms,
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "iss", "sub"]},
            )
        except (jwt.PyJWTError, httpx.HTTPError, ValueError):
            return None
        bindings = tuple(sorted({(m["role"], m["tenant"]) for m in self.mappings if _matches(claims, m)}))
        return Principal.with_bindings(f"oidc:{claims['sub']}", bindings, via="oidc")


def _matches(claims: dict[str, Any], mapping: dict[str, str]) -> bool:
    value = claims.get(mapping["claim"])
    if isinstance(value, list):
        return mapping["value"] in value
    return value == mapping["value"]
