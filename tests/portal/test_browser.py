"""The issue's journeys in real Chromium (Debian's, driven by Playwright) against the app
served by uvicorn on the test database; side effects checked through the API and the rows.

Never `playwright install`: scripts/test-assets installs Debian's chromium and CJK fonts.
Screenshots land in tests/portal/screenshots/ (ignored by git, kept as CI artifacts).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update
from sqlalchemy.engine import Engine

from controlplane.backup.models import BackupRun
from controlplane.db.uow import RecordingDispatcher
from controlplane.operations import engine as ops
from controlplane.requests import provisioning  # noqa: F401  (registers the request kinds' steps)
from controlplane.settings import Settings
from controlplane.site_config import Site
from controlplane.worker.runtime import WorkerContext
from tests.conftest import CREATED_SECRETS, grant_token
from tests.controlplane.auth.test_cross_tenant import seed_backup
from tests.controlplane.ledger.helpers import allocate, node
from tests.controlplane.requests.conftest import CITY, CLOUD, COUNTY, REGION, SIBLING

playwright = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, expect  # noqa: E402

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).parent / "screenshots"
AXE = Path(__file__).parent / "vendor" / "axe-core-4.10.3.min.js"
REQUEST_URL = re.compile(r"/requests/([0-9a-f-]{36})$")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: scripts/test-assets installs it")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium fonts-noto-cjk)")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    log: Path


@pytest.fixture
def server(database_url: str, tmp_path: Path, secret_keys_file: Path) -> Iterator[Server]:
    """The real app under uvicorn, on this test's database; its log is checked for secrets."""
    port = _free_port()
    env = dict(
        os.environ,
        CHUTIAN_DATABASE_URL=database_url,
        CHUTIAN_DATA_DIR=str(tmp_path / "data"),
        CHUTIAN_SECRET_KEYS_FILE=str(secret_keys_file),
        CHUTIAN_BROKER_URL="memory://",
        CHUTIAN_METRICS_PORT="0",
    )
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as sink:
        serve = ["--factory", "tests.portal.served_app:build", "--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", *serve, "--log-level", "info"],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "uvicorn did not start: " + log.read_text()
            time.sleep(0.2)
        yield Server(url, log)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    served = log.read_text(errors="replace")
    leaked = [s[:12] for s in CREATED_SECRETS if s in served]
    assert not leaked, f"tokens in the server's log: {leaked}"


@dataclass
class Actor:
    page: Page
    token: str
    subject: str

    def api(self, server: Server) -> httpx.Client:
        return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {self.token}"})


