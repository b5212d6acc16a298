"""What each role may do, where in the tree."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.controlplane.helpers import assert_problem, new_tenant


def test_county_admin_sees_its_subtree_and_nothing_else(api_as: Callable[..., TestClient]) -> None:
    county = api_as("tenant-admin", "hubei.wuhan.jiangan")
    listed = county.get("/v1/tenants?limit=500").json()["items"]
    assert [t["path"] for t in listed] == ["hubei.wuhan.jiangan"]
    assert county.get("/v1/tenants/hubei.wuhan.jiangan").status_code == 200
    for elsewhere in ("hubei", "hubei.wuhan", "hubei.wuhan.jianghan", "hubei.yichang"):
        assert_problem(county.get(f"/v1/tenants/{elsewhere}"), 404)
    assert county.get("/v1/tenants?subtree=hubei.wuhan").json()["items"] == [listed[0]]
    assert county.get("/v1/tenants?parent=hubei.wuhan").json()["items"] == [listed[0]]
    # ancestors outside the caller's scope are not revealed
    assert county.get("/v1/tenants/hubei.wuhan.jiangan/ancestors").json() == []


def test_tenant_admin_manages_below_not_itself(api_as: Callable[..., TestClient]) -> None:
    city = api_as("tenant-admin", "hubei.yichang")
    assert (
        city.post("/v1/tenants", json=new_tenant(parent="hubei.yichang", code="newcounty", kind="county")).status_code
        == 201
    )
    assert city.patch("/v1/tenants/hubei.yichang.newcounty", json={"name_en": "Renamed"}).status_code == 200
    assert_problem(city.patch("/v1/tenants/hubei.yichang", json={"mlps_ceiling": 4}), 403)
    assert_problem(city.post("/v1/tenants/hubei.yichang.newcounty:suspend", json={"reason": "x"}), 403)
    assert_problem(city.post("/v1/tenants", json=new_tenant(parent="hubei.wuhan")), 404)


def test_members_read_but_do_not_change(api_as: Callable[..., TestClient]) -> None:
    member = api_as("tenant-member", "hubei.wuhan")
    assert member.get("/v1/tenants/hubei.wuhan.qiaokou").status_code == 200
    assert_problem(member.post("/v1/tenants", json=new_tenant(parent="hubei.wuhan")), 403)
    assert_problem(member.patch("/v1/tenants/hubei.wuhan.qiaokou", json={"name_en": "x"}), 403)
    assert_problem(member.post("/v1/system:selftest"), 403)
    assert_problem(member.patch("/v1/clouds/industry", json={"name_en": "x"}), 403)


def test_nobody_grants_a_role_they_do_not_hold(api_as: Callable[..., TestClient]) -> None:
    city = api_as("tenant-admin", "hubei.wuhan")
    ok = city.post(
        "/v1/role-bindings", json={"subject": "clerk", "role": "tenant-member", "tenant": "hubei.wuhan.hanyang"}
    )
    assert ok.status_code == 201
    for role in ("operator", "approver", "auditor", "platform-admin"):
        problem = assert_problem(
            city.post("/v1/role-bindings", json={"subject": "x", "role": role, "tenant": "hubei.wuhan"}), 403
        )
        assert problem["field"] == "role"
    assert_problem(
        city.post("/v1/role-bindings", json={"subject": "x", "role": "tenant-member", "tenant": "hubei.yichang"}), 404
    )
    duplicate = city.post(
        "/v1/role-bindings", json={"subject": "clerk", "role": "tenant-member", "tenant": "hubei.wuhan.hanyang"}
    )
    assert_problem(duplicate, 409)
    member = api_as("tenant-member", "hubei.wuhan")
    assert_problem(
        member.post("/v1/role-bindings", json={"subject": "y", "role": "tenant-member", "tenant": "hubei.wuhan"}), 403
    )


def test_binding_takes_effect_and_revocation_removes_it(client: TestClient, api_as: Callable[..., TestClient]) -> None:
    user = api_as("tenant-member", "hubei.xiantao")
    assert_problem(user.get("/v1/tenants/hubei.tianmen"), 404)
    binding = client.post(
        "/v1/role-bindings",
        json={
            "subject": user.subject,
            "role": "tenant-member",  # type: ignore[attr-defined]
            "tenant": "hubei.tianmen",
        },
    ).json()
    assert user.get("/v1/tenants/hubei.tianmen").status_code == 200
    assert client.delete(f"/v1/role-bindings/{binding['id']}").status_code == 204
    assert_problem(user.get("/v1/tenants/hubei.tianmen"), 404)


def test_bindings_on_a_suspended_tenant_confer_nothing(client: TestClient, api_as: Callable[..., TestClient]) -> None:
    user = api_as("tenant-admin", "hubei.suizhou")
    assert user.get("/v1/tenants/hubei.suizhou").status_code == 200
    assert client.post("/v1/tenants/hubei.suizhou:suspend", json={"reason": "audit"}).status_code == 200
    assert_problem(user.get("/v1/tenants/hubei.suizhou"), 404)
