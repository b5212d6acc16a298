"""Provisioning steps per request kind and the hooks that end the request with its operation.

Each creating step commits its resource's share of the reservation in the step's own
transaction; backends are find-or-create by tag, so a step re-run after a crash never makes
a second resource. The `simulated` backend is the embedded default (issue: the OpenStack,
Kubernetes and restic backends register their own steps for their kinds).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from sqlalchemy import select

from controlplane.db.uow import UnitOfWork
from controlplane.ledger import service as ledger
from controlplane.ledger.allocations import insert_allocation
from controlplane.ledger.models import AllocationMode
from controlplane.operations.engine import (
    HOOKS,
    KindHooks,
    OperatorError,
    PermanentFailure,
    Step,
    StepContext,
    TransientError,
    register_step,
)
from controlplane.operations.models import Operation, OperationState
from controlplane.requests import owners as _owners  # noqa: F401  (request-owned reservations)
from controlplane.requests.models import Request
from controlplane.requests.service import as_system, move, owner_of
from controlplane.requests.specs import RequestKind
from controlplane.requests.states import RequestState
from controlplane.tenants.models import Tenant
from controlplane.worker.runtime import WorkerContext
from provisioners.errors import (
    BackendAuthError,
    BackendQuotaExceeded,
    CapacityExhausted,
    ProvisionerError,
    TransientBackendError,
)
from provisioners.simulated import ServerSpec, SimulatedCloud
from quotas import NodeKey


def simulated(ctx: WorkerContext) -> SimulatedCloud:
    cloud = ctx.extras.get("simulated")
    if cloud is None:
        cloud = SimulatedCloud(
            ctx.settings.data_dir / "simulated-cloud.sqlite3",
            fault=os.environ.get("CHUTIAN_FAULT"),
            boot_s=ctx.settings.simulated_boot_s,
        )
        ctx.extras["simulated"] = cloud
    return cloud


def backend_call(fn: Any, *args: Any) -> Any:
    """Provisioner errors → the engine's classes: retry, failed (tenant) or errored (operator)."""
    try:
        return fn(*args)
    except TransientBackendError as exc:
        raise TransientError(str(exc)) from exc
    except BackendQuotaExceeded as exc:
        raise PermanentFailure(str(exc)) from exc
    except (BackendAuthError, CapacityExhausted, ProvisionerError) as exc:
        raise OperatorError(str(exc)) from exc


def _request(uow: UnitOfWork, sc: StepContext) -> tuple[Request, str]:
    req = uow.session.get(Request, uuid.UUID(sc.params["request_id"]))
    assert req is not None
    path = uow.session.scalar(select(Tenant.path).where(Tenant.id == req.tenant_id)) or ""
    return req, path


def _tag(req: Request, index: int) -> str:
    return f"req-{req.id}-{index}"


def _servers(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    req, path = _request(uow, sc)
    spec, count = req.spec, int(req.spec.get("count", 1))
    share = {k: v // count for k, v in req.delta.items()}
    ids = []
    for i in range(count):
        ref = backend_call(
            simulated(sc.worker).ensure_server,
            ServerSpec(
                tag=_tag(req, i),
                project=f"{path}/{req.cloud}",
                flavor=spec["flavor"],
                image=spec["image"],
                vcpus=share.get("vcpus", 1),
                ram_mb=share.get("ram_mb", 1024),
            ),
        )
        ids.append(ref.id)
        with as_system(uow):
            ledger.commit(uow, owner_of(req.id), share)  # this server's share, in the step's transaction
    return {"servers": ids, "committed": req.delta}


def _undo_servers(sc: StepContext, uow: UnitOfWork) -> None:
    req, path = _request(uow, sc)
    for i in range(int(req.spec.get("count", 1))):
        backend_call(simulated(sc.worker).delete_by_tag, _tag(req, i))
    committed = sc.memo.get("committed") or {}
    if committed:
        with as_system(uow):
            ledger.release_used(uow, NodeKey(path, req.cloud, req.region), committed, reason="compensated")


def _resource(kind: str) -> Step:
    """Volumes, buckets, namespaces and backup enrolments on the simulated backend."""

    def run(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
        req, path = _request(uow, sc)
        ref = backend_call(
            simulated(sc.worker).ensure_server,
            ServerSpec(tag=_tag(req, 0), project=f"{path}/{req.cloud}", flavor=kind, image="-", vcpus=0, ram_mb=0),
        )
        with as_system(uow):
            ledger.commit(uow, owner_of(req.id))
        return {"resource": ref.id, "committed": req.delta}

    def undo(sc: StepContext, uow: UnitOfWork) -> None:
        req, path = _request(uow, sc)
        backend_call(simulated(sc.worker).delete_by_tag, _tag(req, 0))
        committed = sc.memo.get("committed") or {}
        if committed:
            region = req.spec["target_region"] if req.kind == RequestKind.BACKUP_ENROLMENT.value else req.region
            with as_system(uow):
                ledger.release_used(uow, NodeKey(path, req.cloud, region), committed, reason="compensated")

    return Step(f"simulated.{kind}", run, undo)


def _quota_change(sc: StepContext, uow: UnitOfWork) -> None:
    req, path = _request(uow, sc)
    with as_system(uow):
        ledger.set_limits(uow, NodeKey(path, req.cloud, req.region), req.spec["limits"])


def _onboarding(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    req, path = _request(uow, sc)
    target = req.spec.get("tenant") or path
    with as_system(uow):
        allocation = insert_allocation(
            uow,
            target,
            req.cloud,
            req.region,
            AllocationMode(req.spec["mode"]),
            req.spec.get("limits") or {},
            direct_access=bool(req.spec.get("direct_access")),
            actor=f"request:{req.id}",
        )
    return {"allocation": str(allocation.id)}


register_step("request.vm", Step("simulated.servers", _servers, _undo_servers))
for _kind in ("volume", "bucket", "k8s-namespace", "backup-enrolment"):
    register_step(f"request.{_kind}", _resource(_kind))
register_step("request.quota-change", Step("ledger.set-limits", _quota_change))
register_step("request.tenant-onboarding", Step("ledger.allocation", _onboarding))


def _on_success(uow: UnitOfWork, op: Operation) -> None:
    req = uow.session.get(Request, uuid.UUID(op.params["request_id"]))
    assert req is not None
    path = uow.session.scalar(select(Tenant.path).where(Tenant.id == req.tenant_id)) or ""
    with as_system(uow):
        ledger.release(uow, owner_of(req.id), reason="provisioned")  # nothing is left reserved
    move(uow, req, RequestState.SUCCEEDED, actor="worker", reason=None, path=path)


def _on_failure(uow: UnitOfWork, op: Operation, state: OperationState) -> None:
    req = uow.session.get(Request, uuid.UUID(op.params["request_id"]))
    assert req is not None
    path = uow.session.scalar(select(Tenant.path).where(Tenant.id == req.tenant_id)) or ""
    if op.memo.get("compensated", True):
        with as_system(uow):  # after compensation: release the rest (used was given back by the undo)
            ledger.release(uow, owner_of(req.id), reason=f"operation {state.value}")
    # errored without compensation keeps its reservation: the operator queue lists it
    target = RequestState.FAILED if state == OperationState.FAILED else RequestState.ERRORED
    move(uow, req, target, actor="worker", reason=op.last_error, path=path)


for _kind in RequestKind:
    HOOKS[f"request.{_kind.value}"] = KindHooks(on_success=_on_success, on_failure=_on_failure)