@pytest.fixture
def actor(browser: Browser, server: Server, engine: Engine) -> Iterator[Callable[..., Actor]]:
    contexts: list[Any] = []

    def make(role: str, path: str, *, subject: str | None = None, lang: str | None = None) -> Actor:
        name = subject or f"{role}-{uuid.uuid4().hex[:6]}"
        token = grant_token(engine, name, [(role, path)])
        CREATED_SECRETS.append(token)
        context = browser.new_context(base_url=server.url, locale="zh-CN", viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        if lang:
            page.goto(f"/lang/{lang}?next=/login")
        page.goto("/login")
        page.locator("#token").fill(token)
        page.locator("#token").press("Enter")
        expect(page.locator("h1")).to_have_count(1)
        assert "/login" not in page.url, page.content()
        return Actor(page=page, token=token, subject=name)

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def world(engine: Engine) -> None:
    allocate(engine, CITY, "shared", {"vcpus": 40, "ram_mb": 81920, "instances": 20}, cloud=CLOUD, region=REGION)
    allocate(engine, COUNTY, "shared", {"vcpus": 16}, cloud=CLOUD, region=REGION)
    allocate(engine, SIBLING, "shared", {}, cloud=CLOUD, region=REGION)


def fill_vm(page: Page, *, flavor: str, count: int, sharing: str = "unconditional", owner: str = "") -> None:
    page.goto(f"/requests/new/vm?cloud={CLOUD}&tenant={COUNTY}")
    page.get_by_label("新信息系统名称", exact=True).fill(f"sys-{uuid.uuid4().hex[:6]}")
    page.get_by_label("标题", exact=True).fill("教学平台云主机")
    page.get_by_label("规格", exact=True).select_option(flavor)
    page.get_by_label("镜像", exact=True).select_option("kylin-v10")
    page.get_by_label("云主机数量", exact=True).fill(str(count))
    page.get_by_label("数据资源名称", exact=True).fill("学籍数据")
    page.get_by_label("共享类型", exact=True).select_option(sharing)
    page.get_by_label("数据目录编号", exact=True).fill("HB-EDU-0001")
    if owner:
        page.get_by_label("数据所有方租户路径（有条件共享时必填）", exact=True).fill(owner)


def request_id(page: Page) -> str:
    found = REQUEST_URL.search(page.url)
    assert found, page.url
    return found.group(1)


@pytest.mark.usefixtures("world")
def test_vm_over_quota_refused_inline_then_draft_then_submit(
    actor: Callable[..., Actor], server: Server, engine: Engine
) -> None:
    clerk = actor("tenant-member", COUNTY, subject="clerk")
    admin = actor("tenant-admin", COUNTY)
    fill_vm(clerk.page, flavor="c4.large", count=5)
    clerk.page.get_by_role("button", name="检查配额").click()
    expect(clerk.page.locator("#refusal")).to_contain_text("超出区层级（江岸区）的配额")
    expect(clerk.page.locator("#refusal")).to_contain_text("vCPU")
    clerk.page.get_by_label("规格", exact=True).select_option("c2.medium")
    clerk.page.get_by_label("云主机数量", exact=True).fill("2")
    clerk.page.get_by_role("button", name="保存草稿").click()
    expect(clerk.page.locator("h1")).to_contain_text("草稿")
    rid = request_id(clerk.page)
    admin.page.goto("/requests?tab=inbox")
    expect(admin.page.locator("main")).not_to_contain_text("教学平台云主机")
    clerk.page.get_by_role("button", name="提交审批").click()
    expect(clerk.page.locator("#step-of")).to_have_text("第 1 步，共 2 步")
    assert clerk.api(server).get(f"/v1/requests/{rid}").json()["state"] == "pending_approval"
    assert node(engine, COUNTY, CLOUD, REGION)["reserved"]["vcpus"] == 4


def submitted_conditional(clerk: Actor) -> str:
    fill_vm(clerk.page, flavor="c2.medium", count=2, sharing="conditional", owner=CITY)
    clerk.page.get_by_role("button", name="提交审批").click()
    expect(clerk.page.locator("#step-of")).to_have_text("第 1 步，共 3 步")
    return request_id(clerk.page)


@pytest.fixture
def approvers(actor: Callable[..., Actor]) -> list[Actor]:
    return [
        actor("tenant-admin", COUNTY, subject="county-admin"),
        actor("approver", "hubei.jyt", subject="jyt-approver"),
        actor("approver", CITY, subject="wuhan-data-owner"),
    ]


@pytest.mark.usefixtures("world")
def test_three_approvers_decide_in_turn_and_progress_advances_without_reload(
    actor: Callable[..., Actor],
    approvers: list[Actor],
    server: Server,
    engine: Engine,
    settings: Settings,
    site: Site,
) -> None:
    clerk = actor("tenant-member", COUNTY, subject="clerk")
    rid = submitted_conditional(clerk)
    for i, approver in enumerate(approvers):
        approver.page.goto("/requests?tab=inbox")
        approver.page.get_by_role("link", name="教学平台云主机").click()
        expect(approver.page.locator("details").first).to_contain_text("有条件共享")
        approver.page.get_by_role("button", name="批准").click()
        expect(approver.page.locator("#decide")).to_have_count(0)
        if i + 1 < len(approvers):
            expect(approver.page.locator("#step-of")).to_have_text(f"第 {i + 2} 步，共 3 步")
    clerk.page.goto(f"/requests/{rid}")
    for approver in approvers:
        expect(clerk.page.locator("main")).to_contain_text(approver.subject)
    expect(clerk.page.locator("#progress")).to_have_attribute("hx-trigger", "every 1s")
    public = clerk.api(server).get(f"/v1/requests/{rid}").json()
    assert public["state"] == "provisioning"
    assert [s["actor"] for s in public["steps"]] == [a.subject for a in approvers]
    with engine.connect() as conn:
        audited = conn.execute(text("SELECT actor FROM audit_events WHERE action = 'request.approved'")).scalars()
        assert list(audited) == ["wuhan-data-owner"]
    # the worker runs the operation while the page stays open: it updates in place
    worker = WorkerContext(settings=settings, engine=engine, site=site, dispatcher=RecordingDispatcher())
    outcome = ops.run(worker, uuid.UUID(public["operation"]))
    with engine.connect() as conn:
        error = conn.execute(text("SELECT last_error FROM operations")).scalar()
    assert outcome == "succeeded", error
    expect(clerk.page.locator("#req-state")).to_have_text("已完成", timeout=15_000)
    expect(clerk.page.locator("#progress")).not_to_have_attribute("hx-trigger", re.compile(".*"))
    assert REQUEST_URL.search(clerk.page.url), "no navigation happened"


@pytest.mark.usefixtures("world")
def test_forced_failure_shows_the_error_and_only_an_operator_may_retry(
    actor: Callable[..., Actor], approvers: list[Actor], engine: Engine, server: Server
) -> None:
    clerk = actor("tenant-member", COUNTY, subject="clerk")
    operator = actor("operator", "hubei", subject="ops")
    rid = submitted_conditional(clerk)
    for approver in approvers:
        approver.page.goto(f"/requests/{rid}")
        approver.page.get_by_role("button", name="批准").click()
        expect(approver.page.locator("#decide")).to_have_count(0)
    clerk.page.goto(f"/requests/{rid}")
    with engine.begin() as conn:  # forced: the worker gave up and parked the job for an operator
        conn.execute(text("UPDATE operations SET state = 'errored', last_error = 'nova: no valid host found'"))
        conn.execute(text("UPDATE requests SET state = 'errored'"))
    expect(clerk.page.locator("#progress")).to_contain_text("nova: no valid host found", timeout=15_000)
    expect(clerk.page.get_by_role("button", name="重试")).to_have_count(0)
    operator.page.goto("/ops")
    expect(operator.page.locator("main")).to_contain_text("nova: no valid host found")
    operator.page.get_by_role("link", name="打开（在详情页重试）").click()
    operator.page.get_by_role("button", name="重试").click()
    expect(operator.page.locator("#req-state")).to_have_text("开通中")
    assert operator.api(server).get(f"/v1/requests/{rid}").json()["state"] == "provisioning"


def option_values(page: Page, label: str) -> list[str]:
    return page.get_by_label(label, exact=True).locator("option").evaluate_all("(os) => os.map((o) => o.value)")


@pytest.mark.usefixtures("world")
def test_the_form_refreshes_its_dependent_options_in_place_when_a_choice_changes(
    actor: Callable[..., Actor], server: Server
) -> None:
    """Region, cloud, system and MLPS level changes re-render flavors, images, DR sites, RPO
    choices, systems and the remaining quota through htmx: no reload, typed text kept."""
    clerk = actor("tenant-member", COUNTY, subject="clerk")
    made = clerk.api(server).post(
        "/v1/systems", json={"tenant": COUNTY, "cloud": CLOUD, "name": "jiaowu", "mlps_level": 2}
    )
    assert made.status_code == 201, made.text
    page = clerk.page
    page.goto(f"/requests/new/vm?cloud={CLOUD}&tenant={COUNTY}")
    page.evaluate("() => { window.notReloaded = true }")
    page.get_by_label("标题", exact=True).fill("保留的标题")
    expect(page.locator("#opt-zone")).to_contain_text("政务外网")
    assert option_values(page, "数据中心") == ["wuhan", "xiangyang"]
    assert option_values(page, "规格") == ["c1.small", "c2.medium", "c4.large"]
    assert option_values(page, "镜像") == ["kylin-v10", "openeuler-22.03", "uos-v20"]
    assert "jiaowu" in page.get_by_label("已有信息系统", exact=True).inner_text()
    expect(page.locator("#opt-quota table")).to_contain_text(COUNTY)

    page.get_by_label("云主机数量", exact=True).fill("3")
    page.evaluate("() => { document.getElementById('f-region').kept = true }")
    page.get_by_label("数据中心", exact=True).select_option("xiangyang")  # no allocation there
    expect(page.locator("#no-allocation")).to_contain_text(f"{COUNTY}/{CLOUD}/xiangyang 尚未分配配额")
    expect(page.locator("#opt-quota table")).to_have_count(0)
    assert page.evaluate("() => document.getElementById('f-region').kept") is True, "the changed control stays"
    page.get_by_label("数据中心", exact=True).select_option("wuhan")
    expect(page.locator("#opt-quota table")).to_contain_text(COUNTY)

    page.get_by_label("专题云", exact=True).select_option("egov")
    expect(page.get_by_label("数据中心", exact=True).locator("option")).to_have_count(3)
    assert option_values(page, "数据中心") == ["wuhan", "xiangyang", "yichang"]
    assert "c8.xlarge" in option_values(page, "规格")
    assert "jiaowu" not in page.get_by_label("已有信息系统", exact=True).inner_text(), "an education system"
    expect(page.locator("#no-allocation")).to_be_visible()
    assert page.get_by_label("标题", exact=True).input_value() == "保留的标题"
    assert page.get_by_label("云主机数量", exact=True).input_value() == "3", "a typed spec field is never swapped"
    assert page.evaluate("() => window.notReloaded") is True, "updated in place, not reloaded"

    page.goto(f"/requests/new/backup-enrolment?cloud=egov&tenant={COUNTY}")
    page.evaluate("() => { window.notReloaded = true }")
    rpo = page.get_by_label("恢复点目标（RPO）")
    expect(rpo.locator("option")).to_have_text(["1 小时", "4 小时", "12 小时", "24 小时"])
    page.get_by_label("备份名称", exact=True).fill("payroll")
    page.get_by_label("等保级别", exact=True).select_option("4")
    page.get_by_label("数据量（GB）", exact=True).fill("40")  # typed while the options are on their way
    expect(page.get_by_label("恢复点目标（RPO）").locator("option")).to_have_text(["1 小时"])
    assert page.get_by_label("备份名称", exact=True).input_value() == "payroll"
    assert page.get_by_label("数据量（GB）", exact=True).input_value() == "40"
    assert option_values(page, "灾备中心") == ["yichang"]
    page.get_by_label("数据中心", exact=True).select_option("yichang")
    expect(page.get_by_label("灾备中心", exact=True).locator("option")).to_have_count(0)
    assert page.evaluate("() => window.notReloaded") is True


@pytest.mark.usefixtures("world")
def test_rejection_needs_a_reason_then_edit_and_resubmit_keeps_rounds(
    actor: Callable[..., Actor], approvers: list[Actor]
) -> None:
    clerk = actor("tenant-member", COUNTY, subject="clerk")
    rid = submitted_conditional(clerk)
    admin = approvers[0].page
    admin.goto(f"/requests/{rid}")
    admin.get_by_role("button", name="驳回").click()
    expect(admin.locator("#verb-error")).to_contain_text("必须填写理由")
    admin.get_by_label("理由（驳回或退回时必填）").fill("请改用 c1.small 规格")
    admin.get_by_role("button", name="退回修改").click()
    expect(admin.locator("h1")).to_contain_text("已退回修改")
    clerk.page.goto(f"/requests/{rid}")
    clerk.page.get_by_role("button", name="编辑", exact=True).click()
    clerk.page.get_by_label("规格", exact=True).select_option("c1.small")
    clerk.page.get_by_role("button", name="保存并重新提交").click()
    expect(clerk.page.locator("main")).to_contain_text("第 1 轮")
    expect(clerk.page.locator("main")).to_contain_text("第 2 轮")
    expect(clerk.page.locator("main")).to_contain_text("请改用 c1.small 规格")
    expect(clerk.page.locator("#step-of")).to_have_text("第 1 步，共 3 步")


@pytest.mark.usefixtures("world")
def test_city_admin_gives_a_county_a_slice_within_headroom_only(actor: Callable[..., Actor], engine: Engine) -> None:
    city = actor("tenant-admin", CITY).page

    def give(limit: int) -> None:
        city.goto("/quotas")
        city.get_by_label("租户路径").fill(SIBLING)
        city.locator("#l-cloud").fill(CLOUD)
        city.locator("#l-region").fill(REGION)
        city.get_by_label("资源", exact=True).select_option("vcpus")
        city.get_by_label("限额", exact=True).fill(str(limit))
        city.get_by_role("button", name="设置限额").click()

    give(12)
    expect(city.locator("#limit-ok")).to_contain_text(SIBLING)
    give(41)
    expect(city.locator("#limit-error")).to_contain_text(CITY)
    assert node(engine, SIBLING, CLOUD, REGION)["limits"]["vcpus"] == 12


def test_backup_enrolment_rpo_choices_follow_the_mlps_level_and_the_badge_turns_red_on_breach(
    actor: Callable[..., Actor], engine: Engine, server: Server
) -> None:
    allocate(engine, CITY, "shared", {"backup_gb": 500}, cloud="egov", region="yichang")
    admin = actor("tenant-admin", CITY)
    page = admin.page
    page.goto(f"/requests/new/backup-enrolment?cloud=egov&tenant={CITY}")
    rpo = page.get_by_label("恢复点目标（RPO）")
    assert rpo.locator("option").all_inner_texts() == ["1 小时", "4 小时", "12 小时", "24 小时"]
    page.get_by_label("新信息系统名称").fill("egov-db")
    page.get_by_label("等保级别").select_option("3")
    page.get_by_label("等保备案号（三级、四级必填）").fill("42010013001-23001")
    page.get_by_label("备份名称").fill("egov-db")
    page.get_by_label("需保护的路径（每行一个）").fill("/var/lib/pgsql")
    page.get_by_label("数据量（GB）").fill("50")
    page.get_by_label("数据资源名称").fill("政务数据")
    page.get_by_label("共享类型").select_option("unconditional")
    page.get_by_label("数据目录编号").fill("HB-EGOV-1")
    page.get_by_role("button", name="检查配额").click()
    expect(page.get_by_label("恢复点目标（RPO）").locator("option")).to_have_text(["1 小时", "4 小时"])
    page.get_by_role("button", name="保存草稿").click()
    expect(page.locator("h1")).to_contain_text("草稿")
    page.goto("/backups")
    row = page.locator("tr", has_text="egov-db")
    expect(row).to_contain_text("未知")  # a draft enrolment: no policy, no measured RPO yet

    # Once provisioned it is a policy whose badge follows the newest verified point at the DR site.
    system = admin.api(server).post(
        "/v1/systems", json={"tenant": CITY, "cloud": "egov", "name": "payroll-dr", "mlps_level": 2}
    )
    assert system.status_code == 201, system.text
    seeded = seed_backup(engine, CITY, system.json()["id"])  # RPO 24 h, a run verified just now
    page.reload()
    expect(page.locator("tr", has_text="b-payroll").locator(".badge")).to_have_text("合规")
    with engine.begin() as conn:
        conn.execute(
            update(BackupRun)
            .where(BackupRun.id == uuid.UUID(seeded["run"]))
            .values(snapshot_time=datetime.now(UTC) - timedelta(days=2))
        )
    page.reload()
    badge = page.locator("tr", has_text="b-payroll").locator(".badge")
    expect(badge).to_have_text("RPO 超标")
    assert "bad" in (badge.get_attribute("class") or "")


@pytest.mark.usefixtures("world")
def test_a_conditional_bucket_cannot_be_submitted_without_its_declaration(
    actor: Callable[..., Actor], engine: Engine
) -> None:
    page = actor("tenant-member", COUNTY).page
    page.goto(f"/requests/new/bucket?cloud=egov&tenant={COUNTY}")
    page.get_by_label("新信息系统名称").fill("files")
    page.get_by_label("容量（GB）").fill("5")
    page.get_by_label("数据资源名称").fill("证照数据")
    page.get_by_label("共享类型").select_option("conditional")
    page.get_by_role("button", name="提交审批").click()
    expect(page.locator("#e-f-decl-catalogue_ref")).to_be_visible()
    expect(page.locator("#e-f-decl-owner")).to_be_visible()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM requests")).scalar() == 0


@pytest.mark.usefixtures("world")
def test_another_department_gets_a_localized_not_found_without_the_data(actor: Callable[..., Actor]) -> None:
    clerk = actor("tenant-member", COUNTY, subject="clerk")
    fill_vm(clerk.page, flavor="c2.medium", count=1)
    clerk.page.get_by_role("button", name="保存草稿").click()
    rid = request_id(clerk.page)
    other = actor("tenant-member", "hubei.gat").page
    response = other.goto(f"/requests/{rid}")
    assert response is not None and response.status == 404
    expect(other.locator("h1")).to_have_text("未找到")
    html = other.content()
    for secret in ("教学平台云主机", "学籍数据", COUNTY, "kylin-v10", "clerk"):
        assert secret not in html


@pytest.mark.usefixtures("world")
def test_english_switch_and_screenshots_in_both_languages(actor: Callable[..., Actor]) -> None:
    SHOTS.mkdir(exist_ok=True)
    clerk = actor("tenant-member", COUNTY, subject="clerk")
    rid = submitted_conditional(clerk)
    admin = actor("tenant-admin", COUNTY, subject="county-admin").page
    pages = {"home": "/", "form": f"/requests/new/vm?cloud={CLOUD}", "inbox": "/requests?tab=inbox"}
    for name, url in pages.items():
        admin.goto(url)
        admin.screenshot(path=str(SHOTS / f"{name}-zh.png"), full_page=True)
    admin.get_by_role("link", name="English").click()
    expect(admin.locator("html")).to_have_attribute("lang", "en")
    allowed = {"中文", "学籍数据", "江岸区", "教学平台云主机", "武汉市", "省教育厅"}
    for name, url in {**pages, "detail": f"/requests/{rid}"}.items():
        admin.goto(url)
        visible = admin.locator("body").inner_text()
        chinese = set(re.findall(r"[\u4e00-\u9fff]+", visible)) - allowed
        assert not chinese, f"{url} shows {chinese} in English"
        if name in pages:
            admin.screenshot(path=str(SHOTS / f"{name}-en.png"), full_page=True)
    admin.goto("/requests?tab=inbox")
    expect(admin.locator("h1")).to_have_text("Requests")
    expect(admin.get_by_role("link", name="Waiting for me")).to_be_visible()
    admin.goto("/")
    expect(admin.locator("h1")).to_have_text("What needs me"), "the choice is remembered"


@pytest.mark.usefixtures("world")
def test_axe_finds_no_serious_or_critical_violations_and_focus_is_visible(actor: Callable[..., Actor]) -> None:
    clerk = actor("tenant-member", COUNTY, subject="clerk")
    rid = submitted_conditional(clerk)
    admin = actor("platform-admin", "hubei").page
    problems: dict[str, Any] = {}
    pages = ["/", "/catalogue", "/requests/new/vm", "/requests?tab=all", f"/requests/{rid}", "/quotas", "/backups"]
    pages += ["/requests/new/backup-enrolment", f"/requests/{rid}/edit", "/ops", "/audit", f"/requests/{uuid.uuid4()}"]

    def scan(label: str) -> None:
        admin.add_script_tag(path=str(AXE))
        result = admin.evaluate("async () => (await axe.run(document)).violations")
        bad = [(v["id"], v["impact"], len(v["nodes"])) for v in result if v["impact"] in ("serious", "critical")]
        if bad:
            problems[label] = bad

    for url in pages:
        admin.goto(url)
        scan(url)
    admin.goto(f"/requests/new/vm?cloud={CLOUD}&tenant={COUNTY}")  # after an htmx refresh, with inline errors
    admin.get_by_label("数据中心", exact=True).select_option("xiangyang")
    expect(admin.locator("#no-allocation")).to_be_visible()
    scan("/requests/new/vm (refreshed)")
    admin.get_by_label("云主机数量", exact=True).fill("1")  # no system named: refused per field
    admin.get_by_role("button", name="保存草稿").click()
    expect(admin.locator("[aria-invalid=true]").first).to_be_visible()
    scan("/requests/new/vm (errors)")
    admin.goto("/lang/en?next=/")
    for url in ("/", "/requests/new/vm", f"/requests/{rid}"):
        admin.goto(url)
        scan(f"{url} (en)")
    assert not problems, problems
    admin.goto("/requests/new/vm")
    admin.keyboard.press("Tab")
    outline = admin.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), "the focused element shows where focus is"


