"""Log-in, session cookie and CSRF; every page's title and heading; bounded queries per page;
the zh_CN catalogue covers every message."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.portal.conftest import CLOUD, COUNTY, PortalUser, PortalWorld, vm_form

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "controlplane" / "portal" / "locale" / "zh_CN" / "LC_MESSAGES"


def test_anonymous_pages_go_to_login_and_a_bad_token_is_refused(anon: TestClient) -> None:
    for url in ("/", "/requests", "/ops", "/requests/00000000-0000-0000-0000-000000000000"):
        response = anon.get(url, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), url
    page = anon.get("/login")
    assert page.status_code == 200 and "<h1>登录楚天云门户</h1>" in page.text
    bad = anon.post("/login", data={"token": "ctk_nope_nope"}, follow_redirects=False)
    assert bad.status_code == 401 and "令牌无效" in bad.text
    assert "chutian_session" not in bad.headers.get("set-cookie", "")
    evil = anon.get("/lang/en?next=//evil.example/x", follow_redirects=False)
    assert evil.headers["location"] == "/", "no open redirect"


def test_the_session_cookie_is_httponly_lax_and_holds_no_token_in_clear(
    app: FastAPI, portal_as: Callable[..., PortalUser]
) -> None:
    user = portal_as("tenant-member", "hubei.wuhan.jiangan")
    fresh = TestClient(app)
    response = fresh.post("/login", data={"token": user.token, "next": "/requests"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/requests"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    secret_part = user.token.split("_")[-1]
    assert user.token not in cookie and secret_part not in cookie
    tampered = TestClient(app)
    tampered.cookies.set("chutian_session", fresh.cookies["chutian_session"][:-4] + "AAAA")
    assert tampered.get("/", follow_redirects=False).status_code == 303, "a tampered cookie is no session"


def test_a_post_without_the_csrf_token_changes_nothing(portal_world: PortalWorld, engine: Engine) -> None:
    clerk = portal_world.clerk
    forged = clerk.client.post("/requests/new/vm", data={**vm_form(), "action": "draft"}, follow_redirects=False)
    assert forged.status_code == 403 and "表单已过期" in forged.text
    wrong = clerk.client.post("/requests/new/vm", data={**vm_form(), "action": "draft", "csrf": "x" * 32})
    assert wrong.status_code == 403
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM requests").scalar() == 0


def test_logout_ends_the_session(portal_world: PortalWorld) -> None:
    clerk = portal_world.clerk
    assert clerk.post("/logout").status_code == 303
    assert clerk.get("/", follow_redirects=False).status_code == 303


def page_urls(rid: str) -> list[str]:
    return [
        "/",
        "/catalogue",
        "/requests",
        "/requests?tab=inbox",
        "/requests/new/vm",
        "/requests/new/backup-enrolment",
        f"/requests/{rid}",
        f"/requests/{rid}/edit",
        "/quotas",
        "/backups",
        "/ops",
        "/audit",
    ]


def test_every_page_has_a_unique_title_one_h1_and_labels_on_every_control(
    portal_world: PortalWorld, portal_as: Callable[..., PortalUser]
) -> None:
    w = portal_world
    created = w.clerk.post("/requests/new/vm", {**vm_form(), "action": "draft"})
    rid = created.headers["location"].rsplit("/", 1)[1]
    admin = portal_as("platform-admin", "hubei")
    titles: dict[str, str] = {}
    for url in page_urls(rid):
        html = admin.get(url).text
        title = re.search(r"<title>(.*?)</title>", html, re.S)
        assert title, url
        assert len(re.findall(r"<h1[ >]", html)) == 1, f"{url}: one h1"
        titles[url] = title.group(1)
        ids = set(re.findall(r'<label for="([^"]+)"', html))
        for control in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
            if 'type="hidden"' in control:
                continue
            found = re.search(r'id="([^"]+)"', control)
            assert found and found.group(1) in ids, f"{url}: a control without a label: {control}"
    assert len(set(titles.values())) == len(titles), titles


@contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_pages_run_a_bounded_number_of_queries(
    portal_world: PortalWorld, engine: Engine, portal_as: Callable[..., PortalUser]
) -> None:
    """The same page with 2 and with 12 requests costs the same number of queries."""
    w = portal_world
    admin = portal_as("platform-admin", "hubei")

    def make(n: int) -> str:
        rid = ""
        for _ in range(n):
            created = w.clerk.post("/requests/new/vm", {**vm_form(count=1, flavor="c1.small"), "action": "submit"})
            rid = created.headers["location"].rsplit("/", 1)[1]
        return rid

    def cost(url: str, user: PortalUser) -> int:
        with counted(engine) as statements:
            assert user.get(url).status_code == 200
        return len(statements)

    def options_cost() -> int:  # the htmx fragment a form asks for when the region changes
        csrf = w.clerk.csrf("/requests/new/vm")
        with counted(engine) as statements:
            fragment = w.clerk.client.post(
                "/requests/new/vm/options", data={**vm_form(), "csrf": csrf}, headers={"HX-Trigger-Name": "region"}
            )
            assert fragment.status_code == 200 and 'id="opt-quota"' in fragment.text
        return len(statements)

    def costs() -> dict[str, int]:
        found = {url: cost(url, admin) for url in urls}
        found |= {url: cost(url, w.clerk) for url in ("/requests/new/vm", "/requests/new/backup-enrolment")}
        return found | {"inbox": cost("/requests?tab=inbox", w.county_admin), "options": options_cost()}

    rid = make(2)
    urls = ["/", "/requests?tab=all", "/requests?tab=inbox", "/quotas", "/backups", "/ops", f"/requests/{rid}"]
    urls += [f"/requests/{rid}/edit", "/catalogue", "/audit"]
    small = costs()
    make(10)  # ten more requests, each with its own new information system
    large = costs()
    assert large == small, f"queries grew with the data: {small} -> {large}"
    assert max(large.values()) <= 25, large


def test_the_zh_catalogue_translates_every_message_and_is_compiled(tmp_path: Path) -> None:
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from babel.messages.frontend import main; main()",
            "-q",
            "extract",
            "-F",
            "controlplane/portal/babel.cfg",
            "-k",
            "N_",
            "-o",
            str(pot),
            ".",
        ],
        cwd=ROOT,
        check=True,
    )
    with pot.open("rb") as handle:
        wanted = {m.id for m in read_po(handle) if m.id}
    with (LOCALE / "messages.po").open("rb") as handle:
        po = {m.id: m.string for m in read_po(handle) if m.id}
    with (LOCALE / "messages.mo").open("rb") as handle:
        mo = {m.id: m.string for m in read_mo(handle) if m.id}
    untranslated = sorted(str(m) for m in wanted if not po.get(m))
    assert not untranslated, f"run scripts/portal-messages and translate: {untranslated}"
    assert mo == po, "the .mo is stale: run scripts/portal-messages"


def test_english_login_page(app: FastAPI) -> None:
    client = TestClient(app)
    client.cookies.set("chutian_lang", "en")
    assert "<h1>Log in to the Chutian Cloud portal</h1>" in client.get("/login").text


def test_serve_demo_requests_are_made_once_through_the_services(engine: Engine) -> None:
    from controlplane.portal.demo import seed_portal_demo

    assert seed_portal_demo(engine) == 2
    assert seed_portal_demo(engine) == 0, "idempotent"
    with engine.connect() as conn:
        states = sorted(conn.exec_driver_sql("SELECT state FROM requests").scalars())
    assert states == ["draft", "pending_approval"]


def test_lists_paginate_filter_and_sort_on_the_server_with_state_in_the_url(portal_world: PortalWorld) -> None:
    clerk = portal_world.clerk
    for i in range(22):
        form = {**vm_form(count=1, flavor="c1.small"), "title": f"req-{i:02d}", "action": "draft"}
        assert clerk.post("/requests/new/vm", form).status_code == 303
    first = clerk.get("/requests?tab=mine&state=draft&sort=oldest").text
    titles = re.findall(r">(req-\d\d)</a>", first)
    assert titles == [f"req-{i:02d}" for i in range(20)], "20 a page, oldest first"
    assert "共 22 条申请" in first and "第 1 页，共 2 页" in first
    nxt = re.search(r'href="(/requests\?[^"]*page=2[^"]*)"', first)
    assert nxt, "a next-page link"
    link = nxt.group(1).replace("&amp;", "&")
    assert "state=draft" in link and "sort=oldest" in link and "tab=mine" in link, "filters stay in the URL"
    second = clerk.get(link).text
    assert re.findall(r">(req-\d\d)</a>", second) == ["req-20", "req-21"]
    newest = clerk.get("/requests?tab=mine&sort=newest").text
    assert re.findall(r">(req-\d\d)</a>", newest)[0] == "req-21"
    assert "共 0 条申请" in clerk.get("/requests?tab=mine&state=approved").text


def test_the_backup_badge_is_green_with_a_fresh_verified_point_and_red_once_the_rpo_is_breached(
    portal_world: PortalWorld, engine: Engine
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from controlplane.backup.models import BackupRun
    from tests.controlplane.auth.test_cross_tenant import seed_backup

    admin = portal_world.county_admin
    system = admin.client.post(
        "/v1/systems",
        json={"tenant": COUNTY, "cloud": CLOUD, "name": "payroll-dr", "mlps_level": 2},
        headers={"Authorization": f"Bearer {admin.token}"},
    )
    assert system.status_code == 201, system.text
    system_id = system.json()["id"]
    seeded = seed_backup(engine, COUNTY, system_id)  # a policy (RPO 24 h) with a run verified just now

    fresh = portal_world.county_admin.get("/backups")
    assert fresh.status_code == 200 and "b-payroll" in fresh.text
    assert 'class="badge ok"' in fresh.text and 'class="badge bad"' not in fresh.text

    with engine.begin() as conn:  # the newest verified point is now two days old
        conn.execute(
            update(BackupRun)
            .where(BackupRun.id == uuid.UUID(seeded["run"]))
            .values(snapshot_time=datetime.now(UTC) - timedelta(days=2))
        )
    breached = portal_world.county_admin.get("/backups")
    assert 'class="badge bad"' in breached.text and 'class="badge ok"' not in breached.text
    assert "b-payroll" in portal_world.clerk.get("/backups").text  # a member of the county sees it too
