"""Every route of the app, called by city A about city B's objects.

The route list comes from the app itself. A route missing from ROUTES, or a path parameter
missing from the parameter table, fails the test: no new route escapes it. City A's token
gets 404 on B's items and sees none of B's objects in collections (also when filtered by
B); B's token succeeds on the same calls; B's rows are unchanged by A's attempts.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from controlplane.backup.models import BackupDrill, BackupPolicy, BackupRun
from controlplane.db.uow import unit_of_work
from controlplane.operations.models import Operation
from controlplane.tenants.models import Tenant
from tests.controlplane.helpers import credit_code
from tests.controlplane.ledger.helpers import allocate, seed_city_ledger

A, B = "hubei.yichang", "hubei.xiangyang"
B_COUNTY = f"{B}.fancheng"
CITY_ROLES = ("tenant-admin", "operator", "auditor")
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/openapi.json")}
PORTAL_PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/lang/{lang}")}  # no data, no session needed


@dataclass
class Call:
    kind: str  # item | collection | page | global-read | global-write | self
    body: Callable[[dict[str, str]], Any] | None = None
    b_status: int = 200
    filters: dict[str, str] = field(default_factory=dict)  # for collections: query -> key of B's ids
    form: bool = False  # portal pages take forms (and bearer tokens, like scripts do)


def _portal_volume(ids: dict[str, str]) -> dict[str, str]:
    return {
        "tenant": ids["county"],
        "cloud": "education",
        "region": "xiangyang",
        "system": ids["system"],
        "spec.size_gb": "3",
        "action": "draft",
    }


# Ordered so that B's own run of the same calls succeeds one after the other.
ROUTES: dict[tuple[str, str], Call] = {
    ("GET", "/v1/tenants"): Call("collection", filters={"subtree": "county", "parent": "city", "code": "county_code"}),
    ("GET", "/v1/tenants/{path}"): Call("item"),
    ("GET", "/v1/tenants/{path}/ancestors"): Call("item"),
    ("PATCH", "/v1/tenants/{path}"): Call("item", body=lambda ids: {"name_en": "Fancheng District (renamed)"}),
    ("POST", "/v1/tenants/{path}:suspend"): Call("item", body=lambda ids: {"reason": "cross-tenant test"}),
    ("POST", "/v1/tenants/{path}:reactivate"): Call("item", body=lambda ids: {"reason": "cross-tenant test"}),
    ("POST", "/v1/tenants"): Call(
        "item",
        b_status=201,
        body=lambda ids: {
            "parent": ids["city"],
            "code": f"new{uuid.uuid4().hex[:6]}",
            "name_zh": "新区",
            "name_en": "New",
            "kind": "county",
            "credit_code": credit_code("420600"),
        },
    ),
    ("GET", "/v1/operations"): Call("collection", filters={"tenant": "city"}),
    ("GET", "/v1/operations/{operation_id}"): Call("item"),
    ("GET", "/v1/audit"): Call("collection", filters={"tenant": "city"}),
    ("GET", "/v1/whoami"): Call("self"),
    ("POST", "/v1/tokens"): Call("self", b_status=201, body=lambda ids: {"name": "another"}),
    ("GET", "/v1/tokens"): Call("collection", filters={"subject": "subject"}),
    ("GET", "/v1/tokens/{token_id}"): Call("item"),
    ("DELETE", "/v1/tokens/{token_id}"): Call("item", b_status=204),
    ("POST", "/v1/role-bindings"): Call(
        "item",
        b_status=201,
        body=lambda ids: {"subject": "clerk-" + uuid.uuid4().hex[:6], "role": "tenant-member", "tenant": ids["county"]},
    ),
    ("GET", "/v1/role-bindings"): Call("collection", filters={"tenant": "city", "subject": "member"}),
    ("GET", "/v1/role-bindings/{binding_id}"): Call("item"),
    ("DELETE", "/v1/role-bindings/{binding_id}"): Call("item", b_status=204),
    ("POST", "/v1/systems"): Call(
        "item",
        b_status=201,
        body=lambda ids: {
            "tenant": ids["county"],
            "cloud": "education",
            "name": f"s{uuid.uuid4().hex[:6]}",
            "mlps_level": 2,
        },
    ),
    ("GET", "/v1/systems"): Call("collection", filters={"tenant": "city"}),
    ("GET", "/v1/systems/{system_id}"): Call("item"),
    ("POST", "/v1/requests"): Call(
        "item",
        b_status=201,
        body=lambda ids: {
            "tenant": ids["county"],
            "cloud": "education",
            "region": "xiangyang",
            "system": ids["system"],
            "spec": {"kind": "volume", "size_gb": 5},
        },
    ),
    ("GET", "/v1/requests"): Call("collection", filters={"tenant": "city"}),
    ("GET", "/v1/requests/{request_id}"): Call("item"),
    ("PATCH", "/v1/requests/{request_id}"): Call("item", body=lambda ids: {"title": "edited"}),
    ("POST", "/v1/requests/{request_id}:submit"): Call("item"),
    # B's tenant-admin decides step 1; step 2 belongs to the education cloud's lead department
    ("POST", "/v1/requests/{request_id}:approve"): Call("item"),
    ("POST", "/v1/requests/{request_id}:return"): Call("item", b_status=403, body=lambda ids: {"reason": "revise"}),
    ("POST", "/v1/requests/{request_id}:reject"): Call("item", b_status=403, body=lambda ids: {"reason": "x"}),
    ("POST", "/v1/requests/{request_id}:retry"): Call("item", b_status=409),
    ("POST", "/v1/requests/{request_id}:cancel"): Call("item"),
    # authorised for B, refused by the domain: the county still has a live allocation
    ("POST", "/v1/tenants/{path}:retire"): Call("item", b_status=409, body=lambda ids: {"reason": "cross-tenant test"}),
    ("GET", "/v1/regions"): Call("global-read"),
    ("GET", "/v1/regions/{region}"): Call("global-read"),
    ("GET", "/v1/regions/{region}/images"): Call("global-read"),
    ("PATCH", "/v1/regions/{region}"): Call("global-write", body=lambda ids: {"name_en": "x"}),
    ("GET", "/v1/clouds"): Call("global-read"),
    ("GET", "/v1/clouds/{cloud}"): Call("global-read"),
    ("PATCH", "/v1/clouds/{cloud}"): Call("global-write", body=lambda ids: {"name_en": "x"}),
    ("GET", "/v1/flavors"): Call("global-read"),
    ("GET", "/v1/flavors/{flavor}"): Call("global-read"),
    ("POST", "/v1/system:selftest"): Call("global-write"),
    ("GET", "/v1/quota-nodes"): Call("collection", filters={"subtree": "city"}),
    ("GET", "/v1/quota-nodes/{region}/{cloud}/{tenant_path}"): Call("item"),
    ("POST", "/v1/quota-nodes/{region}/{cloud}/{tenant_path}:dry-run"): Call(
        "item", body=lambda ids: {"delta": {"vcpus": 1}}
    ),
    ("PUT", "/v1/quota-nodes/{region}/{cloud}/{tenant_path}/limits"): Call(
        "item", body=lambda ids: {"limits": {"vcpus": 900}}
    ),
    ("GET", "/v1/allocations"): Call("collection", filters={"subtree": "city"}),
    ("GET", "/v1/allocations/{allocation_id}"): Call("item"),
    ("GET", "/v1/quota-inconsistencies"): Call("collection"),
    ("POST", "/v1/quota-inconsistencies/{report_id}:resolve"): Call(
        "item", body=lambda ids: {"resolution": "dismiss", "reason": "cross-tenant test"}
    ),
    ("GET", "/v1/backup-policies"): Call("collection", filters={"tenant": "city"}),
    ("GET", "/v1/backup-policies/{policy_id}"): Call("item"),
    ("POST", "/v1/backup-policies/{policy_id}:run"): Call("item", b_status=202),
    ("POST", "/v1/backup-policies/{policy_id}:drill"): Call("item", b_status=202),
    ("POST", "/v1/backup-policies/{policy_id}:restore"): Call(
        "item", b_status=202, body=lambda ids: {"name": f"r-{uuid.uuid4().hex[:8]}"}
    ),
    ("GET", "/v1/backup-runs"): Call("collection", filters={"tenant": "city", "policy": "policy"}),
    ("GET", "/v1/backup-runs/{run_id}"): Call("item"),
    ("GET", "/v1/backup-drills"): Call("collection", filters={"tenant": "city", "policy": "policy"}),
    ("GET", "/v1/backup-drills/{drill_id}"): Call("item"),
    ("GET", "/v1/backup-compliance"): Call("collection", filters={"tenant": "city"}),
    # the portal: same services, HTML pages; B's request is cancelled by now, so verbs are 409 for B
    ("GET", "/"): Call("self"),
    ("GET", "/catalogue"): Call("self"),
    ("GET", "/requests"): Call("page"),
    ("GET", "/requests/new/{kind}"): Call("self"),
    ("POST", "/requests/new/{kind}"): Call("item", form=True, body=_portal_volume),
    ("POST", "/requests/new/{kind}/options"): Call("item", form=True, body=_portal_volume),
    ("GET", "/requests/{request_id}"): Call("item"),
    ("GET", "/requests/{request_id}/progress"): Call("item"),
    ("GET", "/requests/{request_id}/edit"): Call("item"),
    ("POST", "/requests/{request_id}/edit"): Call("item", form=True, b_status=422, body=lambda ids: {"title": "x"}),
    **{
        ("POST", f"/requests/{{request_id}}/{verb}"): Call(
            "item", form=True, b_status=409, body=lambda ids: {"reason": "cross-tenant test"}
        )
        for verb in ("submit", "approve", "reject", "return", "cancel", "retry")
    },
    ("GET", "/quotas"): Call("page"),
    ("POST", "/quotas/limits"): Call(
        "item",
        form=True,
        body=lambda ids: {
            "tenant": ids["county"],
            "cloud": "education",
            "region": "xiangyang",
            "resource": "vcpus",
            "limit": "8",
        },
    ),
    ("GET", "/backups"): Call("page"),
    ("GET", "/ops"): Call("page"),
    ("GET", "/audit"): Call("page"),
    ("POST", "/logout"): Call("self"),
}


# path parameter -> key of B's seeded ids (or a literal for global objects)
PARAMS: dict[str, str] = {
    "path": "county",
    "operation_id": "operation",
    "token_id": "spare_token",
    "binding_id": "binding",
    "region": "=xiangyang",
    "cloud": "=industry",
    "flavor": "=c2.medium",
    "tenant_path": "city",
    "allocation_id": "allocation",
    "report_id": "drift",
    "system_id": "system",
    "request_id": "request",
    "policy_id": "policy",
    "run_id": "run",
    "drill_id": "drill",
    "kind": "=volume",
    "lang": "=en",
}


def seed_city_b(
    engine: Engine, api_as: Callable[..., TestClient], client: TestClient
) -> tuple[TestClient, dict[str, str]]:
    """B's objects of every kind: a county, an operation, a spare token, a binding, audit events."""
    created = client.post(
        "/v1/tenants",
        json={
            "parent": B,
            "code": "fancheng",
            "name_zh": "樊城区",
            "name_en": "Fancheng District",
            "kind": "district",
            "credit_code": credit_code("420606"),
        },
    )
    assert created.status_code == 201, created.text
    city_b = api_as(CITY_ROLES[0], B, *((r, B) for r in CITY_ROLES[1:]))
    allocate(engine, B, "shared", {}, cloud="education", region="xiangyang")
    allocate(engine, B_COUNTY, "shared", {}, cloud="education", region="xiangyang")
    spare = city_b.post("/v1/tokens", json={"name": "spare"}).json()
    member = city_b.post("/v1/role-bindings", json={"subject": "b-clerk", "role": "tenant-member", "tenant": B_COUNTY})
    assert member.status_code == 201, member.text
    with unit_of_work(engine) as uow:
        county_id = uow.session.scalar(select(Tenant.id).where(Tenant.path == B_COUNTY))
        op = Operation(kind="selftest", tenant_id=county_id, created_at=uow.now(), updated_at=uow.now())
        uow.session.add(op)
        uow.session.flush()
        op_id = str(op.id)
    ids = {
        "city": B,
        "county": B_COUNTY,
        "county_code": "fancheng",
        "operation": op_id,
        "spare_token": spare["id"],
        "binding": member.json()["id"],
        "subject": city_b.subject,  # type: ignore[attr-defined]
        "member": "b-clerk",
    }
    ids |= seed_city_ledger(engine, B, "industry", "xiangyang")
    system = city_b.post(
        "/v1/systems", json={"tenant": B_COUNTY, "cloud": "education", "name": "b-system", "mlps_level": 2}
    )
    assert system.status_code == 201, system.text
    request = city_b.post(
        "/v1/requests",
        json={
            "tenant": B_COUNTY,
            "cloud": "education",
            "region": "xiangyang",
            "system": system.json()["id"],
            "spec": {"kind": "volume", "size_gb": 5},
            "declaration": {"items": [{"name": "d", "sharing": "unconditional", "catalogue_ref": "HB-1"}]},
        },
    )
    assert request.status_code == 201, request.text
    ids |= {"system": system.json()["id"], "request": request.json()["id"]}
    ids |= seed_backup(engine, B_COUNTY, ids["system"])
    return city_b, ids


