"""The tenant tree through the API, as an operator uses it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.controlplane.helpers import assert_problem, credit_code, new_tenant

CITIES = {
    "wuhan",
    "huangshi",
    "shiyan",
    "yichang",
    "xiangyang",
    "ezhou",
    "jingmen",
    "xiaogan",
    "jingzhou",
    "huanggang",
    "xianning",
    "suizhou",
    "enshi",
    "xiantao",
    "qianjiang",
    "tianmen",
    "shennongjia",
}


def all_pages(client: TestClient, url: str) -> list[dict]:
    items: list[dict] = []
    next_url: str | None = url
    while next_url:
        response = client.get(next_url)
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        next_url = response.json()["next"]
    return items


def test_seeded_tree_lists_province_departments_and_all_17_divisions(client: TestClient) -> None:
    items = all_pages(client, "/v1/tenants?limit=7")
    paths = [t["path"] for t in items]
    assert len(paths) == len(set(paths)), "pagination returned a tenant twice"
    assert paths == sorted(paths)
    by_path = {t["path"]: t for t in items}
    assert by_path["hubei"]["name_zh"] == "湖北省" and by_path["hubei"]["kind"] == "province"
    cities = {t["code"] for t in items if t["kind"] == "city"}
    assert cities == CITIES
    departments = {t["name_zh"] for t in items if t["kind"] == "department"}
    assert {
        "省发展改革委",
        "省经信委",
        "省网信办",
        "省公安厅",
        "省卫生计生委",
        "省教育厅",
        "省农业厅",
        "省环保厅",
        "省旅游委",
        "省扶贫办",
        "省科技厅",
        "省商务厅",
    } <= departments
    assert sum(1 for p in paths if p.startswith("hubei.wuhan.")) == 13
    assert sum(1 for p in paths if p.startswith("hubei.yichang.")) == 13


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("kind=city", 17),
        ("parent=hubei.wuhan", 13),
        ("subtree=hubei.yichang", 14),  # the city itself and its 13 counties/districts
        ("subtree=hubei.yichang&kind=county", 8),
        ("q=武汉", 1),
        ("q=district&parent=hubei.yichang", 5),
        ("code=xiling", 1),
    ],
)
def test_filters(client: TestClient, query: str, expected: int) -> None:
    assert len(all_pages(client, f"/v1/tenants?{query}&limit=5")) == expected


def test_ancestors_root_first(client: TestClient) -> None:
    response = client.get("/v1/tenants/hubei.wuhan.jiangan/ancestors")
    assert [t["path"] for t in response.json()] == ["hubei", "hubei.wuhan"]


def test_create_inherits_zone_and_ceiling_and_reads_back(client: TestClient) -> None:
    response = client.post("/v1/tenants", json=new_tenant(parent="hubei.wuhan.jiangan", code="edu-bureau", kind="unit"))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["path"] == "hubei.wuhan.jiangan.edu-bureau" and created["depth"] == 3
    fetched = client.get("/v1/tenants/hubei.wuhan.jiangan.edu-bureau").json()
    assert fetched["mlps_ceiling"] == client.get("/v1/tenants/hubei.wuhan.jiangan").json()["mlps_ceiling"]
    assert fetched["network_zone"] == "egov-extranet"


def test_wrong_credit_code_check_digit_is_422_naming_the_field(client: TestClient) -> None:
    body = new_tenant()
    good = body["credit_code"]
    body["credit_code"] = good[:17] + ("0" if good[17] != "0" else "1")
    problem = assert_problem(client.post("/v1/tenants", json=body), 422, "validation-failed")
    assert problem["field"] == "credit_code"
    assert "check character" in problem["detail"]
    assert client.get("/v1/tenants/hubei.wuhan.newunit").status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"code": "Bad_Code"}, "code"),
        ({"code": "x" * 21}, "code"),
        ({"kind": "galaxy"}, "kind"),
        ({"mlps_ceiling": 5}, "mlps_ceiling"),
        ({"network_zone": "dmz"}, "network_zone"),
        ({"dr_link_mbps": -1}, "dr_link_mbps"),
        ({"surprise": 1}, "surprise"),
        ({"parent": "../etc"}, "parent"),
    ],
)
def test_bad_input_is_422_naming_the_field(client: TestClient, change: dict, field: str) -> None:
    problem = assert_problem(client.post("/v1/tenants", json={**new_tenant(), **change}), 422)
    assert problem["field"] == field


def test_malformed_json_is_problem_json(client: TestClient) -> None:
    response = client.post("/v1/tenants", content=b"{not json", headers={"content-type": "application/json"})
    assert_problem(response, 422)


def test_duplicate_code_among_siblings_and_duplicate_credit_code_are_409(client: TestClient) -> None:
    first = new_tenant(code="dup")
    assert client.post("/v1/tenants", json=first).status_code == 201
    assert assert_problem(client.post("/v1/tenants", json=new_tenant(code="dup")), 409)["field"] == "code"
    same_credit = {**new_tenant(code="other"), "credit_code": first["credit_code"]}
    assert assert_problem(client.post("/v1/tenants", json=same_credit), 409)["field"] == "credit_code"
    # the same code under another parent is fine: codes are unique among siblings only
    assert client.post("/v1/tenants", json=new_tenant(parent="hubei.yichang", code="dup")).status_code == 201


@pytest.mark.parametrize(
    ("parent", "kind"),
    [("hubei", "county"), ("hubei.wuhan", "city"), ("hubei.wuhan", "department"), ("hubei.fgw", "district")],
)
def test_kind_must_fit_under_parent(client: TestClient, parent: str, kind: str) -> None:
    problem = assert_problem(client.post("/v1/tenants", json=new_tenant(parent=parent, kind=kind)), 422)
    assert problem["field"] == "kind"


def test_mlps_ceiling_cannot_exceed_parent(client: TestClient) -> None:
    ceiling = client.get("/v1/tenants/hubei.yichang").json()["mlps_ceiling"]
    assert ceiling == 3
    problem = assert_problem(client.post("/v1/tenants", json=new_tenant(parent="hubei.yichang", mlps_ceiling=4)), 422)
    assert problem["field"] == "mlps_ceiling"


def test_unknown_parent_is_404(client: TestClient) -> None:
    assert_problem(client.post("/v1/tenants", json=new_tenant(parent="hubei.atlantis")), 404, "not-found")


def test_rename_moves_the_whole_subtree(client: TestClient) -> None:
    assert (
        client.post(
            "/v1/tenants", json=new_tenant(parent="hubei.wuhan.hongshan", code="school", kind="unit")
        ).status_code
        == 201
    )
    assert (
        client.post(
            "/v1/tenants", json=new_tenant(parent="hubei.wuhan.hongshan.school", code="lab", kind="unit")
        ).status_code
        == 201
    )
    response = client.patch("/v1/tenants/hubei.wuhan.hongshan", json={"code": "hongshan-d"})
    assert response.status_code == 200, response.text
    assert response.json()["path"] == "hubei.wuhan.hongshan-d"
    assert client.get("/v1/tenants/hubei.wuhan.hongshan-d.school.lab").status_code == 200
    assert client.get("/v1/tenants/hubei.wuhan.hongshan.school").status_code == 404
    assert [t["path"] for t in client.get("/v1/tenants/hubei.wuhan.hongshan-d.school.lab/ancestors").json()] == [
        "hubei",
        "hubei.wuhan",
        "hubei.wuhan.hongshan-d",
        "hubei.wuhan.hongshan-d.school",
    ]


def test_update_with_stale_version_is_409_and_changes_nothing(client: TestClient) -> None:
    current = client.get("/v1/tenants/hubei.xiantao").json()
    ok = client.patch(
        "/v1/tenants/hubei.xiantao", json={"dr_link_mbps": 300}, headers={"If-Match": str(current["version"])}
    )
    assert ok.status_code == 200 and ok.json()["version"] == current["version"] + 1
    stale = client.patch(
        "/v1/tenants/hubei.xiantao", json={"dr_link_mbps": 5}, headers={"If-Match": str(current["version"])}
    )
    assert_problem(stale, 409)
    assert client.get("/v1/tenants/hubei.xiantao").json()["dr_link_mbps"] == 300


def test_lowering_ceiling_below_a_child_is_refused(client: TestClient) -> None:
    problem = assert_problem(client.patch("/v1/tenants/hubei", json={"mlps_ceiling": 2}), 422)
    assert problem["field"] == "mlps_ceiling"


def test_suspend_reactivate_retire(client: TestClient) -> None:
    suspended = client.post("/v1/tenants/hubei.wuhan.hannan:suspend", json={"reason": "audit finding"})
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    assert suspended.json()["status_reason"] == "audit finding"
    # nothing new may be created under a suspended tenant
    assert_problem(client.post("/v1/tenants", json=new_tenant(parent="hubei.wuhan.hannan", kind="unit")), 409)
    problem = assert_problem(
        client.post("/v1/tenants/hubei.wuhan.hannan:suspend", json={"reason": "again"}),
        409,
        "invalid-transition",
    )
    assert problem["current_state"] == "suspended"
    assert (
        client.post("/v1/tenants/hubei.wuhan.hannan:reactivate", json={"reason": "fixed"}).json()["status"] == "active"
    )
    retired = client.post("/v1/tenants/hubei.wuhan.hannan:retire", json={"reason": "merged"})
    assert retired.json()["status"] == "retired"
    problem = assert_problem(client.post("/v1/tenants/hubei.wuhan.hannan:reactivate", json={"reason": "x"}), 409)
    assert problem["current_state"] == "retired"


def test_retire_refused_while_something_live_below(client: TestClient) -> None:
    problem = assert_problem(client.post("/v1/tenants/hubei.yichang:retire", json={"reason": "x"}), 409)
    assert problem["blocking"].startswith("hubei.yichang.")
    assert client.get("/v1/tenants/hubei.yichang").json()["status"] == "active"


def test_status_change_needs_a_reason(client: TestClient) -> None:
    assert assert_problem(client.post("/v1/tenants/hubei.ezhou:suspend", json={}), 422)["field"] == "reason"


def test_province_cannot_be_suspended(client: TestClient) -> None:
    assert_problem(client.post("/v1/tenants/hubei:suspend", json={"reason": "x"}), 422)


def test_unknown_route_and_bad_cursor_are_problem_json(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404)
    assert_problem(client.get("/v1/tenants?cursor=bm90LWEtY3Vyc29y"), 422)
    assert_problem(client.delete("/v1/tenants"), 405)


def test_credit_code_is_normalised_to_upper_case(client: TestClient) -> None:
    code = credit_code()
    response = client.post("/v1/tenants", json={**new_tenant(code="lower"), "credit_code": code.lower()})
    # lower-case letters are outside the alphabet only until normalised
    assert response.status_code == 201, response.text
    assert response.json()["credit_code"] == code