FOCUS_STYLE = """() => {
  const s = getComputedStyle(document.activeElement);
  return {outline: s.outlineStyle, width: parseFloat(s.outlineWidth) || 0, shadow: s.boxShadow};
}"""


def focused_name(page: Page) -> str:
    """The focused control's accessible name as Chromium's accessibility tree computes it (CDP)."""
    page.evaluate(
        "() => { document.querySelectorAll('[data-kb-focus]').forEach((e) => e.removeAttribute('data-kb-focus'));"
        " document.activeElement.setAttribute('data-kb-focus', '') }"
    )
    cdp = page.context.new_cdp_session(page)
    try:
        root = cdp.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "[data-kb-focus]"})["nodeId"]
        tree = cdp.send("Accessibility.getPartialAXTree", {"nodeId": node, "fetchRelatives": False})
    finally:
        cdp.detach()
    name = tree["nodes"][0].get("name") or {}
    return str(name.get("value") or "").strip()


def tab_to(page: Page, name: str, *, back: bool = False, limit: int = 120) -> None:
    """Tab (or Shift+Tab) until the control named ``name`` has focus; every control passed on
    the way must have an accessible name and a visible focus indicator."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        if page.evaluate("() => document.activeElement === document.body"):
            continue
        reached = focused_name(page)
        style = page.evaluate(FOCUS_STYLE)
        where = f"{page.url}: {page.locator('*:focus').evaluate('(e) => e.outerHTML.slice(0, 160)')}"
        assert reached, f"a control without an accessible name: {where}"
        visible = (style["outline"] != "none" and style["width"] > 0) or style["shadow"] not in ("none", "")
        assert visible, f"focus is not visible on {where}: {style}"
        if reached == name:
            return
    raise AssertionError(f"Tab never reached {name!r} on {page.url}")


def keyboard_login(browser: Browser, server: Server, token: str) -> Page:
    page = browser.new_context(base_url=server.url, locale="zh-CN").new_page()
    page.goto("/login")
    tab_to(page, "API 令牌（ctk_…）")
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("待办事项")
    return page


@pytest.mark.usefixtures("world")
def test_keyboard_only_draft_submit_and_approve(browser: Browser, server: Server, engine: Engine) -> None:
    """No mouse: Tab/Shift+Tab to reach, type, arrow keys in selects, Enter and Space to act."""
    tokens = {}
    for subject, role in (("kb-clerk", "tenant-member"), ("kb-admin", "tenant-admin")):
        tokens[subject] = grant_token(engine, subject, [(role, COUNTY)])
        CREATED_SECRETS.append(tokens[subject])
    page = keyboard_login(browser, server, tokens["kb-clerk"])
    tab_to(page, "跳到正文", back=True)  # the skip link comes first and shows when focused
    tab_to(page, "服务目录")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("服务目录")
    tab_to(page, "云主机 · 教育云")  # each link names its cloud too (ten rows offer the same kinds)
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("云主机")
    assert page.get_by_label("专题云", exact=True).input_value() == CLOUD
    tab_to(page, "数据中心")
    page.keyboard.press("ArrowDown")  # wuhan → xiangyang: the options follow, focus stays put
    expect(page.locator("#no-allocation")).to_be_visible()
    expect(page.get_by_label("数据中心", exact=True)).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(page.locator("#opt-quota table")).to_contain_text(COUNTY)
    expect(page.get_by_label("数据中心", exact=True)).to_be_focused()
    tab_to(page, "新信息系统名称")
    page.keyboard.type("kb-sys")
    tab_to(page, "标题")
    page.keyboard.type("键盘申请")
    tab_to(page, "云主机数量")
    page.keyboard.press("Control+A")
    page.keyboard.type("2")
    tab_to(page, "数据资源名称")
    page.keyboard.type("学籍数据")
    tab_to(page, "共享类型")
    page.keyboard.press("ArrowDown")  # — 请选择 — → 无条件共享
    assert page.get_by_label("共享类型", exact=True).input_value() == "unconditional"
    tab_to(page, "数据目录编号")
    page.keyboard.type("HB-EDU-0001")
    tab_to(page, "保存草稿")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("草稿")
    rid = request_id(page)
    tab_to(page, "提交审批")
    page.keyboard.press("Space")
    expect(page.locator("#step-of")).to_have_text("第 1 步，共 2 步")

    approver = keyboard_login(browser, server, tokens["kb-admin"])
    tab_to(approver, "打开审批收件箱")
    approver.keyboard.press("Enter")
    expect(approver.locator("h1")).to_have_text("申请")
    tab_to(approver, "键盘申请")
    approver.keyboard.press("Enter")
    expect(approver.locator("#decide")).to_be_visible()
    tab_to(approver, "批准")
    approver.keyboard.press("Enter")
    expect(approver.locator("#step-of")).to_have_text("第 2 步，共 2 步")
    public = httpx.get(
        f"{server.url}/v1/requests/{rid}", headers={"Authorization": f"Bearer {tokens['kb-clerk']}"}
    ).json()
    assert (public["steps"][0]["actor"], public["steps"][0]["decision"]) == ("kb-admin", "approved"), public
