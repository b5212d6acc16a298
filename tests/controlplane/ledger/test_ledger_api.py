"""The quota API as operators and tenant-admins use it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from controlplane.ledger import service, usage
from tests.controlplane.helpers import assert_problem
from tests.controlplane.ledger.helpers import CITY, COUNTY, SIBLING, allocate, city_and_counties, key, run

NODE = "/v1/quota-nodes/wuhan/egov/"
ApiAs = Callable[..., TestClient]


def test_a_node_is_shown_with_the_chain_above_it(engine: Engine, client: TestClient) -> None:
    city_and_counties(engine, city_vcpus=100, county_vcpus=40)
    run(engine, lambda uow: service.reserve(uow, "request:a", key(COUNTY), {"vcpus": 15}))
    body = client.get(NODE + COUNTY).json()
    assert body["node"]["node"] == "hubei.wuhan.jiangan/egov/wuhan"
    assert body["node"]["reserved"] == {"vcpus": 15} and body["node"]["headroom"] == {"vcpus": 25}
    assert [n["node"] for n in body["chain"]] == ["hubei.wuhan/egov/wuhan", "hubei/egov/wuhan", "wuhan"]
    assert body["chain"][0]["consumption"] == {"vcpus": 15} and body["chain"][0]["headroom"] == {"vcpus": 85}
    assert body["chain"][2]["limits"]["vcpus"] == 80000


def test_a_county_sees_only_the_headroom_of_the_nodes_above_it(engine: Engine, api_as: ApiAs) -> None:
    city_and_counties(engine, city_vcpus=100)
    county = api_as("tenant-member", COUNTY)
    chain = county.get(NODE + COUNTY).json()["chain"]
    assert [n["visible"] for n in chain] == [False, False, False]
    assert chain[0]["headroom"] == {"vcpus": 100} and chain[0]["consumption"] is None
    assert_problem(county.get(NODE + SIBLING), 404)


def test_setting_limits_with_force_and_over_limit(engine: Engine, client: TestClient) -> None:
    city_and_counties(engine, city_vcpus=100)
    run(engine, lambda uow: service.reserve(uow, "request:a", key(COUNTY), {"vcpus": 60}))
    refused = assert_problem(client.put(NODE + CITY + "/limits", json={"limits": {"vcpus": 50}}), 409)
    assert refused["type"].endswith("limit-below-consumption") and refused["consumption"] == 60
    forced = client.put(NODE + CITY + "/limits", json={"limits": {"vcpus": 50}, "force": True})
    assert forced.status_code == 200, forced.text
    assert forced.json()["node"]["over_limit"] == ["vcpus"] and forced.json()["node"]["headroom"] == {"vcpus": 0}
    dry = client.post(NODE + SIBLING + ":dry-run", json={"delta": {"vcpus": 1}}).json()
    assert dry["fits"] is False and dry["refused"]["node"] == "hubei.wuhan/egov/wuhan"
    removed = client.put(NODE + CITY + "/limits", json={"limits": {"vcpus": None}})
    assert removed.json()["node"]["limits"] == {} and removed.json()["node"]["over_limit"] == []
    actions = [e["action"] for e in client.get("/v1/audit?tenant=hubei.wuhan&limit=500").json()["items"]]
    assert actions.count("quota.set-limit") == 2, "the refused change is not audited, the two applied ones are"


def test_a_city_admin_sets_its_counties_within_what_the_city_holds(engine: Engine, api_as: ApiAs) -> None:
    city_and_counties(engine, city_vcpus=100)
    admin = api_as("tenant-admin", CITY)
    assert admin.put(NODE + COUNTY + "/limits", json={"limits": {"vcpus": 80}}).status_code == 200
    above = assert_problem(admin.put(NODE + COUNTY + "/limits", json={"limits": {"vcpus": 101}}), 409)
    assert above["type"].endswith("limit-above-parent") and above["parent_limit"] == 100
    assert_problem(admin.put(NODE + CITY + "/limits", json={"limits": {"vcpus": 1000}}), 403)


def test_a_slice_beyond_the_city_is_refused_with_the_headroom(engine: Engine, client: TestClient) -> None:
    allocate(engine, CITY, "shared", {"vcpus": 100})
    allocate(engine, COUNTY, "slice", {"vcpus": 30})
    allocate(engine, SIBLING, "slice", {"vcpus": 50})
    body = assert_problem(client.put(NODE + COUNTY + "/limits", json={"limits": {"vcpus": 51}}), 409, "quota-exceeded")
    assert body["node"] == "hubei.wuhan/egov/wuhan" and body["headroom"] == 20 and body["requested"] == 21


def test_dry_run_answers_where_and_by_how_much(engine: Engine, client: TestClient) -> None:
    city_and_counties(engine, city_vcpus=100, county_vcpus=70)
    fits = client.post(NODE + COUNTY + ":dry-run", json={"delta": {"vcpus": 70}})
    assert fits.status_code == 200 and fits.json()["fits"] is True and fits.json()["refused"] is None
    refused = client.post(NODE + COUNTY + ":dry-run", json={"delta": {"vcpus": 75, "ram_mb": 1}}).json()
    assert refused["refused"] == {
        "node": "hubei.wuhan.jiangan/egov/wuhan",
        "resource": "vcpus",
        "requested": 75,
        "headroom": 70,
        "shortfall": 5,
    }
    missing = assert_problem(client.post(NODE + "hubei.wuhan.qiaokou:dry-run", json={"delta": {"vcpus": 1}}), 409)
    assert missing["type"].endswith("allocation-missing") and missing["node"] == "hubei.wuhan.qiaokou/egov/wuhan"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limits": {"gpus": 1}}, "limits.gpus.[key]"),
        ({"limits": {"vcpus": -1}}, "limits.vcpus"),
        ({"limits": {"vcpus": 1.5}}, "limits.vcpus"),
        ({"limits": {"vcpus": "10"}}, "limits.vcpus"),
        ({"limits": {"vcpus": True}}, "limits.vcpus"),
        ({"limits": {"vcpus": 10**13}}, "limits.vcpus"),
        ({"limits": {}}, "limits"),
        ({"limits": {"vcpus": 1}, "force": "yes"}, "force"),
        ({"limits": {"vcpus": 1}, "extra": 1}, "extra"),
        ([], "body"),
    ],
)
def test_limit_input_is_validated(engine: Engine, client: TestClient, body: object, field: str) -> None:
    city_and_counties(engine)
    problem = assert_problem(client.put(NODE + COUNTY + "/limits", json=body), 422, "validation-failed")
    assert problem["field"] == field


@pytest.mark.parametrize(
    "url",
    [
        "/v1/quota-nodes/wuhan/egov/Hubei.Wuhan",
        "/v1/quota-nodes/wu_han/egov/hubei",
        "/v1/quota-nodes/wuhan/egov/hubei..wuhan",
        "/v1/quota-nodes?cursor=not-ours",
        "/v1/quota-nodes?limit=0",
        "/v1/allocations?cursor=eyJhIjogMX0",
        "/v1/allocations/not-a-uuid",
        "/v1/quota-inconsistencies?cursor=eyJhIjogIngifQ",
    ],
)
def test_bad_paths_and_queries_are_422_never_500(client: TestClient, url: str) -> None:
    assert_problem(client.get(url), 422)


def test_unknown_nodes_are_404_or_allocation_missing(client: TestClient) -> None:
    assert_problem(client.get("/v1/quota-nodes/wuhan/egov/hubei.nosuch"), 409, "allocation-missing")
    assert_problem(client.get("/v1/quota-nodes/nowhere/egov/hubei"), 409, "allocation-missing")
    assert_problem(client.post(NODE + "hubei:dry-run", json={"delta": {"vcpus": -1}}), 422)


def test_listing_nodes_pages_and_filters(engine: Engine, client: TestClient, api_as: ApiAs) -> None:
    city_and_counties(engine)
    seen: list[str] = []
    url: str | None = "/v1/quota-nodes?region=wuhan&limit=4"
    while url:
        page = client.get(url).json()
        seen += [n["node"] for n in page["items"]]
        url = page["next"]
    assert seen[0] == "wuhan" and len(seen) == len(set(seen))
    assert {"hubei.wuhan/egov/wuhan", "hubei.wuhan.jiangan/egov/wuhan", "hubei/industry/wuhan"} <= set(seen)
    subtree = client.get("/v1/quota-nodes?subtree=hubei.wuhan&cloud=egov").json()["items"]
    assert [n["node"] for n in subtree] == [
        "hubei.wuhan/egov/wuhan",
        "hubei.wuhan.jiangan/egov/wuhan",
        "hubei.wuhan.jianghan/egov/wuhan",
    ]
    county = api_as("tenant-admin", COUNTY).get("/v1/quota-nodes").json()["items"]
    assert [n["node"] for n in county] == ["hubei.wuhan.jiangan/egov/wuhan"], "no region or sibling nodes"


def test_allocations_are_listed_and_read(engine: Engine, client: TestClient, api_as: ApiAs) -> None:
    city_and_counties(engine)
    items = client.get("/v1/allocations?subtree=hubei.wuhan&limit=2").json()
    assert [a["tenant"] for a in items["items"]] == [CITY, COUNTY] and items["next"]
    rest = client.get(items["next"]).json()["items"]
    assert [a["tenant"] for a in rest] == [SIBLING]
    one = client.get(f"/v1/allocations/{rest[0]['id']}").json()
    assert one["node"] == "hubei.wuhan.jianghan/egov/wuhan" and one["mode"] == "shared" and one["status"] == "active"
    assert_problem(api_as("tenant-admin", COUNTY).get(f"/v1/allocations/{rest[0]['id']}"), 404)


def test_the_inconsistency_report_shows_drift_until_resolved(engine: Engine, client: TestClient, api_as: ApiAs) -> None:
    city_and_counties(engine)
    allocation = run(engine, lambda uow: service.read_chain(uow, key(COUNTY))).leaf.allocation_id
    assert allocation is not None
    run(engine, lambda uow: usage.report_usage(uow, allocation, {"vcpus": 2}, "openstack"))
    report = client.get("/v1/quota-inconsistencies").json()
    assert report["ledger"]["problems"] == [] and report["ledger"]["nodes_checked"] > 20
    [drift] = report["items"]
    assert drift["node"] == "hubei.wuhan.jiangan/egov/wuhan" and drift["drift"] == {"vcpus": 2}
    assert_problem(api_as("tenant-member", CITY).get("/v1/quota-inconsistencies"), 403)
    auditor = api_as("auditor", CITY).get("/v1/quota-inconsistencies").json()
    assert [d["id"] for d in auditor["items"]] == [drift["id"]] and auditor["ledger"] is None
    resolved = client.post(
        f"/v1/quota-inconsistencies/{drift['id']}:resolve", json={"resolution": "apply", "reason": "measured"}
    )
    assert resolved.status_code == 200 and resolved.json()["status"] == "applied"
    assert client.get(NODE + COUNTY).json()["node"]["used"] == {"vcpus": 2}
    assert client.get("/v1/quota-inconsistencies").json()["items"] == []
    again = client.post(
        f"/v1/quota-inconsistencies/{drift['id']}:resolve", json={"resolution": "dismiss", "reason": "twice"}
    )
    assert_problem(again, 409)