def seed_backup(engine: Engine, path: str, system_id: str) -> dict[str, str]:
    """A policy with a verified run and a passed drill (rows only: no restic needed here)."""
    with unit_of_work(engine) as uow:
        tenant_id = uow.session.scalar(select(Tenant.id).where(Tenant.path == path))
        now = uow.now()

        def add(row: Any) -> Any:
            row.created_at = row.updated_at = now
            uow.session.add(row)
            uow.session.flush()
            return row

        policy = add(
            BackupPolicy(
                tenant_id=tenant_id,
                system_id=uuid.UUID(system_id),
                slug="b-payroll",
                source_paths=["/srv/b"],
                schedule="0 2 * * *",
                drill_schedule="0 4 * * 0",
                rpo_target_s=86400,
                retention={"last": 7},
                source_region="xiangyang",
                target_region="yichang",
                repository_url="/nowhere/b",
                repository_prefix=f"{path}/b-payroll",
                password_sealed="not-a-real-token",
                last_claimed_at=now,
                drill_last_claimed_at=now,
            )
        )
        run = add(
            BackupRun(
                policy_id=policy.id,
                tenant_id=tenant_id,
                state="verified",
                scheduled_for=now,
                snapshot_id="b" * 64,
                snapshot_time=now,
            )
        )
        drill = add(
            BackupDrill(
                policy_id=policy.id, tenant_id=tenant_id, run_id=run.id, state="passed", scheduled_for=now, rto_s=1.5
            )
        )
        return {"policy": str(policy.id), "run": str(run.id), "drill": str(drill.id)}


