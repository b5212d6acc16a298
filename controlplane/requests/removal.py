"""Checks for the kinds that act on what other requests made: `volume-backup` and `deletion`
name a fulfilled request of the same tenant; `allocation-retirement` retires a whole allocation.

Each check runs when the request is created or edited, again at submit and at the last
approval, and once more in the operation's first step, so a target that changed meanwhile
is refused with the reason instead of being acted on twice.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from controlplane.db.uow import UnitOfWork
from controlplane.errors import Conflict, NotFound, ValidationFailed
from controlplane.ledger.models import Allocation, AllocationStatus
from controlplane.requests.models import Request
from controlplane.requests.specs import DELETABLE_KINDS, TARGET_FIELDS, RequestKind
from controlplane.requests.states import RequestState
from controlplane.tenants import service as tenants
from controlplane.tenants.models import Tenant

S = RequestState
# States in which a request holds (or is about to hold) a reservation or runs a step.
IN_FLIGHT = frozenset({S.SUBMITTED, S.PENDING_APPROVAL, S.APPROVED, S.PROVISIONING, S.FAILED, S.ERRORED})
# A draft deletion already blocks a second one: two deletions of one thing make no sense.
OPEN_FOR_TARGET = IN_FLIGHT | {S.DRAFT, S.RETURNED}


def target_of(
    uow: UnitOfWork, spec: Any, *, tenant_id: uuid.UUID, cloud: str, region: str, self_id: uuid.UUID | None = None
) -> Request | None:
    """The request `spec` names, locked, checked: None for kinds that name none.

    404 when it is not a request of this tenant (whoever else may see it); 422 when it is of
    the wrong kind or another cloud/region; 409 when it is not fulfilled, already deleted, or
    another request acting on it is open."""
    field = TARGET_FIELDS.get(spec.kind)
    if field is None:
        return None
    target_id = getattr(spec, field)
    target = uow.session.scalars(
        select(Request).where(Request.id == target_id).with_for_update().execution_options(populate_existing=True)
    ).first()
    if target is None or target.tenant_id != tenant_id:
        raise NotFound(f"request '{target_id}' not found in this tenant", field=f"spec.{field}")
    if spec.kind == RequestKind.VOLUME_BACKUP and target.kind != RequestKind.VOLUME:
        raise ValidationFailed(f"request '{target_id}' is a {target.kind} request, not a volume", field="spec.volume")
    if spec.kind == RequestKind.DELETION and target.kind not in DELETABLE_KINDS:
        raise ValidationFailed(
            f"a {target.kind} request made nothing to delete (deletable: {sorted(DELETABLE_KINDS)})",
            field="spec.target",
        )
    if (target.cloud, target.region) != (cloud, region):
        raise ValidationFailed(
            f"request '{target_id}' is in {target.cloud}/{target.region}, not {cloud}/{region}", field="region"
        )
    if target.state == S.RETIRED:
        raise Conflict(f"request '{target_id}' was already deleted", current_state=target.state, field=f"spec.{field}")
    if target.state != S.SUCCEEDED:
        raise Conflict(
            f"request '{target_id}' is {target.state}: only a fulfilled request can be named",
            current_state=target.state,
            field=f"spec.{field}",
        )
    blocking = _open_acting_on(uow, target.id, self_id, deletions_only=spec.kind != RequestKind.DELETION)
    if blocking is not None:
        raise Conflict(
            f"request '{blocking.id}' ({blocking.kind}, {blocking.state}) already acts on '{target_id}'",
            blocking_request=str(blocking.id),
            field=f"spec.{field}",
        )
    return target


def _open_acting_on(
    uow: UnitOfWork, target_id: uuid.UUID, self_id: uuid.UUID | None, *, deletions_only: bool
) -> Request | None:
    """A deletion of the target must wait for everything else acting on it (a backup being
    taken); a backup must not start on something being deleted."""
    stmt = select(Request).where(
        Request.target_id == target_id, col(Request.state).in_([s.value for s in OPEN_FOR_TARGET])
    )
    if deletions_only:
        stmt = stmt.where(Request.kind == RequestKind.DELETION.value)
    if self_id is not None:
        stmt = stmt.where(Request.id != self_id)
    return uow.session.scalars(stmt.order_by(Request.created_at).limit(1)).first()


def recheck_target(uow: UnitOfWork, req: Request) -> None:
    """At submit and at the last approval: the target may have changed since the draft."""
    if req.kind not in TARGET_FIELDS:
        return
    from controlplane.requests.service import SPEC_ADAPTER

    target_of(
        uow,
        SPEC_ADAPTER.validate_python(req.spec),
        tenant_id=req.tenant_id,
        cloud=req.cloud,
        region=req.region,
        self_id=req.id,
    )


# --- allocation retirement -----------------------------------------------------------------------


def allocation_of(uow: UnitOfWork, tenant: Tenant, cloud: str, region: str, *, lock: bool = False) -> Allocation:
    stmt = select(Allocation).where(
        Allocation.tenant_id == tenant.id, Allocation.cloud == cloud, Allocation.region == region
    )
    found = uow.session.scalars(stmt.with_for_update() if lock else stmt).first()
    if found is None:
        raise Conflict(
            f"{tenant.path} has no allocation in {cloud}/{region}: nothing to retire",
            field="region",
            blocker="no allocation",
        )
    if found.status == AllocationStatus.RETIRED:
        raise Conflict(f"the allocation {tenant.path}/{cloud}/{region} is already retired", current_state=found.status)
    return found


def retirement_blocker(uow: UnitOfWork, tenant: Tenant, cloud: str, region: str, self_id: uuid.UUID | None) -> None:
    """409 naming the first thing that still lives on the allocation: a child tenant's
    allocation below it (retire those first), or a request in flight on it."""
    child = uow.session.execute(
        select(Tenant.path)
        .join(Allocation, col(Allocation.tenant_id) == col(Tenant.id))
        .where(
            tenants.subtree_clause(tenant.path),
            Tenant.id != tenant.id,
            Allocation.cloud == cloud,
            Allocation.region == region,
            Allocation.status != AllocationStatus.RETIRED.value,
        )
        .order_by(Tenant.path)
        .limit(1)
    ).first()
    if child is not None:
        blocker = f"{child[0]}/{cloud}/{region}"
        raise Conflict(f"the child allocation {blocker} is live: retire it first", blocker=blocker, field="tenant")
    stmt = select(Request).where(
        Request.tenant_id == tenant.id,
        Request.cloud == cloud,
        Request.region == region,
        col(Request.state).in_([s.value for s in IN_FLIGHT]),
    )
    if self_id is not None:
        stmt = stmt.where(Request.id != self_id)
    busy = uow.session.scalars(stmt.order_by(Request.created_at).limit(1)).first()
    if busy is not None:
        raise Conflict(
            f"request '{busy.id}' ({busy.kind}) is {busy.state} on this allocation: let it finish or cancel it",
            blocker=f"request:{busy.id}",
            blocking_request=str(busy.id),
        )


def check_retirable(uow: UnitOfWork, req: Request) -> None:
    """At create, submit and the last approval of an `allocation-retirement`."""
    if req.kind != RequestKind.ALLOCATION_RETIREMENT:
        return
    tenant = uow.session.get(Tenant, req.tenant_id)
    assert tenant is not None
    allocation_of(uow, tenant, req.cloud, req.region)
    retirement_blocker(uow, tenant, req.cloud, req.region, req.id)
