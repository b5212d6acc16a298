"""Enrolment: the approved `backup-enrolment` request becomes a BackupPolicy with its repository.

Feasibility is judged before approval (at submit and again when the last approval lands):
the declared size and daily change against the tenant's `dr_link_mbps`. Provisioning runs
inside the operations engine as two idempotent steps: the policy row (slug, schedule, a
generated repository password sealed with the SecretBox), then the repository at the DR site
(find-or-create with that stored password), which also commits the backup_gb reservation.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select

from backup.errors import InvalidInput
from backup.feasibility import assess_link, format_duration
from controlplane.backup.agent import check_vm_source
from controlplane.backup.models import BackupPolicy, PolicyState, SourceKind
from controlplane.backup.store import store_of
from controlplane.bootstrap import secret_box
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Conflict, PolicyViolation
from controlplane.ledger import service as ledger
from controlplane.operations.engine import OperatorError, PermanentFailure, Step, StepContext, register_step
from controlplane.requests import rules
from controlplane.requests.backends import call as backend_call
from controlplane.requests.models import InformationSystem, Request
from controlplane.requests.service import as_system, owner_of
from controlplane.tenants.models import Tenant
from controlplane.worker.runtime import WorkerContext
from quotas import NodeKey

KIND = "request.backup-enrolment"


class RpoNotFeasible(PolicyViolation):
    slug = "rpo-infeasible"
    title = "The DR link cannot meet this RPO"


def check_feasible(uow: UnitOfWork, req: Request, path: str) -> None:
    """422 `rpo-infeasible` naming the RPO the link can meet and the seeding time; 422 when the
    system's MLPS level demands a stricter RPO than requested."""
    spec = req.spec
    check_vm_source(uow, req)
    tenant = uow.session.scalars(select(Tenant).where(Tenant.path == path)).one()
    system = uow.session.get(InformationSystem, req.system_id)
    level = system.mlps_level if system is not None else 2
    limit = rules.max_rpo_s(level)  # one table for the API, the gates and the portal's choices
    rpo = timedelta(seconds=int(spec["rpo_target_s"]))
    if rpo.total_seconds() > limit:
        raise PolicyViolation(
            f"an MLPS level-{level} system needs an RPO of at most {format_duration(timedelta(seconds=limit))}, "
            f"not {format_duration(rpo)}",
            field="spec.rpo_target_s",
            max_rpo_s=limit,
        )
    if tenant.dr_link_mbps <= 0:
        raise RpoNotFeasible(
            f"{path} has no DR link declared (dr_link_mbps = 0): no RPO can be promised",
            field="spec.rpo_target_s",
            link_mbps=0,
        )
    try:
        result = assess_link(
            data_gib=float(spec["size_gb"]),
            daily_change_pct=float(spec.get("daily_change_pct", 10.0)),
            link_mbps=float(tenant.dr_link_mbps),
            rpo=rpo,
        )
    except InvalidInput as exc:
        raise PolicyViolation(str(exc), field=f"spec.{exc.field}") from None
    if not result.feasible:
        raise RpoNotFeasible(
            result.message,
            field="spec.rpo_target_s",
            link_mbps=result.link_mbps,
            requested_rpo_s=int(rpo.total_seconds()),
            achievable_rpo_s=None if result.min_rpo is None else int(result.min_rpo.total_seconds() + 0.999),
            required_link_mbps=None if result.required_link_mbps is None else round(result.required_link_mbps, 2),
            seeding_s=int(result.seeding_time.total_seconds() + 0.999),
        )


def check_slug_free(uow: UnitOfWork, req: Request) -> None:
    taken = uow.session.scalars(
        select(BackupPolicy.id).where(
            BackupPolicy.tenant_id == req.tenant_id, BackupPolicy.slug == str(req.spec["name"])
        )
    ).first()
    if taken is not None:
        raise Conflict(f"the tenant already has a backup policy named '{req.spec['name']}'", field="spec.name")


