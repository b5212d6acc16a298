"""Every error the portal can show is in the user's language: each problem type the services
raise (and pydantic's form validation) driven through the portal in zh-CN and in English.

The services' problem details are English sentences for API clients; none may reach a page:
in zh-CN no English sentence appears in any error, in English no Chinese does (besides user
data), and none of the services' own phrases appears in either.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from httpx import Response
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.controlplane.ledger.helpers import allocate
from tests.controlplane.requests.conftest import CITY, COUNTY
from tests.portal.conftest import PortalUser, PortalWorld, vm_form

# phrases of the services' English details (and pydantic's): never on a page
SERVICE_PHRASES = (
    "does not fit at",
    "no allocation exists",
    "unknown flavor",
    "offers flavors",
    "unknown image",
    "does not run in",
    "reject needs a reason",
    "return needs a reason",
    "is assessed for MLPS",
    "needs a backup-enrolment",
    "data-sharing declaration (",
    "cannot move request",
    "no approval step",
    "pending_approval request",
    "already has a system named",
    "needs an RPO of at most",
    "cannot sustain",
    "Input should be",
    "Field required",
    "String should",
    "belongs to another tenant",
    "by a tenant-admin of a tenant above",
)
ERROR_BLOCK = re.compile(r'<(p|div|small)\b[^>]*class="[^"]*\berror\b[^"]*"[^>]*>(.*?)</\1>', re.S)
ENGLISH_SENTENCE = re.compile(r"[A-Za-z]{2,}(?:[ ,;:]+[A-Za-z]{2,}){2,}")
USER_DATA_ZH = {"学籍数据", "江岸区", "武汉市"}


def shown_errors(html: str) -> list[str]:
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip() for _, body in ERROR_BLOCK.findall(html)]


@dataclass
class Case:
    status: int
    zh: str
    en: str


SubmitVm = Callable[..., Response]


def _draft(user: PortalUser, **extra: str) -> str:
    made = user.post("/requests/new/vm", {**vm_form(count=1, flavor="c1.small"), "action": "draft", **extra})
    assert made.status_code == 303, made.text
    return str(made.headers["location"]).rsplit("/", 1)[1]


def _submitted(user: PortalUser) -> str:
    rid = _draft(user)
    assert user.post(f"/requests/{rid}/submit", page=f"/requests/{rid}").status_code == 303
    return rid


def field_count_not_a_number(w: PortalWorld, engine: Engine) -> Response:
    return w.clerk.post("/requests/new/vm", {**vm_form(), "spec.count": "abc", "action": "check"})


def field_count_too_small(w: PortalWorld, engine: Engine) -> Response:
    return w.clerk.post("/requests/new/vm", {**vm_form(), "spec.count": "0", "action": "check"})


def field_required(w: PortalWorld, engine: Engine) -> Response:
    return w.clerk.post("/requests/new/vm", {**vm_form(), "new_system.name": "", "action": "draft"})


def field_backup_name_format(w: PortalWorld, engine: Engine) -> Response:
    form = {**vm_form(), "spec.name": "Payroll DB", "spec.paths": "/srv", "spec.size_gb": "5"}
    return w.clerk.post("/requests/new/backup-enrolment", {**form, "spec.target_region": "yichang", "action": "check"})


def field_relative_path(w: PortalWorld, engine: Engine) -> Response:
    form = {**vm_form(), "spec.name": "payroll", "spec.paths": "srv/data", "spec.size_gb": "5"}
    return w.clerk.post("/requests/new/backup-enrolment", {**form, "spec.target_region": "yichang", "action": "check"})


def unknown_flavor(w: PortalWorld, engine: Engine) -> Response:
    return w.clerk.post("/requests/new/vm", {**vm_form(flavor="c8.xlarge", count=1), "action": "draft"})


def unknown_image(w: PortalWorld, engine: Engine) -> Response:
    return w.clerk.post("/requests/new/vm", {**vm_form(), "spec.image": "windows-xp", "action": "draft"})


def region_not_offered(w: PortalWorld, engine: Engine) -> Response:
    return w.clerk.post("/requests/new/vm", {**vm_form(), "region": "yichang", "action": "check"})


def allocation_missing(w: PortalWorld, engine: Engine) -> Response:
    return w.clerk.post("/requests/new/vm", {**vm_form(), "region": "xiangyang", "action": "check"})


def declaration_missing(w: PortalWorld, engine: Engine) -> Response:
    form = {k: v for k, v in vm_form().items() if not k.startswith("decl.")}
    return w.clerk.post("/requests/new/vm", {**form, "action": "submit"})


def conditional_without_owner(w: PortalWorld, engine: Engine) -> Response:
    return w.clerk.post("/requests/new/vm", {**vm_form(), "decl.sharing": "conditional", "action": "submit"})


def mlps_needs_backup_first(w: PortalWorld, engine: Engine) -> Response:
    form = {**vm_form(), "new_system.mlps_level": "3", "new_system.filing_ref": "42010013001-23001"}
    return w.clerk.post("/requests/new/vm", {**form, "action": "submit"})


def mlps_filing_ref(w: PortalWorld, engine: Engine) -> Response:
    return w.clerk.post("/requests/new/vm", {**vm_form(), "new_system.mlps_level": "3", "action": "draft"})


def system_name_taken(w: PortalWorld, engine: Engine) -> Response:
    _draft(w.clerk, **{"new_system.name": "jiaowu"})
    return w.clerk.post("/requests/new/vm", {**vm_form(), "new_system.name": "jiaowu", "action": "draft"})


def _backup_form(size_gb: int, rpo_s: int, level: str = "2") -> dict[str, str]:
    return {
        **vm_form(),
        "cloud": "egov",
        "new_system.mlps_level": level,
        "new_system.filing_ref": "42010013001-23001",
        "spec.name": "payroll",
        "spec.paths": "/var/lib/pgsql",
        "spec.target_region": "yichang",
        "spec.rpo_target_s": str(rpo_s),
        "spec.size_gb": str(size_gb),
        "action": "submit",
    }


def _backup_world(engine: Engine) -> None:
    allocate(engine, CITY, "shared", {"backup_gb": 500_000}, cloud="egov", region="yichang")
    allocate(engine, COUNTY, "shared", {}, cloud="egov", region="yichang")


def rpo_infeasible(w: PortalWorld, engine: Engine) -> Response:
    _backup_world(engine)  # 江岸区's DR link: 100 Mbit/s; 7000 GB at 10 % a day cannot keep a 1 h RPO
    return w.clerk.post("/requests/new/backup-enrolment", _backup_form(7000, 3600))


def rpo_no_link(w: PortalWorld, engine: Engine) -> Response:
    _backup_world(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE tenants SET dr_link_mbps = 0 WHERE path = :p"), {"p": COUNTY})
    return w.clerk.post("/requests/new/backup-enrolment", _backup_form(50, 3600))


def rpo_above_mlps_bound(w: PortalWorld, engine: Engine) -> Response:
    _backup_world(engine)
    return w.clerk.post("/requests/new/backup-enrolment", _backup_form(50, 86400, level="3"))


def someone_else_decided(w: PortalWorld, engine: Engine) -> Response:
    rid = _submitted(w.clerk)
    shown = w.county_admin.get(f"/requests/{rid}").text
    version = re.search(r'name="version" value="(\d+)"', shown).group(1)  # type: ignore[union-attr]
    assert w.county_admin.post(f"/requests/{rid}/approve", page=f"/requests/{rid}").status_code == 303
    return w.county_admin.post(f"/requests/{rid}/reject", {"reason": "晚了", "version": version}, page="/")


def not_your_step(w: PortalWorld, engine: Engine) -> Response:
    rid = _submitted(w.clerk)  # step 1 is the county's tenant-admin, not the lead department
    assert 'id="decide"' not in w.lead_approver.get(f"/requests/{rid}").text, "the form is only for the step holder"
    with engine.connect() as conn:
        version = str(conn.execute(text("SELECT version FROM requests")).scalar())
    return w.lead_approver.post(f"/requests/{rid}/approve", {"version": version}, page=f"/requests/{rid}")


def reason_missing(w: PortalWorld, engine: Engine) -> Response:
    rid = _submitted(w.clerk)
    return w.county_admin.post(f"/requests/{rid}/return", {"reason": " "}, page=f"/requests/{rid}")


def submit_twice(w: PortalWorld, engine: Engine) -> Response:
    rid = _submitted(w.clerk)
    return w.clerk.post(f"/requests/{rid}/submit", page=f"/requests/{rid}")


def edit_pending(w: PortalWorld, engine: Engine) -> Response:
    rid = _submitted(w.clerk)
    form = {"spec.flavor": "c1.small", "spec.image": "kylin-v10", "spec.count": "1", "action": "save"}
    return w.clerk.post(f"/requests/{rid}/edit", form, page=f"/requests/{rid}/edit")


def quota_gone_at_submit(w: PortalWorld, engine: Engine) -> Response:
    rid = _draft(w.clerk, **{"spec.flavor": "c4.large", "spec.count": "3"})  # 12 of the county's 16 vCPUs
    other = w.clerk.post("/requests/new/vm", {**vm_form(count=2, flavor="c4.large"), "action": "submit"})
    assert other.status_code == 303, other.text  # takes 8: 8 are left
    return w.clerk.post(f"/requests/{rid}/submit", page=f"/requests/{rid}")


def foreign_system(w: PortalWorld, engine: Engine) -> Response:
    return w.clerk.post("/requests/new/vm", {**vm_form(), "system": str(uuid.uuid4()), "action": "draft"})


def limit_not_yours(w: PortalWorld, engine: Engine) -> Response:
    form = {"tenant": COUNTY, "cloud": "education", "region": "wuhan", "resource": "vcpus", "limit": "1"}
    return w.county_admin.post("/quotas/limits", form, page="/quotas")


def limit_no_such_node(w: PortalWorld, engine: Engine) -> Response:
    form = {"tenant": "a/b", "cloud": "education", "region": "wuhan", "resource": "vcpus", "limit": "1"}
    return w.city_admin.post("/quotas/limits", form, page="/quotas")


CASES: dict[Callable[[PortalWorld, Engine], Response], Case] = {
    field_count_not_a_number: Case(422, "请输入整数。", "Enter a whole number."),
    field_count_too_small: Case(422, "不能小于 1。", "Must be at least 1."),
    field_required: Case(422, "此项必填。", "This field is required."),
    field_backup_name_format: Case(422, "小写字母、数字和连字符", "Lower-case letters, digits and dashes"),
    field_relative_path: Case(422, "请填写绝对路径", "Give absolute paths without"),
    unknown_flavor: Case(
        422, "该专题云不提供规格 c8.xlarge。", "Flavor c8.xlarge is not offered in this themed cloud."
    ),
    unknown_image: Case(422, "区域 wuhan 不提供镜像 windows-xp。", "Image windows-xp is not offered in region wuhan."),
    region_not_offered: Case(
        422, "该专题云未在区域 yichang 提供。", "This themed cloud is not offered in region yichang."
    ),
    allocation_missing: Case(
        422,
        "hubei.wuhan.jiangan/education/xiangyang 尚未分配配额",
        "No quota allocation exists for hubei.wuhan.jiangan",
    ),
    declaration_missing: Case(422, "必须进行数据共享申报", "A data-sharing declaration is required"),
    conditional_without_owner: Case(
        422, "有条件共享须填写会签的数据所有方", "Conditional sharing needs the data owner"
    ),
    mlps_needs_backup_first: Case(
        422, "等保 3 级系统在首次申请资源前必须先完成远程灾备登记", "A level-3 system needs a remote backup enrolment"
    ),
    mlps_filing_ref: Case(
        422, "三级、四级系统必须填写等保备案号。", "A level-3 or level-4 system needs its MLPS filing"
    ),
    system_name_taken: Case(422, "该租户已有同名信息系统。", "The tenant already has an information system with"),
    rpo_infeasible: Case(
        422,
        "100 Mbit/s 的灾备链路无法满足 1 小时 的 RPO：最短只能达到 1 小时 17 分钟。 要达到 1 小时 需要 104.39 Mbit/s"
        " 的链路。 首次全量复制需要 8 天 16 小时。",
        "The 100 Mbit/s DR link cannot meet an RPO of 1 h: the best it can meet is 1 h 17 min. Meeting 1 h needs a"
        " link of 104.39 Mbit/s. The first full copy takes 8 d 16 h.",
    ),
    rpo_no_link: Case(422, "该租户尚未登记灾备链路", "The tenant has no DR link recorded"),
    rpo_above_mlps_bound: Case(422, "按该系统的等保级别，RPO 最长为 4 小时。", "allows an RPO of at most 4 h."),
    someone_else_decided: Case(409, "已被他人处理", "Already handled by someone else"),
    not_your_step: Case(403, "该申请当前没有由您审批的环节。", "approval steps is yours to decide now"),
    reason_missing: Case(422, "驳回或退回必须填写理由", "Rejecting or returning needs a reason"),
    submit_twice: Case(
        409, "申请当前状态为“审批中”，无法执行此操作", "Not possible while the request is Pending approval"
    ),
    edit_pending: Case(422, "状态为“审批中”的申请不能编辑。", "A request that is Pending approval cannot be edited."),
    quota_gone_at_submit: Case(
        409, "超出 hubei.wuhan.jiangan/education/wuhan 的配额：vCPU 需要 12，该层级仅剩 8。", "Over quota at"
    ),
    foreign_system: Case(404, "该页面或对象不存在，或您无权查看。", "This page or object does not exist"),
    limit_not_yours: Case(
        403, "市州或部门以下的限额由运维人员或上级租户管理员设置。", "Limits below a city or department"
    ),
    limit_no_such_node: Case(422, "请填写已存在的租户路径、专题云和区域。", "Choose an existing tenant path"),
}


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
@pytest.mark.parametrize("scenario", list(CASES), ids=lambda f: f.__name__)
def test_errors_are_shown_in_the_users_language(
    scenario: Callable[[PortalWorld, Engine], Response], lang: str, portal_world: PortalWorld, engine: Engine
) -> None:
    case = CASES[scenario]
    for user in vars(portal_world).values():
        user.client.cookies.set("chutian_lang", lang)
    response = scenario(portal_world, engine)
    html = response.text
    assert response.status_code == case.status, html[-2000:]
    assert (case.zh if lang == "zh-CN" else case.en) in html, shown_errors(html)
    leaked = [p for p in SERVICE_PHRASES if p.lower() in html.lower()]
    assert not leaked, f"the service's English reached the page: {leaked}"
    errors = shown_errors(html)
    assert errors or response.status_code == 404, "the error is shown in an error block"
    for error in errors:
        if lang == "zh-CN":
            assert not ENGLISH_SENTENCE.search(error), f"English in zh-CN: {error!r}"
        else:
            chinese = set(re.findall(r"[\u4e00-\u9fff]+", error)) - USER_DATA_ZH
            assert not chinese, f"Chinese in English: {error!r}"