def url_for(path: str, ids: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        ref = PARAMS[match.group(1)]
        return ref[1:] if ref.startswith("=") else ids[ref]

    return re.sub(r"\{(\w+)\}", fill, path)


def snapshot_b(engine: Engine, subject: str) -> str:
    in_b = "SELECT id FROM tenants WHERE path = :c OR path LIKE :p"
    args = {"c": B, "p": f"{B}.%"}
    with engine.connect() as conn:
        rows = {
            "tenants": conn.execute(
                text("SELECT * FROM tenants WHERE path = :c OR path LIKE :p ORDER BY path"), args
            ).all(),
            "bindings": conn.execute(
                text(f"SELECT * FROM role_bindings WHERE tenant_id IN ({in_b}) ORDER BY id"), args
            ).all(),
            "tokens": conn.execute(
                text("SELECT * FROM api_tokens WHERE subject = :s ORDER BY id"), {"s": subject}
            ).all(),
            "requests": conn.execute(
                text(f"SELECT * FROM requests WHERE tenant_id IN ({in_b}) ORDER BY id"), args
            ).all(),
            "operations": conn.execute(
                text(f"SELECT * FROM operations WHERE tenant_id IN ({in_b}) ORDER BY id"), args
            ).all(),
            **{
                table: conn.execute(text(f"SELECT * FROM {table} WHERE tenant_id IN ({in_b}) ORDER BY id"), args).all()
                for table in ("backup_policies", "backup_runs", "backup_drills")
            },
        }
    assert all(rows.values()), "B's seed is incomplete"
    return repr(rows)


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, walking included routers (all our routers carry
    their full prefix); cross-checked against the OpenAPI document."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                found.extend((method, route.path) for method in sorted(route.methods - {"HEAD"}))
            elif hasattr(route, "original_router"):
                walk(route.original_router.routes)
            elif hasattr(route, "path") and hasattr(route, "methods"):
                found.extend((method, route.path) for method in sorted((route.methods or set()) - {"HEAD"}))

    walk(list(app.routes))
    documented = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    assert documented <= set(found), f"documented but not found by the walk: {documented - set(found)}"
    return found


def test_every_route_is_covered(app: FastAPI) -> None:
    missing = [r for r in app_routes(app) if r not in ROUTES and r not in PUBLIC | PORTAL_PUBLIC]
    assert not missing, f"routes missing from the cross-tenant test: {missing}"
    unknown_params = {p for _, path in app_routes(app) for p in re.findall(r"\{(\w+)\}", path) if p not in PARAMS}
    assert not unknown_params, f"path parameters missing from PARAMS: {unknown_params}"
    stale = [r for r in ROUTES if r not in app_routes(app)]
    assert not stale, f"ROUTES lists routes the app no longer has: {stale}"


def _a_is_refused(
    city_a: TestClient, method: str, url: str, call: Call, ids: dict[str, str], b_markers: list[str]
) -> None:
    """City A's call about B: 404 on items (localized in the portal), nothing of B's anywhere."""
    body = call.body(ids) if call.body else None
    response = city_a.request(method, url, **({"data": body} if call.form else {"json": body}))
    where = f"{method} {url}"
    if call.kind == "item":
        assert response.status_code == 404, f"{where}: A got {response.status_code}: {response.text}"
        echoed = url + json.dumps(body or {})  # the 404 may repeat what A asked for, nothing more
        assert not any(m in response.text for m in b_markers if m not in echoed), f"{where} leaked B's data"
        if not url.startswith("/v1"):
            assert "未找到" in response.text, f"{where}: the portal's not-found page is localized"
    elif call.kind == "collection":
        assert response.status_code == 200, f"{where}: {response.text}"
        assert not any(m in response.text for m in b_markers), f"{where} shows B's objects to A"
        for query, key in call.filters.items():
            filtered = city_a.request(method, url, params={query: ids[key]})
            assert filtered.status_code == 200, f"{where}?{query}: {filtered.text}"
            assert not any(m in filtered.text for m in b_markers), f"{where}?{query}=B shows B's objects"
    elif call.kind == "page":
        assert response.status_code == 200, f"{where}: {response.status_code}"
        assert not any(m in response.text for m in b_markers), f"{where} shows B's objects to A"
    elif call.kind == "global-read":
        assert response.status_code == 200, where
    elif call.kind == "global-write":
        assert response.status_code == 403, f"{where}: a city role may not change global objects"
    elif call.kind == "self":
        assert response.status_code == call.b_status, where
        assert not any(m in response.text for m in b_markers), where


def test_city_a_cannot_reach_city_b(
    app: FastAPI, engine: Engine, api_as: Callable[..., TestClient], client: TestClient
) -> None:
    city_b, ids = seed_city_b(engine, api_as, client)
    city_a = api_as(CITY_ROLES[0], A, *((r, A) for r in CITY_ROLES[1:]))
    b_markers = [
        ids["city"],
        ids["operation"],
        ids["spare_token"],
        ids["binding"],
        ids["subject"],
        "b-clerk",
        ids["system"],
        ids["request"],
        ids["policy"],
        ids["run"],
        ids["drill"],
    ]
    before = snapshot_b(engine, ids["subject"])
    for (method, path), call in ROUTES.items():
        _a_is_refused(city_a, method, url_for(path, ids), call, ids, b_markers)
    assert snapshot_b(engine, ids["subject"]) == before, "A's calls changed B's rows"

    # B's own token succeeds on the very same calls
    for (method, path), call in ROUTES.items():
        url = url_for(path, ids)
        body = call.body(ids) if call.body else None
        response = city_b.request(method, url, **({"data": body} if call.form else {"json": body}))
        where = f"{method} {url}"
        if call.kind == "page":
            assert response.status_code == 200, where
        elif call.kind in ("item", "self", "global-read"):
            assert response.status_code == call.b_status, f"{where}: B got {response.status_code}: {response.text}"
        elif call.kind == "collection":
            assert response.status_code == 200, where
            items = json.dumps(response.json())
            for query, key in call.filters.items():
                filtered = city_b.request(method, url, params={query: ids[key]})
                assert filtered.status_code == 200 and filtered.json(), f"{where}?{query}: B sees nothing"
            assert items != "[]", f"{where}: B sees none of its own objects"
        elif call.kind == "global-write":
            assert response.status_code == 403, where


def test_a_step_holder_reads_only_the_request_it_decides(
    engine: Engine, api_as: Callable[..., TestClient], client: TestClient
) -> None:
    """The education cloud's lead-department approver holds no role over city B: it may read
    the one request whose step it holds, and nothing else of B's."""
    city_b, ids = seed_city_b(engine, api_as, client)
    sibling = city_b.post(
        "/v1/requests",
        json={
            "tenant": B_COUNTY,
            "cloud": "education",
            "region": "xiangyang",
            "system": ids["system"],
            "spec": {"kind": "volume", "size_gb": 7},
        },
    )
    assert sibling.status_code == 201, sibling.text
    assert city_b.post(f"/v1/requests/{ids['request']}:submit").status_code == 200
    assert city_b.post(f"/v1/requests/{ids['request']}:approve").status_code == 200  # step 1 done by B
    approver = api_as("approver", "hubei.jyt")
    assert approver.get(f"/v1/requests/{ids['request']}").status_code == 200
    assert approver.get(f"/v1/requests/{sibling.json()['id']}").status_code == 404
    assert approver.get(f"/v1/systems/{ids['system']}").status_code == 404
    assert approver.get(f"/v1/tenants/{B_COUNTY}").status_code == 404
    listed = approver.get("/v1/requests").json()["items"]
    assert [r["id"] for r in listed] == [ids["request"]]
    assert [r["id"] for r in approver.get("/v1/requests?inbox=true").json()["items"]] == [ids["request"]]
    assert approver.post(f"/v1/requests/{sibling.json()['id']}:approve").status_code == 404
