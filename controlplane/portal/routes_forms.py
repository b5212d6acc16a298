"""The request forms: what each offers (tenants, regions, systems, flavors, images, DR sites,
RPO choices, the remaining quota along the ledger chain), the quota check (the ledger's dry
run), draft/submit, and the options fragment htmx swaps in place when a choice they depend on
changes (tenant, themed cloud, region, system, MLPS level, DR site)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select

from controlplane.auth.policy import can
from controlplane.auth.principal import Principal
from controlplane.catalogue import service as catalogue
from controlplane.db.uow import UnitOfWork
from controlplane.errors import DomainError, NotFound, ValidationFailed
from controlplane.ledger import service as ledger
from controlplane.ledger.errors import AllocationMissing, QuotaRefused
from controlplane.ledger.schemas import NodePublic, chain_public
from controlplane.portal import forms, problems, web
from controlplane.requests import service, workflow
from controlplane.requests.schemas import RequestCreate
from controlplane.requests.specs import delta_of
from controlplane.tenants import service as tenants
from controlplane.tenants.models import Tenant, TenantStatus
from quotas import NodeKey

router = APIRouter(include_in_schema=False)
# the control whose change asked for the fragment is not swapped (it keeps focus and value)
TRIGGER_BLOCK = {"region": "opt-region", "system": "opt-system", "spec.target_region": "opt-dr"}
# opt-spec: the spec's dependent selects (flavor, image, storage, RPO), never its text fields
BLOCKS = ("opt-region", "opt-zone", "opt-system", "opt-spec", "opt-dr", "opt-quota")


def _creatable_tenants(uow: UnitOfWork, who: Principal) -> list[Tenant]:
    rows = uow.session.scalars(
        select(Tenant)
        .where(tenants.scope_clause(who.scope), Tenant.status == TenantStatus.ACTIVE.value)
        .order_by(Tenant.path)
        .limit(300)
    )
    return [t for t in rows if can(who, "requests.create", t.path)]


def chain_of(uow: UnitOfWork, who: Principal, key: NodeKey | None) -> tuple[list[NodePublic], bool]:
    """The ledger chain with each level's headroom (ancestors outside the caller's scope show
    their headroom only), and whether the node has no allocation yet."""
    if key is None:
        return [], False
    try:
        return chain_public(ledger.read_chain(uow, key), who), False
    except AllocationMissing:
        return [], True
    except DomainError:
        return [], False


def _pick(value: str | None, offered: list[str]) -> str:
    """The posted choice if it is still offered, else the first offer (a cloud's change can take
    the chosen region, flavor or DR site away)."""
    return value if value in offered else (offered[0] if offered else "")


def form_context(uow: UnitOfWork, who: Principal, kind: str, values: dict[str, str]) -> dict[str, Any]:
    options = _creatable_tenants(uow, who)
    values.setdefault("tenant", options[0].path if options else "")
    clouds = [dict(c.spec, code=c.code) for c in catalogue.clouds(uow)]
    values["cloud"] = _pick(values.get("cloud"), [c["code"] for c in clouds])
    cloud = next((c for c in clouds if c["code"] == values["cloud"]), {})
    regions = list(cloud.get("regions") or [r.code for r in catalogue.regions(uow)])
    values["region"] = _pick(values.get("region"), regions)
    systems = [
        (s, p) for s, p in service.list_systems(uow, who, tenant=values["tenant"] or None) if s.cloud == values["cloud"]
    ]
    chosen = next((s for s, _ in systems if str(s.id) == values.get("system")), None)
    if chosen is None:
        values["system"] = ""
    level = chosen.mlps_level if chosen is not None else 2
    if chosen is None and values.get("new_system.mlps_level") in ("2", "3", "4"):
        level = int(values["new_system.mlps_level"])
    flavors = [f for f in catalogue.flavors(uow) if f.name in (cloud.get("allowed_flavors") or [])]
    images = [i.name for i in catalogue.images(uow, values["region"])] if kind == "vm" else []
    dr_sites = [r.code for r in catalogue.regions(uow) if r.dr_site and r.code != values["region"]]
    if kind == "vm":
        values["spec.flavor"] = _pick(values.get("spec.flavor"), [f.name for f in flavors])
        if images:
            values["spec.image"] = _pick(values.get("spec.image"), images)
    if kind == "backup-enrolment":
        values["spec.target_region"] = _pick(values.get("spec.target_region"), dr_sites)
    key = None
    key_region = values.get("spec.target_region") if kind == "backup-enrolment" else values["region"]
    if values["tenant"] and values["cloud"] and key_region:
        try:
            key = NodeKey(values["tenant"], values["cloud"], key_region)
        except ValueError:  # whatever was typed into the URL: no chain to show
            key = None
    chain, missing = chain_of(uow, who, key)
    tenant = next((t for t in options if t.path == values["tenant"]), None)
    return {
        "kind": kind,
        "values": values,
        "tenants": options,
        "clouds": clouds,
        "cloud": cloud,
        "regions": regions,
        "zone": tenant.network_zone if tenant is not None else None,
        "dr_sites": dr_sites,
        "region_names": {r.code: (r.spec.get("name_zh"), r.spec.get("name_en")) for r in catalogue.regions(uow)},
        "flavors": flavors,
        "images": images,
        "storage": cloud.get("allowed_storage") or [],
        "systems": systems,
        "rpo_choices": forms.rpo_choices(level),
        "mlps_level": level,
        "sharing": forms.SHARING,
        "chain": chain,
        "allocation_missing": missing,
        "node": str(key) if key else "",
        "resources": forms.RESOURCES_OF.get(kind, ("vcpus", "ram_mb", "instances")),
        "refresh": f"/requests/new/{kind}/options",
    }


@router.get("/requests/new/{kind}")
def new_request_form(request: Request, kind: str, uow: web.Uow, who: web.Who) -> Response:
    if kind not in forms.FORM_KINDS:
        return web.error_page(request, NotFound("no such request form"))
    values = {k: v for k, v in request.query_params.items() if k in ("tenant", "cloud", "region", "system")}
    ctx = form_context(uow, who, kind, values)
    on_form = forms.fields_of(kind, create=True)
    return web.render(request, "request_form.html", errors=forms.FormErrors(on_form=on_form), refusal=None, **ctx)


@router.post("/requests/new/{kind}/options")
async def form_options(request: Request, kind: str, uow: web.Uow, who: web.Who) -> Response:
    """The parts of the form that depend on what just changed, as htmx out-of-band swaps; a
    tenant the caller may not ask for is not found (like the form's POST)."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    if kind not in forms.FORM_KINDS:
        return web.error_page(request, NotFound("no such request form"))
    ctx = form_context(uow, who, kind, dict(form))
    if form.get("tenant") not in {t.path for t in ctx["tenants"]}:
        return web.error_page(request, NotFound("tenant not found"))
    skip = TRIGGER_BLOCK.get(request.headers.get("hx-trigger-name", ""))
    blocks = [b for b in BLOCKS if b != skip]
    errors = forms.FormErrors(on_form=forms.fields_of(kind, create=True))
    return web.render(request, "_request_options.html", blocks=blocks, errors=errors, **ctx)


def _refusal(uow: UnitOfWork, exc: QuotaRefused) -> dict[str, Any]:
    """The ledger's refusal with the level it stopped at named (county, city, province, region)."""
    node = str(exc.fields.get("node", ""))
    tenant_path = node.split("/", 1)[0] if "/" in node else None
    level = "region"
    name = node
    if tenant_path:
        row = uow.session.scalars(select(Tenant).where(Tenant.path == tenant_path)).first()
        level = row.kind if row else "tenant"
        name = row.name_zh if row else tenant_path
    return {"level": level, "node": node, "name": name, **exc.fields}


def _dry_run(uow: UnitOfWork, body: RequestCreate, key: NodeKey) -> None:
    """Raise QuotaRefused (naming the level) if the ledger would refuse this request now; a
    cloud or region the catalogue does not offer is named first (not as a missing allocation)."""
    offered = {c.code: c.spec.get("regions") or [] for c in catalogue.clouds(uow)}
    if body.cloud not in offered:
        raise ValidationFailed(f"unknown themed cloud '{body.cloud}'", field="cloud")
    if body.region not in offered[body.cloud]:
        raise ValidationFailed(f"{body.cloud} does not run in '{body.region}'", field="region")
    flavors = {f.name: {"vcpus": f.vcpus, "ram_mb": f.ram_mb, "disk_gb": f.disk_gb} for f in catalogue.flavors(uow)}
    if getattr(body.spec, "flavor", None) is not None and body.spec.flavor not in flavors:  # type: ignore[union-attr]
        return  # the service names the unknown flavor
    delta = delta_of(body.spec, flavors)
    if not delta:
        return
    result = ledger.dry_run(uow, key, delta)
    if result.refusal is not None:
        raise ledger.refused(result.refusal)


@router.post("/requests/new/{kind}")
async def create_request(request: Request, kind: str, uow: web.Uow, who: web.Who) -> Response:
    if kind not in forms.FORM_KINDS:
        return web.error_page(request, NotFound("no such request form"))
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    action = form.get("action", "check")
    gettext = web.gettext_for(request)
    on_form = forms.fields_of(kind, create=True)
    errors, refusal = forms.FormErrors(on_form=on_form), None
    try:
        body = RequestCreate.model_validate(forms.create_body(kind, form))
    except ValidationError as exc:
        errors = forms.pydantic_errors(exc, gettext, on_form)
    if not errors and form.get("decl.sharing"):
        errors = forms.declaration_form_problems(form, gettext, on_form)
    if not errors:
        try:
            region = body.spec.target_region if kind == "backup-enrolment" else body.region  # type: ignore[union-attr]
            _dry_run(uow, body, NodeKey(body.tenant, body.cloud, region))
            if action in ("draft", "submit"):
                row, _ = service.create_request(uow, who, body)
                if action == "submit":
                    workflow.submit(uow, who, row.id)
                return web.redirect(f"/requests/{row.id}", request=request)
        except QuotaRefused as exc:
            uow.rollback()
            refusal = _refusal(uow, exc)
        except DomainError as exc:
            uow.rollback()
            if isinstance(exc, NotFound):  # a tenant or system the caller may not see (the selects offer none)
                return web.error_page(request, exc)
            errors.add(problems.describe(exc, gettext, {**form, "mlps_level": str(_level_of(uow, who, form))}))
    ctx = form_context(uow, who, kind, dict(form))
    status = 409 if refusal else (422 if errors else 200)
    return web.render(request, "request_form.html", status=status, errors=errors, refusal=refusal, checked=True, **ctx)


def _level_of(uow: UnitOfWork, who: Principal, form: dict[str, str]) -> int:
    """The MLPS level the form speaks of: the chosen system's, or the proposed one's."""
    if form.get("system"):
        try:
            return service.get_system(uow, who, uuid.UUID(form["system"]))[0].mlps_level
        except (ValueError, DomainError):
            return 2
    raw = form.get("new_system.mlps_level", "")
    return int(raw) if raw in ("2", "3", "4") else 2
