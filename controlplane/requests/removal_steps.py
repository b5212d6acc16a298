"""Operation steps of `volume-backup`, `deletion` and `allocation-retirement`.

Everything is found and deleted by the tags the creating steps gave (`req-<id>-<n>`), so a
retried step finds nothing left and succeeds. Giving quota back and marking what was deleted
`retired` happen in the step's own transaction, together with the step being recorded done:
a deleted resource is released once and can never be named again.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from controlplane.audit.record import AuditRecord
from controlplane.db.uow import UnitOfWork
from controlplane.errors import Conflict
from controlplane.ledger import service as ledger
from controlplane.ledger.chain import load_chain
from controlplane.ledger.models import Allocation, AllocationStatus, QuotaNode, Reservation
from controlplane.operations.engine import OperatorError, PermanentFailure, Step, StepContext, register_step
from controlplane.requests import backends, removal
from controlplane.requests.models import Request
from controlplane.requests.provisioning import _namespace_allocation, _project, _request, _tag
from controlplane.requests.service import as_system, move, owner_of
from controlplane.requests.specs import DELETABLE_KINDS
from controlplane.requests.states import RequestState
from controlplane.tenants.models import Tenant
from provisioners.simulated import ServerSpec
from quotas import NodeKey

call = backends.call
# What a request of these kinds made lives in the allocation's OpenStack project (OpenStack regions).
IN_PROJECT = frozenset({"vm", "volume", "volume-backup", "bucket"})


def lock_domain(uow: UnitOfWork, tenant_path: str, *, exclusive: bool) -> None:
    """Serialise retirement with onboarding in one Keystone domain (a city or department):
    deleting an empty domain must not race a project being made in it. Onboarding takes the
    domain's tenant row FOR SHARE (onboardings run side by side), retirement FOR NO KEY UPDATE.
    On SQLite a write unit holds the database lock anyway."""
    domain_path = ".".join(tenant_path.split(".")[:2])
    uow.session.execute(
        select(Tenant.id).where(Tenant.path == domain_path).with_for_update(read=not exclusive, key_share=exclusive)
    ).first()


def _locked(uow: UnitOfWork, request_id: uuid.UUID | None) -> Request:
    found = uow.session.scalars(
        select(Request).where(Request.id == request_id).with_for_update().execution_options(populate_existing=True)
    ).first()
    if found is None:
        raise OperatorError(f"request '{request_id}' is gone")
    return found


def _tags(target: Request) -> list[str]:
    return [_tag(target, i) for i in range(int(target.spec.get("count", 1)))]


def _openstack_project(sc: StepContext, target: Request, path: str) -> tuple[Any, Any] | None:
    """(provisioner, project or None) in OpenStack regions; None elsewhere."""
    provisioner = backends.openstack(sc.worker, target.region)
    if provisioner is None:
        return None
    from provisioners.openstack import domain_name, project_name

    return provisioner, call(provisioner.find_project, domain_name(path), project_name(path, target.cloud))


def delete_made_by(sc: StepContext, uow: UnitOfWork, target: Request, path: str, *, sweep_follows: bool = False) -> int:
    """Delete exactly what `target` made, by its tags; how many were still there.

    ``sweep_follows``: the allocation's project is retired next, which deletes what lives in
    it in one pass (servers in parallel), so those are left to it."""
    if target.kind == "k8s-namespace":
        kube = backends.kubernetes(sc.worker, target.region)
        if kube is not None:
            spec = target.spec
            namespace = _namespace_allocation(uow, target, path, int(spec["cpu_m"]), int(spec["memory_mb"]))
            return int(bool(call(kube.retire, namespace)))
    elif target.kind in IN_PROJECT and backends.openstack(sc.worker, target.region) is not None:
        if sweep_follows:
            return 0
        found = _openstack_project(sc, target, path)
        if found is not None:
            provisioner, project = found
            if project is None:
                return 0  # no project: nothing of it is left
            if target.kind == "bucket":  # a Swift container, objects first
                return int(
                    bool(call(provisioner.delete_bucket, project, _tag(target, 0), name=target.spec.get("name")))
                )
            delete = {
                "vm": provisioner.delete_server,
                "volume": provisioner.delete_volume,
                "volume-backup": provisioner.delete_volume_backup,
            }[target.kind]
            return sum(bool(call(delete, project, tag)) for tag in _tags(target))
    # simulated regions
    cloud = backends.simulated(sc.worker)
    return sum(bool(call(cloud.delete_by_tag, tag)) for tag in _tags(target))


def _release_used(uow: UnitOfWork, target: Request, path: str) -> dict[str, int]:
    """Give back what `target` committed, capped by what the node still counts as used (an
    operator may have applied a usage report meanwhile): never below zero, never twice."""
    key = NodeKey(path, target.cloud, target.region)
    with as_system(uow):
        used = ledger.read_chain(uow, key).leaf.used
        amount = {r: min(int(a), int(used.get(r, 0))) for r, a in sorted(target.delta.items())}
        amount = {r: a for r, a in amount.items() if a > 0}
        if amount:
            ledger.release_used(uow, key, amount, reason=f"deleted: request {target.id}")
    return amount


# --- volume-backup ----------------------------------------------------------------------------------


def _volume_backup(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    """The backup of the named volume, found or created by its tag, waited for until available
    (`backup_timeout_s`); its backup_gb is committed in this step's transaction."""
    req, path = _request(uow, sc)
    volume = _locked(uow, req.target_id)
    if volume.state != RequestState.SUCCEEDED:
        raise PermanentFailure(f"volume request {volume.id} is {volume.state}: there is no volume to back up")
    target = _project(sc, req, path)
    if target is not None:
        made = call(target[0].ensure_volume_backup, target[1], _tag(volume, 0), _tag(req, 0)).id
    else:
        cloud = backends.simulated(sc.worker)
        if cloud.find(_tag(volume, 0)) is None:
            raise OperatorError(f"the volume of request {volume.id} is missing from the simulated backend")
        spec = ServerSpec(
            tag=_tag(req, 0),
            project=f"{path}/{req.cloud}",
            flavor="volume-backup",
            image=_tag(volume, 0),
            vcpus=0,
            ram_mb=0,
        )
        made = call(cloud.ensure_server, spec).id
    with as_system(uow):
        ledger.commit(uow, owner_of(req.id))
    return {"backup": made, "committed": req.delta}


