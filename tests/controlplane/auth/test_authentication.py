"""Who is asking: API tokens and OIDC bearer tokens; everything else is a 401."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from controlplane.api.app import create_app
from controlplane.auth.models import ApiToken
from controlplane.db.uow import RecordingDispatcher
from controlplane.settings import Settings
from controlplane.site_config import Site
from tests.controlplane.helpers import assert_problem

PUBLIC = ["/healthz", "/readyz", "/openapi.json"]


def test_unauthenticated_calls_get_401_problem_json(anon: TestClient) -> None:
    problem = assert_problem(anon.get("/v1/tenants"), 401, "unauthenticated")
    assert "Bearer" in anon.get("/v1/tenants").headers["www-authenticate"]
    assert problem["instance"] == "/v1/tenants"
    assert_problem(anon.get("/v1/tenants", headers={"Authorization": "Bearer ctk_nope_nope"}), 401)
    assert_problem(anon.get("/v1/tenants", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}), 401)
    assert_problem(anon.post("/v1/tokens", json={"name": "x"}), 401)
    assert anon.get("/docs").status_code == 404


@pytest.mark.parametrize("path", PUBLIC)
def test_public_routes(anon: TestClient, path: str) -> None:
    assert anon.get(path).status_code == 200  # readyz: the database answers (no embedded worker to wait for)


def test_token_is_shown_once_stored_hashed_and_revocable(client: TestClient, engine: Engine) -> None:
    created = client.post("/v1/tokens", json={"name": "ci", "expires_in_days": 7})
    assert created.status_code == 201, created.text
    secret = created.json()["token"]
    assert secret.startswith("ctk_")
    token_id = created.json()["id"]
    listed = client.get("/v1/tokens").json()
    assert any(t["id"] == token_id for t in listed)
    assert secret not in json.dumps(listed) and secret not in client.get(f"/v1/tokens/{token_id}").text
    with engine.connect() as conn:
        stored = conn.execute(select(ApiToken.secret_hash).where(ApiToken.name == "ci")).scalar_one()
    assert secret not in stored and len(stored) == 64
    as_new = {"Authorization": f"Bearer {secret}"}
    assert client.get("/v1/whoami", headers=as_new).json()["subject"] == "admin"
    assert client.delete(f"/v1/tokens/{token_id}").status_code == 204
    assert_problem(client.get("/v1/whoami", headers=as_new), 401)
    assert client.get(f"/v1/tokens/{token_id}").json()["revoked_at"] is not None


def test_expired_token_is_refused(client: TestClient, engine: Engine) -> None:
    created = client.post("/v1/tokens", json={"name": "short", "expires_in_days": 1}).json()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE api_tokens SET expires_at = :t WHERE name = 'short'"),
            {"t": datetime.now(UTC) - timedelta(seconds=1)},
        )
    assert_problem(client.get("/v1/whoami", headers={"Authorization": f"Bearer {created['token']}"}), 401)


def test_a_tampered_token_is_refused(client: TestClient) -> None:
    secret = client.post("/v1/tokens", json={"name": "t"}).json()["token"]
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert_problem(client.get("/v1/whoami", headers={"Authorization": f"Bearer {tampered}"}), 401)


def test_only_platform_admins_mint_for_others(api_as: Callable[..., TestClient]) -> None:
    city_admin = api_as("tenant-admin", "hubei.wuhan")
    problem = assert_problem(city_admin.post("/v1/tokens", json={"name": "svc", "subject": "svc-backup"}), 403)
    assert problem["field"] == "subject"
    own = city_admin.post("/v1/tokens", json={"name": "mine"})
    assert own.status_code == 201 and own.json()["subject"] == city_admin.subject  # type: ignore[attr-defined]
    admin = api_as("platform-admin", "hubei")
    svc = admin.post("/v1/tokens", json={"name": "svc", "subject": "svc-backup", "kind": "service"})
    assert svc.status_code == 201 and svc.json()["kind"] == "service"
    # the city admin cannot see or revoke the service account's token
    assert_problem(city_admin.get(f"/v1/tokens/{svc.json()['id']}"), 404)
    assert_problem(city_admin.delete(f"/v1/tokens/{svc.json()['id']}"), 404)
    assert all(t["subject"] == city_admin.subject for t in city_admin.get("/v1/tokens").json())  # type: ignore[attr-defined]


# --- OIDC -----------------------------------------------------------------------------


class _Jwks(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def oidc(settings: Settings, engine: Engine, site: Site) -> Iterator[tuple[TestClient, Callable[..., str]]]:
    """A real issuer key generated here, its JWKS served over loopback HTTP."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public_jwk |= {"kid": "k1", "use": "sig", "alg": "RS256"}
    handler = type("Handler", (_Jwks,), {"body": json.dumps({"keys": [public_jwk]}).encode()})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    issuer = "https://sso.hubei.example/realms/egov"
    configured = settings.model_copy(
        update={
            "oidc_issuer": issuer,
            "oidc_audience": "chutian",
            "oidc_jwks_url": f"http://127.0.0.1:{server.server_address[1]}/jwks",
            "oidc_claim_mappings": [
                {"claim": "groups", "value": "wuhan-admins", "role": "tenant-admin", "tenant": "hubei.wuhan"},
                {"claim": "groups", "value": "province-auditors", "role": "auditor", "tenant": "hubei"},
            ],
        }
    )

    def mint(groups: list[str], *, iss: str = issuer, aud: str = "chutian", ttl: int = 300, signer: Any = key) -> str:
        now = int(time.time())
        claims = {"sub": "zhang.san", "iss": iss, "aud": aud, "iat": now, "exp": now + ttl, "groups": groups}
        return jwt.encode(claims, signer, algorithm="RS256", headers={"kid": "k1"})

    app = create_app(configured, engine=engine, site=site, dispatcher=RecordingDispatcher())
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client, mint
    server.shutdown()