def sealer(worker: WorkerContext) -> Any:
    box = worker.extras.get("secret_box")
    if box is None:
        box = worker.extras["secret_box"] = secret_box(worker.settings)
    return box


def _request(uow: UnitOfWork, sc: StepContext) -> tuple[Request, str]:
    req = uow.session.get(Request, uuid.UUID(sc.params["request_id"]))
    assert req is not None
    path = uow.session.scalar(select(Tenant.path).where(Tenant.id == req.tenant_id)) or ""
    return req, path


def policy_of_request(uow: UnitOfWork, request_id: uuid.UUID) -> BackupPolicy | None:
    return uow.session.scalars(select(BackupPolicy).where(BackupPolicy.request_id == request_id)).first()


def _create_policy(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    req, path = _request(uow, sc)
    existing = policy_of_request(uow, req.id)
    if existing is not None:  # a re-run after a crash between this commit and the next step
        return {"policy": str(existing.id)}
    try:
        check_slug_free(uow, req)
    except Conflict as exc:
        raise PermanentFailure(exc.detail) from None
    spec, now = req.spec, uow.now()
    prefix = f"{path}/{spec['name']}"
    policy = BackupPolicy(
        tenant_id=req.tenant_id,
        system_id=req.system_id,
        request_id=req.id,
        slug=spec["name"],
        source_kind=(SourceKind.VM if spec.get("vm") else SourceKind.PATHS).value,
        source_paths=list(spec["paths"]),
        source_vm=spec.get("vm"),
        schedule=spec["schedule"],
        drill_schedule=spec.get("drill_schedule") or "0 4 * * 0",
        rpo_target_s=int(spec["rpo_target_s"]),
        retention=dict(spec.get("retention") or {"last": 7, "daily": 7, "weekly": 4, "monthly": 12}),
        source_region=req.region,
        target_region=spec["target_region"],
        repository_url=store_of(sc.worker).location(prefix),
        repository_prefix=prefix,
        password_sealed=sealer(sc.worker).seal(secrets.token_urlsafe(32)),
        state=PolicyState.ACTIVE.value,
        last_claimed_at=now,  # the first run is the schedule's first time after enrolment
        drill_last_claimed_at=now,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(policy)
    uow.session.flush()
    return {"policy": str(policy.id)}


def _undo_policy(sc: StepContext, uow: UnitOfWork) -> None:
    req, _ = _request(uow, sc)
    uow.session.execute(delete(BackupPolicy).where(BackupPolicy.request_id == req.id))


def _create_repository(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    """restic init at the DR site with DR credentials, find-or-create: a repository that already
    exists must open with the stored password, or an operator must look."""
    req, _ = _request(uow, sc)
    policy = policy_of_request(uow, req.id)
    if policy is None:
        raise OperatorError(f"request {req.id}: the policy row vanished before its repository was made")
    password = sealer(sc.worker).open(policy.password_sealed)
    dr = store_of(sc.worker).dr(policy.repository_prefix, password)
    if not backend_call(dr.ensure_initialised):
        backend_call(dr.snapshots)  # opens it: a wrong password raises (operator error) here
    with as_system(uow):
        ledger.commit(uow, owner_of(req.id))
    return {"repository": policy.repository_url, "committed": req.delta}


def _undo_repository(sc: StepContext, uow: UnitOfWork) -> None:
    """The (empty) repository stays at the DR site: deleting there is the DR operator's call."""
    req, path = _request(uow, sc)
    committed = sc.memo.get("committed") or {}
    if committed:
        with as_system(uow):
            ledger.release_used(
                uow, NodeKey(path, req.cloud, str(req.spec["target_region"])), committed, reason="compensated"
            )


register_step(KIND, Step("backup.policy", _create_policy, _undo_policy))
register_step(KIND, Step("backup.repository", _create_repository, _undo_repository))