def _undo_volume_backup(sc: StepContext, uow: UnitOfWork) -> None:
    req, path = _request(uow, sc)
    delete_made_by(sc, uow, req, path)
    committed = sc.memo.get("committed") or {}
    if committed:
        with as_system(uow):
            ledger.release_used(uow, NodeKey(path, req.cloud, req.region), committed, reason="compensated")


# --- deletion ---------------------------------------------------------------------------------------


def _deletion(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    req, path = _request(uow, sc)
    target = _locked(uow, req.target_id)
    if target.state == RequestState.RETIRED:
        return {"deleted": 0, "released": {}, "note": "already retired"}
    if target.state != RequestState.SUCCEEDED or target.kind not in DELETABLE_KINDS:
        raise PermanentFailure(f"request {target.id} ({target.kind}) is {target.state}: nothing to delete")
    deleted = delete_made_by(sc, uow, target, path)
    released = _release_used(uow, target, path)
    move(uow, target, RequestState.RETIRED, actor=f"request:{req.id}", reason=f"deleted by request {req.id}", path=path)
    return {"deleted": deleted, "released": released}


# --- allocation-retirement --------------------------------------------------------------------------


def _retiring(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    """Nothing may live on or below the allocation; from here on it admits no reservation.

    The leaf's ledger row is locked first, as a reservation does, so a reservation either
    committed before (and its request blocks us) or sees the allocation retiring."""
    req, path = _request(uow, sc)
    tenant = uow.session.get(Tenant, req.tenant_id)
    assert tenant is not None
    load_chain(uow, NodeKey(path, req.cloud, req.region), lock=True)
    try:
        allocation = removal.allocation_of(uow, tenant, req.cloud, req.region, lock=True)
        removal.retirement_blocker(uow, tenant, req.cloud, req.region, req.id)
    except Conflict as exc:
        raise PermanentFailure(exc.detail) from exc
    if allocation.status == AllocationStatus.ACTIVE:
        _mark(uow, allocation, req, path, AllocationStatus.RETIRING, "allocation.retiring")
    return {"allocation": str(allocation.id)}


def _mark(
    uow: UnitOfWork,
    allocation: Allocation,
    req: Request,
    path: str,
    status: AllocationStatus,
    action: str,
    **extra: Any,
) -> None:
    """Move the allocation to ``status`` on behalf of ``req``, audited."""
    before = allocation.status
    allocation.status, allocation.updated_at = status.value, uow.now()
    allocation.status_reason = f"retired by request {req.id}"
    uow.audit(
        AuditRecord(
            action,
            "allocation",
            str(NodeKey(path, req.cloud, req.region)),
            tenant_path=path,
            before={"status": before},
            after={"status": status.value},
            extra={"request": str(req.id), **extra},
        )
    )


def _live_requests(uow: UnitOfWork, req: Request) -> list[Request]:
    return list(
        uow.session.scalars(
            select(Request)
            .where(
                Request.tenant_id == req.tenant_id,
                Request.cloud == req.cloud,
                Request.region == req.region,
                col(Request.kind).in_(sorted(DELETABLE_KINDS)),
                Request.state == RequestState.SUCCEEDED.value,
            )
            .order_by(Request.created_at)
            .with_for_update()
        )
    )


def _retire_resources(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    """Everything the allocation's requests made, by tag (the project sweep follows for what
    lives in OpenStack); those requests end `retired`, so none can be deleted again."""
    req, path = _request(uow, sc)
    live = _live_requests(uow, req)
    deleted = 0
    for target in live:
        deleted += delete_made_by(sc, uow, target, path, sweep_follows=True)
        move(uow, target, RequestState.RETIRED, actor=f"request:{req.id}", reason="allocation retired", path=path)
    return {"retired_requests": len(live), "deleted_by_tag": deleted}


def _retire_project(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    """The allocation's OpenStack project and everything in it (Nova, Cinder, Neutron, Glance),
    quotas reverted, and the domain when it is left empty. Skipped in simulated regions."""
    req, path = _request(uow, sc)
    provisioner = backends.openstack(sc.worker, req.region)
    if provisioner is None:
        return {}
    from provisioners.openstack import domain_name, project_name

    lock_domain(uow, path, exclusive=True)
    project = call(provisioner.find_project, domain_name(path), project_name(path, req.cloud))
    if project is None:
        return {"openstack": "no project left"}
    report = call(provisioner.retire_project, project)
    return {
        "openstack_deleted": dict(report.deleted),
        "project_deleted": report.project_deleted,
        "domain_deleted": report.domain_deleted,
    }


def _retire_namespace(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    """The (tenant, cloud) namespace where the region has a cluster (the cluster deletes its content)."""
    req, path = _request(uow, sc)
    kube = backends.kubernetes(sc.worker, req.region)
    if kube is None:
        return {}
    return {"namespace_deleted": bool(call(kube.retire, _namespace_allocation(uow, req, path, 0, 0)))}


def _retire_ledger(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    """Release every reservation and all used at the node, give a slice back to its parent
    (limits to 0), and mark the allocation retired."""
    req, path = _request(uow, sc)
    tenant = uow.session.get(Tenant, req.tenant_id)
    assert tenant is not None
    key = NodeKey(path, req.cloud, req.region)
    allocation = removal.allocation_of(uow, tenant, req.cloud, req.region, lock=True)
    with as_system(uow):
        leaf_id = uow.session.scalar(select(QuotaNode.id).where(QuotaNode.allocation_id == allocation.id))
        owners = uow.session.scalars(select(Reservation.owner).where(Reservation.node_id == leaf_id)).all()
        for owner in owners:
            ledger.release(uow, owner, reason="allocation retired")
        leaf = ledger.read_chain(uow, key).leaf
        released = {r: int(a) for r, a in leaf.used.items()}
        if released:
            ledger.release_used(uow, key, released, reason="allocation retired")
        if leaf.limits:
            ledger.set_limits(uow, key, {r: 0 for r in leaf.limits}, force=True)
    _mark(
        uow,
        allocation,
        req,
        path,
        AllocationStatus.RETIRED,
        "allocation.retire",
        released_used=released,
        released_reservations=list(owners),
    )
    return {"released_used": released, "released_reservations": len(owners)}


register_step("request.volume-backup", Step("volume-backup.create", _volume_backup, _undo_volume_backup))
register_step("request.deletion", Step("resources.delete", _deletion))
for _step in (
    Step("allocation.retiring", _retiring),
    Step("resources.delete", _retire_resources),
    Step("openstack.retire", _retire_project),
    Step("kubernetes.retire", _retire_namespace),
    Step("ledger.retire", _retire_ledger),
):
    register_step("request.allocation-retirement", _step)