def test_oidc_user_gets_exactly_the_mapped_roles(oidc: tuple[TestClient, Callable[..., str]]) -> None:
    client, mint = oidc
    me = client.get("/v1/whoami", headers={"Authorization": f"Bearer {mint(['wuhan-admins', 'other'])}"}).json()
    assert me["subject"] == "oidc:zhang.san" and me["via"] == "oidc"
    assert me["bindings"] == [{"role": "tenant-admin", "tenant": "hubei.wuhan"}]
    headers = {"Authorization": f"Bearer {mint(['wuhan-admins'])}"}
    assert client.get("/v1/tenants/hubei.wuhan.jiangan", headers=headers).status_code == 200
    assert_problem(client.get("/v1/tenants/hubei.yichang", headers=headers), 404)
    nothing = client.get("/v1/tenants", headers={"Authorization": f"Bearer {mint([])}"})
    assert nothing.status_code == 200 and nothing.json()["items"] == []


@pytest.mark.parametrize(
    "bad",
    [
        {"iss": "https://evil.example"},
        {"aud": "someone-else"},
        {"ttl": -10},
        {"signer": rsa.generate_private_key(public_exponent=65537, key_size=2048)},
    ],
    ids=["wrong-issuer", "wrong-audience", "expired", "wrong-key"],
)
def test_invalid_oidc_tokens_are_401(oidc: tuple[TestClient, Callable[..., str]], bad: dict[str, Any]) -> None:
    client, mint = oidc
    assert_problem(client.get("/v1/whoami", headers={"Authorization": f"Bearer {mint(['wuhan-admins'], **bad)}"}), 401)


def test_the_portal_logs_in_with_an_oidc_access_token(oidc: tuple[TestClient, Callable[..., str]]) -> None:
    client, mint = oidc
    assert "或 OIDC 访问令牌" in client.get("/login").text
    logged_in = client.post("/login", data={"token": mint(["wuhan-admins"])}, follow_redirects=False)
    assert logged_in.status_code == 303
    assert "oidc:zhang.san" in client.get("/").text
    stranger = client.post("/login", data={"token": mint([], iss="https://evil.example")}, follow_redirects=False)
    assert stranger.status_code == 401
