"""Information systems and requests: create, edit, read (scope or step holder), list."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import and_, func, or_, select
from sqlmodel import col

from controlplane.audit.record import AuditRecord
from controlplane.auth.models import Role
from controlplane.auth.policy import IMPLIES, authorize, can, holds
from controlplane.auth.principal import Principal, system_principal
from controlplane.catalogue import service as catalogue
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Conflict, NotFound, PolicyViolation, ValidationFailed
from controlplane.requests import removal
from controlplane.requests.models import (
    ApprovalStep,
    Decision,
    InformationSystem,
    Request,
    RequestTransition,
    SystemStatus,
)
from controlplane.requests.schemas import RequestCreate, RequestUpdate, SystemCreate
from controlplane.requests.specs import RequestKind, Spec, check_against_catalogue, delta_of
from controlplane.requests.states import EDITABLE, OPEN, RequestState, transition
from controlplane.tenants import service as tenants
from controlplane.tenants.models import Tenant, TenantStatus

SPEC_ADAPTER: TypeAdapter[Any] = TypeAdapter(Spec)


@contextmanager
def as_system(uow: UnitOfWork) -> Iterator[None]:
    """Ledger and allocation calls made on the request's behalf, once the request-level
    action is authorised (an approver of the lead department cannot read a city's node)."""
    saved = uow.principal
    uow.principal = system_principal(getattr(saved, "name", "system"))
    try:
        yield
    finally:
        uow.principal = saved


def owner_of(request_id: uuid.UUID) -> str:
    return f"request:{request_id}"


def _tenant(uow: UnitOfWork, who: Principal, path: str) -> Tenant:
    tenant = tenants.get(uow, who.scope, path)
    if tenant.status != TenantStatus.ACTIVE:
        raise Conflict(f"tenant '{path}' is {tenant.status}", field="tenant", current_state=tenant.status)
    return tenant


def _cloud(uow: UnitOfWork, code: str, region: str | None = None) -> dict[str, Any]:
    try:
        spec = dict(catalogue.cloud(uow, code).spec)
    except NotFound:
        raise ValidationFailed(f"unknown themed cloud '{code}'", field="cloud") from None
    if region is not None and spec.get("regions") and region not in spec["regions"]:
        raise ValidationFailed(f"{code} runs in {spec['regions']}, not in '{region}'", field="region")
    return spec


def create_system(uow: UnitOfWork, who: Principal, data: SystemCreate) -> tuple[InformationSystem, str]:
    authorize(who, "requests.create", data.tenant, what="tenant")
    tenant = _tenant(uow, who, data.tenant)
    _cloud(uow, data.cloud)
    return _new_system(
        uow,
        who,
        tenant,
        data.cloud,
        data.name,
        data.mlps_level,
        data.filing_ref,
        data.declaration.model_dump() if data.declaration else None,
        data.dr_required,
    ), tenant.path


def _new_system(
    uow: UnitOfWork,
    who: Principal,
    tenant: Tenant,
    cloud: str,
    name: str,
    level: int,
    filing_ref: str | None,
    declaration: dict[str, Any] | None,
    dr_required: bool,
) -> InformationSystem:
    if level > tenant.mlps_ceiling:
        raise PolicyViolation(
            f"MLPS level {level} is above {tenant.path}'s ceiling {tenant.mlps_ceiling}", field="mlps_level"
        )
    if level >= 3 and not filing_ref:
        raise ValidationFailed("a level-3/4 system needs its filing reference (等保备案号)", field="filing_ref")
    exists = uow.session.scalars(
        select(InformationSystem.id).where(InformationSystem.tenant_id == tenant.id, InformationSystem.name == name)
    ).first()
    if exists:
        raise Conflict(f"{tenant.path} already has a system named '{name}'", field="name", system=str(exists))
    now = uow.now()
    row = InformationSystem(
        tenant_id=tenant.id,
        cloud=cloud,
        name=name,
        mlps_level=level,
        filing_ref=filing_ref,
        declaration=declaration,
        dr_required=dr_required or level >= 3,
        status=SystemStatus.PROPOSED.value,
        created_by=who.name,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(row)
    uow.session.flush()
    uow.audit(
        AuditRecord(
            "system.create",
            "information_system",
            str(row.id),
            tenant_path=tenant.path,
            after={"name": name, "mlps_level": level, "cloud": cloud, "filing_ref": filing_ref},
        )
    )
    return row


def get_system(uow: UnitOfWork, who: Principal, system_id: uuid.UUID) -> tuple[InformationSystem, str]:
    found = uow.session.execute(
        select(InformationSystem, Tenant.path)
        .join(Tenant, Tenant.id == InformationSystem.tenant_id)
        .where(InformationSystem.id == system_id)
    ).first()
    if found is None or not who.scope.allows(found[1]):
        raise NotFound("information system not found")
    return found[0], found[1]


def list_systems(uow: UnitOfWork, who: Principal, *, tenant: str | None) -> list[tuple[InformationSystem, str]]:
    stmt = select(InformationSystem, Tenant.path).join(Tenant, Tenant.id == InformationSystem.tenant_id)
    stmt = stmt.where(tenants.scope_clause(who.scope))
    if tenant is not None:
        stmt = stmt.where(tenants.subtree_clause(tenant))
    return [(s, p) for s, p in uow.session.execute(stmt.order_by(Tenant.path, InformationSystem.name).limit(1000))]


def spec_hash(kind: str, cloud: str, region: str, spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([kind, cloud, region, spec], sort_keys=True).encode()).hexdigest()


def _flavors(uow: UnitOfWork) -> dict[str, dict[str, int]]:
    return {f.name: {"vcpus": f.vcpus, "ram_mb": f.ram_mb, "disk_gb": f.disk_gb} for f in catalogue.flavors(uow)}


def _validated_spec(
    uow: UnitOfWork, spec: Any, *, cloud: dict[str, Any], tenant: Tenant, region: str, target: Request | None = None
) -> dict[str, int]:
    regions = {r.code: dict(r.spec, dr_site=r.dr_site) for r in catalogue.regions(uow)}
    if region not in regions:
        raise ValidationFailed(f"unknown region '{region}'", field="region")
    flavors = _flavors(uow)
    check_against_catalogue(
        spec,
        cloud=cloud,
        flavors=flavors,
        tenant_zone=tenant.network_zone,
        regions=regions,
        region=region,
        images=[i.name for i in catalogue.images(uow, region)] if spec.kind == "vm" else (),
    )
    if spec.kind == RequestKind.VOLUME_BACKUP and target is not None:  # a backup is as large as its volume
        return {"backup_gb": int(target.spec["size_gb"])}
    return delta_of(spec, flavors)


def create_request(uow: UnitOfWork, who: Principal, data: RequestCreate) -> tuple[Request, str]:
    authorize(who, "requests.create", data.tenant, what="tenant")
    tenant = _tenant(uow, who, data.tenant)
    cloud = _cloud(uow, data.cloud, data.region)
    target = removal.target_of(uow, data.spec, tenant_id=tenant.id, cloud=data.cloud, region=data.region)
    system_id = data.system
    if target is not None:  # a backup or deletion belongs to the system of what it acts on
        if data.new_system is not None or (system_id is not None and system_id != target.system_id):
            raise ValidationFailed(f"a {data.spec.kind} request belongs to its target's system", field="system")
        system_id = target.system_id
    elif (data.system is None) == (data.new_system is None):
        raise ValidationFailed("name an existing `system` or propose a `new_system` (exactly one)", field="system")
    declaration = data.declaration.model_dump() if data.declaration else None
    if system_id is not None:
        system, system_path = get_system(uow, who, system_id)
        if system_path != tenant.path or system.cloud != data.cloud:
            raise ValidationFailed("the system belongs to another tenant or themed cloud", field="system")
    else:
        assert data.new_system is not None
        ns = data.new_system
        system = _new_system(
            uow, who, tenant, data.cloud, ns.name, ns.mlps_level, ns.filing_ref, declaration, ns.dr_required
        )
    delta = _validated_spec(uow, data.spec, cloud=cloud, tenant=tenant, region=data.region, target=target)
    if data.spec.kind == RequestKind.ALLOCATION_RETIREMENT.value:
        removal.allocation_of(uow, tenant, data.cloud, data.region)
        removal.retirement_blocker(uow, tenant, data.cloud, data.region, None)
    spec = data.spec.model_dump(mode="json")
    digest = spec_hash(data.spec.kind, data.cloud, data.region, spec)
    duplicate = uow.session.scalars(
        select(Request.id)
        .where(
            Request.tenant_id == tenant.id, Request.spec_hash == digest, col(Request.state).in_([s.value for s in OPEN])
        )
        .limit(1)
    ).first()
    now = uow.now()
    row = Request(
        tenant_id=tenant.id,
        system_id=system.id,
        kind=data.spec.kind,
        cloud=data.cloud,
        region=data.region,
        spec=spec,
        spec_hash=digest,
        delta=delta,
        declaration=declaration,
        state=RequestState.DRAFT.value,
        title=data.title,
        duplicate_of=duplicate,
        target_id=target.id if target is not None else None,
        created_by=who.name,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(row)
    uow.session.flush()
    uow.audit(
        AuditRecord(
            "request.create",
            "request",
            str(row.id),
            tenant_path=tenant.path,
            after={
                "kind": row.kind,
                "cloud": row.cloud,
                "region": row.region,
                "spec": spec,
                "duplicate_of": str(duplicate) if duplicate else None,
            },
        )
    )
    return row, tenant.path


@dataclass(frozen=True)
class Visible:
    request: Request
    path: str
    in_scope: bool  # False: visible only because the caller holds one of its steps


def _step_holder(uow: UnitOfWork, who: Principal, request_id: uuid.UUID) -> bool:
    steps = uow.session.scalars(select(ApprovalStep).where(ApprovalStep.request_id == request_id))
    return any(holds(who, Role(s.role), s.node_path) for s in steps)


def get_visible(uow: UnitOfWork, who: Principal, request_id: uuid.UUID, *, for_update: bool = False) -> Visible:
    """Visible to roles over the tenant's subtree, and to whoever holds one of its steps — that
    request only. Anyone else gets 404."""
    stmt = select(Request, Tenant.path).join(Tenant, Tenant.id == Request.tenant_id).where(Request.id == request_id)
    found = uow.session.execute(stmt.with_for_update(of=Request) if for_update else stmt).first()
    if found is not None:
        row, path = found
        if who.scope.allows(path) and can(who, "requests.read", path):
            return Visible(row, path, True)
        if _step_holder(uow, who, row.id):
            return Visible(row, path, False)
    raise NotFound(f"request '{request_id}' not found", request_id=str(request_id))


def update_request(uow: UnitOfWork, who: Principal, request_id: uuid.UUID, data: RequestUpdate) -> Visible:
    seen = get_visible(uow, who, request_id, for_update=True)
    req = seen.request
    authorize(who, "requests.create", seen.path, what="request")
    if RequestState(req.state) not in EDITABLE:
        raise Conflict(f"a {req.state} request cannot be edited", current_state=req.state)
    before = {"spec": req.spec, "declaration": req.declaration, "title": req.title}
    if data.spec is not None:
        if data.spec.kind != req.kind:
            raise ValidationFailed(f"the request is a {req.kind} request", field="spec.kind")
        tenant = uow.session.get(Tenant, req.tenant_id)
        assert tenant is not None
        target = removal.target_of(
            uow, data.spec, tenant_id=req.tenant_id, cloud=req.cloud, region=req.region, self_id=req.id
        )
        if target is not None and target.system_id != req.system_id:
            raise ValidationFailed(f"a {req.kind} request belongs to its target's system", field="system")
        req.delta = _validated_spec(
            uow, data.spec, cloud=_cloud(uow, req.cloud, req.region), tenant=tenant, region=req.region, target=target
        )
        req.target_id = target.id if target is not None else None
        req.spec = data.spec.model_dump(mode="json")
        req.spec_hash = spec_hash(req.kind, req.cloud, req.region, req.spec)
    if data.declaration is not None:
        req.declaration = data.declaration.model_dump()
    if data.title is not None:
        req.title = data.title
    req.updated_at, req.version = uow.now(), req.version + 1
    uow.audit(
        AuditRecord(
            "request.update",
            "request",
            str(req.id),
            tenant_path=seen.path,
            before=before,
            after={"spec": req.spec, "declaration": req.declaration, "title": req.title},
        )
    )
    return seen


@dataclass(frozen=True)
class RequestFilter:
    state: RequestState | None = None
    kind: str | None = None
    tenant: str | None = None
    inbox: bool = False  # pending steps the caller may decide now
    mine: bool = False
    decided: bool = False  # requests with a step the caller decided


def _holder_clause(who: Principal) -> Any:
    """Steps whose role the caller holds over the step's node (SQL form of `holds`)."""
    clauses = []
    for role, bound in who.bindings:
        roles = [r.value for r in IMPLIES.get(Role(role), frozenset({Role(role)}))]
        clauses.append(
            and_(
                col(ApprovalStep.role).in_(roles),
                or_(ApprovalStep.node_path == bound, col(ApprovalStep.node_path).startswith(bound + ".")),
            )
        )
    return or_(*clauses) if clauses else False


def _listed(who: Principal, flt: RequestFilter) -> Any:
    """The rows `who` may list under `flt`, as (Request, tenant path); shared by the API's
    cursor pages and the portal's sorted pages."""
    stmt = select(Request, Tenant.path).join(Tenant, Tenant.id == Request.tenant_id)
    held = select(ApprovalStep.request_id).where(_holder_clause(who))
    if flt.inbox:
        held = held.where(ApprovalStep.decision == Decision.PENDING.value)
        stmt = stmt.where(col(Request.id).in_(held), Request.state == RequestState.PENDING_APPROVAL.value)
    else:
        stmt = stmt.where(or_(tenants.scope_clause(who.scope), col(Request.id).in_(held)))
    if flt.state is not None:
        stmt = stmt.where(Request.state == flt.state.value)
    if flt.kind is not None:
        stmt = stmt.where(Request.kind == flt.kind)
    if flt.tenant is not None:
        stmt = stmt.where(tenants.subtree_clause(flt.tenant))
    if flt.mine:
        stmt = stmt.where(Request.created_by == who.name)
    if flt.decided:
        stmt = stmt.where(col(Request.id).in_(select(ApprovalStep.request_id).where(ApprovalStep.actor == who.name)))
    return stmt


def list_requests(
    uow: UnitOfWork, who: Principal, flt: RequestFilter, *, after: str | None, limit: int
) -> tuple[Sequence[tuple[Request, str]], str | None]:
    stmt = _listed(who, flt)
    if after is not None:
        stmt = stmt.where(Request.id > uuid.UUID(after))
    rows = [(r, p) for r, p in uow.session.execute(stmt.order_by(Request.id).limit(limit + 1))]
    if flt.inbox:  # SQL narrowed by role and node; the current-order rule is checked here
        rows = [(r, p) for r, p in rows if current_steps_for(uow, who, r)]
    return rows[:limit], (str(rows[limit - 1][0].id) if len(rows) > limit else None)


SORTS: dict[str, tuple[Any, ...]] = {
    "newest": (col(Request.created_at).desc(), col(Request.id).desc()),
    "oldest": (col(Request.created_at).asc(), col(Request.id).asc()),
    "updated": (col(Request.updated_at).desc(), col(Request.id).desc()),
}


def page_requests(
    uow: UnitOfWork, who: Principal, flt: RequestFilter, *, sort: str, offset: int, limit: int
) -> tuple[list[tuple[Request, str]], int]:
    """A sorted page and the total, in two queries (plus one for the inbox's order rule)."""
    stmt = _listed(who, flt)
    total = uow.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = [(r, p) for r, p in uow.session.execute(stmt.order_by(*SORTS[sort]).offset(offset).limit(limit))]
    if flt.inbox and rows:
        steps = uow.session.scalars(
            select(ApprovalStep).where(col(ApprovalStep.request_id).in_([r.id for r, _ in rows]))
        ).all()
        rows = [(r, p) for r, p in rows if current_steps_among([s for s in steps if s.request_id == r.id], who, r)]
    return rows, total


def steps_of(uow: UnitOfWork, request_id: uuid.UUID) -> list[ApprovalStep]:
    return list(
        uow.session.scalars(
            select(ApprovalStep)
            .where(ApprovalStep.request_id == request_id)
            .order_by(ApprovalStep.round, ApprovalStep.order, ApprovalStep.group)
        )
    )


def transitions_of(uow: UnitOfWork, request_id: uuid.UUID) -> list[RequestTransition]:
    return list(
        uow.session.scalars(
            select(RequestTransition).where(RequestTransition.request_id == request_id).order_by(RequestTransition.id)
        )
    )


def current_steps_for(uow: UnitOfWork, who: Principal, req: Request) -> list[ApprovalStep]:
    """The pending steps of the lowest undecided order that `who` may decide."""
    return current_steps_among(steps_of(uow, req.id), who, req)


def current_steps_among(steps: Sequence[ApprovalStep], who: Principal, req: Request) -> list[ApprovalStep]:
    """`current_steps_for` over steps already loaded (a list page loads them in one query)."""
    pending = [s for s in steps if s.round == req.round and s.decision == Decision.PENDING.value]
    if not pending:
        return []
    order = min(s.order for s in pending)
    return [s for s in pending if s.order == order and holds(who, Role(s.role), s.node_path)]


def move(uow: UnitOfWork, req: Request, target: RequestState, *, actor: str, reason: str | None, path: str) -> None:
    """Every transition: checked against the table, stored with actor/time/reason, audited."""
    current = RequestState(req.state)
    transition(current, target)
    now = uow.now()
    uow.session.add(
        RequestTransition(
            request_id=req.id,
            kind=req.kind,
            from_state=current.value,
            to_state=target.value,
            actor=actor,
            reason=reason,
            at=now,
        )
    )
    req.state, req.updated_at, req.version = target.value, now, req.version + 1
    if reason:
        req.last_reason = reason
    uow.audit(
        AuditRecord(
            f"request.{target.value}",
            "request",
            str(req.id),
            tenant_path=path,
            before={"state": current.value},
            after={"state": target.value},
            extra={"reason": reason} if reason else {},
        )
    )
