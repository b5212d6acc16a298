"""The verbs: submit, approve, reject, return, cancel, retry — with the ledger through the
request's life (the request owns its reservation, `request:<id>`)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from controlplane.auth.policy import authorize, can
from controlplane.auth.principal import Principal
from controlplane.catalogue import service as catalogue
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Forbidden, PolicyViolation, ValidationFailed
from controlplane.ledger import service as ledger
from controlplane.operations import service as operations
from controlplane.requests import removal, rules
from controlplane.requests.models import ApprovalStep, Decision, InformationSystem, Request, SystemStatus
from controlplane.requests.service import (
    Visible,
    as_system,
    current_steps_for,
    get_visible,
    move,
    owner_of,
)
from controlplane.requests.specs import RequestKind
from controlplane.requests.states import RequestState, check_verb
from controlplane.tenants.models import Tenant
from quotas import NodeKey

S = RequestState


def _key(req: Request, path: str) -> NodeKey:
    if req.kind == RequestKind.BACKUP_ENROLMENT.value:  # backup_gb is charged to the target region's chain
        return NodeKey(path, req.cloud, str(req.spec["target_region"]))
    return NodeKey(path, req.cloud, req.region)


def _reserve(uow: UnitOfWork, req: Request, path: str) -> None:
    if not req.delta:
        return
    with as_system(uow):
        ledger.reserve(uow, owner_of(req.id), _key(req, path), req.delta)


def _release(uow: UnitOfWork, req: Request, reason: str) -> None:
    with as_system(uow):
        ledger.release(uow, owner_of(req.id), reason=reason)


def _gates(uow: UnitOfWork, req: Request, system: InformationSystem) -> None:
    """Data-sharing declaration and MLPS rules; each refusal says exactly what is missing."""
    problems: list[str] = []
    new_system = system.status == SystemStatus.PROPOSED.value
    declaration = req.declaration or (system.declaration if not new_system else None) or None
    if (new_system and req.kind not in rules.REMOVAL_KINDS) or req.kind in rules.DATA_BEARING_KINDS:
        problems += rules.declaration_problems(declaration or system.declaration)
    if new_system and system.mlps_level >= 3 and not system.filing_ref:
        problems.append("system.filing_ref: a level-3/4 system needs its filing reference (等保备案号)")
    region = catalogue.region(uow, req.region)
    has_backup = system.mlps_level < 3 or (
        uow.session.scalars(
            select(Request.id)
            .where(
                Request.system_id == system.id,
                Request.kind == RequestKind.BACKUP_ENROLMENT.value,
                col(Request.state).in_(
                    [
                        S.SUBMITTED.value,
                        S.PENDING_APPROVAL.value,
                        S.APPROVED.value,
                        S.PROVISIONING.value,
                        S.SUCCEEDED.value,
                    ]
                ),
                Request.id != req.id,
            )
            .limit(1)
        ).first()
        is not None
    )
    problems += rules.mlps_problems(
        level=system.mlps_level,
        region=req.region,
        assessed=list(region.spec.get("mlps_assessed", [])),
        has_backup=has_backup,
        kind=req.kind,
    )
    if problems:
        raise PolicyViolation("; ".join(problems), field=problems[0].split(":", 1)[0], missing=problems)
    if req.kind == RequestKind.BACKUP_ENROLMENT.value:
        _backup_gates(uow, req)
    _removal_gates(uow, req)


def _removal_gates(uow: UnitOfWork, req: Request) -> None:
    """The target (or the allocation) may have changed since the draft: checked again."""
    removal.recheck_target(uow, req)
    removal.check_retirable(uow, req)


def _backup_gates(uow: UnitOfWork, req: Request) -> None:
    """The DR link must carry the RPO (checked at submit and again at the last approval)."""
    from controlplane.backup.enrolment import check_feasible, check_slug_free

    path = uow.session.scalar(select(Tenant.path).where(Tenant.id == req.tenant_id)) or ""
    check_slug_free(uow, req)
    check_feasible(uow, req, path)


def _facts(uow: UnitOfWork, req: Request, path: str, system: InformationSystem) -> rules.RouteFacts:
    cloud = dict(catalogue.cloud(uow, req.cloud).spec)
    approval = cloud.get("approval") or {}
    return rules.RouteFacts(
        tenant_path=path,
        province=path.split(".", 1)[0],
        lead_department=cloud["lead_department"],
        delta=req.delta,
        operator_threshold=approval.get("operator_threshold") or {},
        mlps_level=system.mlps_level,
        declaration=req.declaration or system.declaration,
        auto_rules=approval.get("auto") or [],
        kind=req.kind,
    )


def submit(uow: UnitOfWork, who: Principal, request_id: uuid.UUID, reason: str | None = None) -> Visible:
    seen = get_visible(uow, who, request_id, for_update=True)
    req, path = seen.request, seen.path
    authorize(who, "requests.create", path, what=f"request '{request_id}'")
    check_verb("submit", S(req.state))
    system = uow.session.get(InformationSystem, req.system_id)
    assert system is not None
    _gates(uow, req, system)
    _reserve(uow, req, path)  # a refusal is 409 naming node and resource; the request stays as it was
    req.round += 1
    move(uow, req, S.SUBMITTED, actor=who.name, reason=None, path=path)
    facts = _facts(uow, req, path, system)
    now = uow.now()
    steps = [
        ApprovalStep(
            request_id=req.id, round=req.round, order=plan.order, group=plan.group, role=plan.role, node_path=plan.node
        )
        for plan in rules.route(facts)
    ]
    uow.session.add_all(steps)
    rule = rules.auto_rule(facts) if system.status == SystemStatus.APPROVED.value else None
    if rule is not None:  # only after a successful reservation, recording the rule that fired
        for step in steps:
            step.decision, step.actor, step.decided_at = Decision.APPROVED.value, f"auto:{rule}", now
        req.auto_rule = rule
        move(uow, req, S.APPROVED, actor=f"auto:{rule}", reason=f"auto-approval rule '{rule}'", path=path)
        _start_provisioning(uow, req, path, actor=f"auto:{rule}")
    else:
        move(uow, req, S.PENDING_APPROVAL, actor=who.name, reason=None, path=path)
    return seen


def _decide(uow: UnitOfWork, who: Principal, request_id: uuid.UUID, verb: str) -> tuple[Visible, list[ApprovalStep]]:
    seen = get_visible(uow, who, request_id, for_update=True)  # the row lock makes a race a clean 409
    check_verb(verb, S(seen.request.state))
    mine = current_steps_for(uow, who, seen.request)
    if not mine:
        raise Forbidden("no approval step of this request is yours to decide now", permission=f"requests.{verb}")
    return seen, mine


def approve(uow: UnitOfWork, who: Principal, request_id: uuid.UUID, reason: str | None) -> Visible:
    seen, mine = _decide(uow, who, request_id, "approve")
    req, path = seen.request, seen.path
    now = uow.now()
    for step in mine:
        step.decision, step.actor, step.reason, step.decided_at = Decision.APPROVED.value, who.name, reason, now
    uow.session.flush()
    pending = uow.session.scalars(
        select(ApprovalStep.id).where(
            ApprovalStep.request_id == req.id,
            ApprovalStep.round == req.round,
            ApprovalStep.decision == Decision.PENDING.value,
        )
    ).first()
    if pending is None:
        with as_system(uow):
            held = ledger.get_reservation(uow, owner_of(req.id))
        if held is None:
            _reserve(uow, req, path)  # released meanwhile: reserve again atomically, or 409
        system = uow.session.get(InformationSystem, req.system_id)
        assert system is not None
        if system.status == SystemStatus.PROPOSED.value:  # approving the first request approves the system
            system.status, system.updated_at = SystemStatus.APPROVED.value, now
            if req.declaration and not system.declaration:
                system.declaration = req.declaration
        if req.kind == RequestKind.BACKUP_ENROLMENT.value:
            _backup_gates(uow, req)  # the tenant's link may have changed since submit
        _removal_gates(uow, req)
        move(uow, req, S.APPROVED, actor=who.name, reason=reason, path=path)
        _start_provisioning(uow, req, path, actor=who.name)
    else:
        req.updated_at, req.version = now, req.version + 1
    return seen


def _close_round(
    uow: UnitOfWork, req: Request, decision: Decision, who: Principal, reason: str, decided: list[ApprovalStep]
) -> None:
    now = uow.now()
    for step in decided:
        step.decision, step.actor, step.reason, step.decided_at = decision.value, who.name, reason, now
    for step in uow.session.scalars(
        select(ApprovalStep).where(
            ApprovalStep.request_id == req.id,
            ApprovalStep.round == req.round,
            ApprovalStep.decision == Decision.PENDING.value,
        )
    ):
        step.decision = Decision.SUPERSEDED.value


def _need_reason(reason: str | None, verb: str) -> str:
    if not reason:
        raise ValidationFailed(f"{verb} needs a reason", field="reason")
    return reason


def reject(uow: UnitOfWork, who: Principal, request_id: uuid.UUID, reason: str | None) -> Visible:
    text = _need_reason(reason, "reject")
    seen, mine = _decide(uow, who, request_id, "reject")
    _close_round(uow, seen.request, Decision.REJECTED, who, text, mine)
    _release(uow, seen.request, "rejected")
    move(uow, seen.request, S.REJECTED, actor=who.name, reason=text, path=seen.path)
    return seen


def return_(uow: UnitOfWork, who: Principal, request_id: uuid.UUID, reason: str | None) -> Visible:
    text = _need_reason(reason, "return")
    seen, mine = _decide(uow, who, request_id, "return")
    _close_round(uow, seen.request, Decision.RETURNED, who, text, mine)
    _release(uow, seen.request, "returned for revision")
    move(uow, seen.request, S.RETURNED, actor=who.name, reason=text, path=seen.path)
    return seen


def cancel(uow: UnitOfWork, who: Principal, request_id: uuid.UUID, reason: str | None) -> Visible:
    seen = get_visible(uow, who, request_id, for_update=True)
    req = seen.request
    if not seen.in_scope or not (req.created_by == who.name or can(who, "tenants.update", seen.path)):
        authorize(who, "requests.create", seen.path, what=f"request '{request_id}'")
    check_verb("cancel", S(req.state))
    if req.state in (S.SUBMITTED.value, S.PENDING_APPROVAL.value):
        _close_round(uow, req, Decision.SUPERSEDED, who, reason or "cancelled", [])
    _release(uow, req, "cancelled")
    move(uow, req, S.CANCELLED, actor=who.name, reason=reason, path=seen.path)
    return seen


def retry(uow: UnitOfWork, who: Principal, request_id: uuid.UUID, reason: str | None) -> Visible:
    """`failed`: the tenant fixed what it had to; `errored`: only an operator retries."""
    seen = get_visible(uow, who, request_id, for_update=True)
    req = seen.request
    check_verb("retry", S(req.state))
    if req.state == S.ERRORED.value:
        authorize(who, "requests.retry-errored", seen.path, what=f"request '{request_id}'")
    else:
        authorize(who, "requests.create", seen.path, what=f"request '{request_id}'")
    with as_system(uow):
        held = ledger.get_reservation(uow, owner_of(req.id))
    if held is None:
        _reserve(uow, req, seen.path)
    _start_provisioning(uow, req, seen.path, actor=who.name, reason=reason)
    return seen


def _start_provisioning(uow: UnitOfWork, req: Request, path: str, *, actor: str, reason: str | None = None) -> None:
    tenant_id = uow.session.scalar(select(Tenant.id).where(Tenant.path == path))
    op = operations.start(uow, f"request.{req.kind}", params={"request_id": str(req.id)}, tenant_id=tenant_id)
    req.operation_id = op.id
    move(uow, req, S.PROVISIONING, actor=actor, reason=reason, path=path)


def decide_verbs() -> dict[str, Any]:
    return {"submit": submit, "approve": approve, "reject": reject, "return": return_, "cancel": cancel, "retry": retry}
