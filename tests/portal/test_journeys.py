"""The issue's journeys through the portal's HTML (no browser): forms, decisions and their
API and database side effects. The same journeys run in Chromium in test_browser.py."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.controlplane.ledger.helpers import allocate, node
from tests.controlplane.requests.conftest import CITY, CLOUD, COUNTY, REGION, SIBLING
from tests.portal.conftest import PortalUser, PortalWorld, vm_form

REQUEST_URL = re.compile(r"^/requests/([0-9a-f-]{36})$")


def created_id(response: object) -> str:
    location = response.headers["location"]  # type: ignore[attr-defined]
    found = REQUEST_URL.match(location)
    assert found, location
    return found.group(1)


def api(user: PortalUser, client: TestClient) -> TestClient:
    client.headers["Authorization"] = f"Bearer {user.token}"
    return client


def test_over_quota_is_refused_inline_naming_the_level_then_draft_then_submit(
    portal_world: PortalWorld, engine: Engine, anon: TestClient
) -> None:
    w = portal_world
    over = w.clerk.post("/requests/new/vm", {**vm_form(count=5, flavor="c4.large"), "action": "draft"})
    assert over.status_code == 409
    assert 'id="refusal"' in over.text and "超出区层级（江岸区）的配额" in over.text and "vCPU" in over.text
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM requests")).scalar() == 0, "a refusal makes nothing"
        assert conn.execute(text("SELECT count(*) FROM information_systems")).scalar() == 0

    draft = w.clerk.post("/requests/new/vm", {**vm_form(count=2), "action": "draft"})
    assert draft.status_code == 303, draft.text
    request_id = created_id(draft)
    assert "待我审批" in w.county_admin.get("/requests?tab=inbox").text
    assert request_id not in w.county_admin.get("/requests?tab=inbox").text, "no approver sees a draft"
    assert node(engine, COUNTY, CLOUD, REGION)["reserved"].get("vcpus", 0) == 0

    submitted = w.clerk.post(f"/requests/{request_id}/submit", page=f"/requests/{request_id}")
    assert submitted.status_code == 303
    detail = w.clerk.get(f"/requests/{request_id}").text
    assert "第 1 步，共 2 步" in detail
    assert 'id="decide"' not in detail, "the requester may not decide"
    state = api(w.clerk, anon).get(f"/v1/requests/{request_id}").json()
    assert state["state"] == "pending_approval" and node(engine, COUNTY, CLOUD, REGION)["reserved"]["vcpus"] == 4


def conditional_vm(w: PortalWorld) -> str:
    form = vm_form(**{"decl.sharing": "conditional", "decl.owner": CITY})
    created = w.clerk.post("/requests/new/vm", {**form, "action": "submit"})
    assert created.status_code == 303, created.text
    return created_id(created)


def test_three_approvers_in_turn_and_the_timeline_matches_the_api(
    portal_world: PortalWorld, anon: TestClient, engine: Engine
) -> None:
    w = portal_world
    rid = conditional_vm(w)
    order = [w.county_admin, w.lead_approver, w.owner_approver]
    for i, approver in enumerate(order):
        for other in order[i + 1 :]:
            assert 'id="decide"' not in other.get(f"/requests/{rid}").text, "not their turn yet"
        page = approver.get(f"/requests/{rid}")
        assert page.status_code == 200 and 'id="decide"' in page.text
        assert "有条件共享" in page.text and "HB-EDU-0001" in page.text, "the declaration is part of the decision"
        decided = approver.post(f"/requests/{rid}/approve", {"version": "x"}, page=f"/requests/{rid}")
        assert decided.status_code == 303, decided.text
    timeline = w.clerk.get(f"/requests/{rid}").text
    for approver in order:
        assert approver.subject in timeline
    public = api(w.clerk, anon).get(f"/v1/requests/{rid}").json()
    assert public["state"] == "provisioning"
    assert [s["actor"] for s in public["steps"]] == [u.subject for u in order]
    with engine.connect() as conn:
        actors = {r[0] for r in conn.execute(text("SELECT actor FROM audit_events WHERE action = 'request.approved'"))}
    assert actors == {w.owner_approver.subject}


def test_reject_needs_a_reason_then_edit_and_resubmit_keeps_earlier_rounds(portal_world: PortalWorld) -> None:
    w = portal_world
    rid = conditional_vm(w)
    refused = w.county_admin.post(f"/requests/{rid}/reject", {"reason": ""}, page=f"/requests/{rid}")
    assert refused.status_code == 422 and "驳回或退回必须填写理由" in refused.text
    returned = w.county_admin.post(f"/requests/{rid}/return", {"reason": "请改用 c1.small"}, page=f"/requests/{rid}")
    assert returned.status_code == 303
    edit = w.clerk.get(f"/requests/{rid}/edit")
    assert edit.status_code == 200
    form = {
        "spec.flavor": "c1.small",
        "spec.image": "kylin-v10",
        "spec.count": "2",
        "decl.name": "学籍数据",
        "decl.sharing": "conditional",
        "decl.catalogue_ref": "HB-EDU-0001",
        "decl.owner": CITY,
        "action": "submit",
    }
    resubmitted = w.clerk.post(f"/requests/{rid}/edit", form, page=f"/requests/{rid}/edit")
    assert resubmitted.status_code == 303, resubmitted.text
    page = w.clerk.get(f"/requests/{rid}").text
    assert "第 1 轮" in page and "第 2 轮" in page and "请改用 c1.small" in page


def test_a_decision_made_by_someone_else_is_409_and_changes_nothing(
    portal_world: PortalWorld, portal_as: object, engine: Engine
) -> None:
    w = portal_world
    rid = conditional_vm(w)
    second_admin = portal_as("tenant-admin", COUNTY)  # type: ignore[operator]
    shown = second_admin.get(f"/requests/{rid}").text
    version = re.search(r'name="version" value="(\d+)"', shown).group(1)  # type: ignore[union-attr]
    first = w.county_admin.post(f"/requests/{rid}/approve", {"version": version}, page=f"/requests/{rid}")
    assert first.status_code == 303
    with engine.connect() as conn:
        before = conn.execute(text("SELECT state, version FROM requests")).all()
    late = second_admin.post(f"/requests/{rid}/reject", {"reason": "太晚了", "version": version}, page="/")
    assert late.status_code == 409 and "已被他人处理" in late.text
    with engine.connect() as conn:
        assert conn.execute(text("SELECT state, version FROM requests")).all() == before


def test_forced_failure_shows_the_error_and_only_operators_retry(
    portal_world: PortalWorld, engine: Engine, anon: TestClient
) -> None:
    w = portal_world
    rid = conditional_vm(w)
    for approver in (w.county_admin, w.lead_approver, w.owner_approver):
        approver.post(f"/requests/{rid}/approve", page=f"/requests/{rid}")
    polling = w.clerk.get(f"/requests/{rid}/progress").text
    assert 'hx-trigger="every 1s"' in polling, "provisioning: the fragment polls itself"
    with engine.begin() as conn:  # the worker gave up: an operator must act
        conn.execute(text("UPDATE operations SET state = 'errored', last_error = 'nova: no valid host'"))
        conn.execute(text("UPDATE requests SET state = 'errored'"))
    fragment = w.clerk.get(f"/requests/{rid}/progress").text
    assert "hx-trigger" not in fragment, "polling stops at a state nothing changes by itself"
    assert "nova: no valid host" in fragment and "/retry" not in fragment
    assert w.clerk.post(f"/requests/{rid}/retry", page=f"/requests/{rid}").status_code == 403
    operator_page = w.operator.get(f"/requests/{rid}").text
    assert f'action="/requests/{rid}/retry"' in operator_page
    assert w.operator.post(f"/requests/{rid}/retry", page=f"/requests/{rid}").status_code == 303
    assert api(w.operator, anon).get(f"/v1/requests/{rid}").json()["state"] == "provisioning"


def test_city_admin_gives_a_county_a_slice_within_headroom_and_is_refused_beyond(
    portal_world: PortalWorld, engine: Engine
) -> None:
    w = portal_world
    form = {"tenant": SIBLING, "cloud": CLOUD, "region": REGION, "resource": "vcpus"}
    ok = w.city_admin.post("/quotas/limits", {**form, "limit": "10"}, page="/quotas")
    assert ok.status_code == 200 and 'id="limit-ok"' in ok.text
    assert node(engine, SIBLING, CLOUD, REGION)["limits"]["vcpus"] == 10
    beyond = w.city_admin.post("/quotas/limits", {**form, "limit": "41"}, page="/quotas")
    assert beyond.status_code == 409 and 'id="limit-error"' in beyond.text and CITY in beyond.text
    assert node(engine, SIBLING, CLOUD, REGION)["limits"]["vcpus"] == 10
    assert w.clerk.post("/quotas/limits", {**form, "limit": "1"}, page="/quotas").status_code == 404, "not in scope"
    own = w.clerk.post("/quotas/limits", {**form, "tenant": COUNTY, "limit": "1"}, page="/quotas")
    assert own.status_code == 403, "a member may not set its own limits"


def test_backup_enrolment_offers_only_the_rpos_its_mlps_level_allows(portal_world: PortalWorld, engine: Engine) -> None:
    w = portal_world
    allocate(engine, CITY, "shared", {"backup_gb": 1000}, cloud="egov", region="yichang")  # the DR site's chain
    level2 = w.city_admin.get(f"/requests/new/backup-enrolment?cloud=egov&tenant={CITY}").text
    level3 = w.city_admin.get(f"/requests/new/backup-enrolment?cloud=egov&tenant={CITY}&new_system.mlps_level=3").text
    rpos = re.compile(r'<option value="(\d+)"[^>]*>\d+ 小时')
    assert rpos.findall(level2) == ["3600", "14400", "43200", "86400"]
    del level3  # the query string does not carry the level; the POST below does
    form = {
        "tenant": CITY,
        "cloud": "egov",
        "region": REGION,
        "new_system.name": "egov-db",
        "new_system.mlps_level": "3",
        "new_system.filing_ref": "42010013001-23001",
        "spec.name": "egov-db",
        "spec.paths": "/var/lib/pgsql",
        "spec.target_region": "yichang",
        "spec.rpo_target_s": "86400",
        "spec.size_gb": "50",
        "decl.name": "政务数据",
        "decl.sharing": "unconditional",
        "decl.catalogue_ref": "HB-1",
        "action": "check",
    }
    checked = w.city_admin.post("/requests/new/backup-enrolment", form)
    assert rpos.findall(checked.text) == ["3600", "14400"], "a level-3 system: 4 h at most"
    slack = w.city_admin.post("/requests/new/backup-enrolment", {**form, "action": "submit"})
    assert slack.status_code == 422 and "rpo_target_s" in slack.text, "the submit gate refuses a slack RPO"
    tight_form = {**form, "spec.rpo_target_s": "3600", "action": "draft"}
    tight = w.city_admin.post("/requests/new/backup-enrolment", tight_form)
    assert tight.status_code == 303, tight.text
    assert "egov-db" in w.city_admin.get("/backups").text


def test_a_conditional_bucket_needs_its_declaration_fields(portal_world: PortalWorld, engine: Engine) -> None:
    w = portal_world
    form = {
        "tenant": COUNTY,
        "cloud": "egov",
        "region": REGION,
        "new_system.name": "files",
        "new_system.mlps_level": "2",
        "spec.size_gb": "5",
        "decl.name": "证照数据",
        "decl.sharing": "conditional",
        "action": "submit",
    }
    refused = w.clerk.post("/requests/new/bucket", form)
    assert refused.status_code == 422
    assert 'id="e-f-decl-catalogue_ref"' in refused.text and 'id="e-f-decl-owner"' in refused.text
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM requests")).scalar() == 0


def test_the_english_switch_is_remembered_and_translates_the_pages(portal_world: PortalWorld) -> None:
    w = portal_world
    rid = conditional_vm(w)
    switched = w.county_admin.get("/lang/en?next=/requests", follow_redirects=False)
    assert switched.status_code == 303 and switched.headers["location"] == "/requests"
    pages = ["/", "/requests/new/vm", "/requests?tab=inbox", f"/requests/{rid}", "/catalogue", "/quotas", "/backups"]
    pages += ["/requests/new/backup-enrolment", "/requests/new/quota-change", "/ops", "/audit", "/requests/x"]
    for url in pages:
        html = w.county_admin.get(url).text
        visible = re.sub(r"<[^>]+>", " ", html)
        chinese = set(re.findall(r"[\u4e00-\u9fff]+", visible)) - {"中文", "学籍数据", "江岸区"}
        chinese -= {"教育云", "武汉市", "省教育厅", "楚天云"}  # names the site file gives in both languages
        assert not chinese, f"{url} still shows {chinese} in English"
    assert "Waiting for me" in w.county_admin.get("/requests?tab=inbox").text
