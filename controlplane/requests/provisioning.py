"""Provisioning steps per request kind and the hooks that end the request with its operation.

Each creating step commits its resource's share of the reservation in the step's own
transaction; backends are find-or-create by tag, so a step re-run after a crash never makes
a second resource. The `simulated` backend is the embedded default (issue: the OpenStack,
Kubernetes and restic backends register their own steps for their kinds).
"""

from __future__ import annotations

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
    register_step,
)
from controlplane.operations.models import Operation, OperationState
from controlplane.requests import backends
from controlplane.requests import owners as _owners  # noqa: F401  (request-owned reservations)
from controlplane.requests.models import InformationSystem, Request
from controlplane.requests.service import as_system, move, owner_of
from controlplane.requests.specs import RequestKind
from controlplane.requests.states import RequestState
from controlplane.tenants.models import Tenant
from provisioners.errors import ResourceConflict
from provisioners.simulated import ServerSpec
from quotas import NodeKey

backend_call = backends.call
ansible = backends.ansible
simulated = backends.simulated


def _request(uow: UnitOfWork, sc: StepContext) -> tuple[Request, str]:
    req = uow.session.get(Request, uuid.UUID(sc.params["request_id"]))
    assert req is not None
    path = uow.session.scalar(select(Tenant.path).where(Tenant.id == req.tenant_id)) or ""
    return req, path


def server_tag(req: Request, index: int) -> str:
    """The n-th server of a VM request, as tagged in the backend (find-or-create key)."""
    return f"req-{req.id}-{index}"


def _tag(req: Request, index: int) -> str:
    return server_tag(req, index)


def _project(sc: StepContext, req: Request, path: str) -> Any:
    """(provisioner, project) of the allocation's OpenStack project, or None in simulated regions."""
    provisioner = backends.openstack(sc.worker, req.region)
    if provisioner is None:
        return None
    from provisioners.openstack import domain_name, project_name

    project = backend_call(provisioner.find_project, domain_name(path), project_name(path, req.cloud))
    if project is None:
        raise OperatorError(f"{path} has no OpenStack project for {req.cloud} in {req.region}: onboard it first")
    return provisioner, project


def _servers(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    req, path = _request(uow, sc)
    spec, count = req.spec, int(req.spec.get("count", 1))
    share = {k: v // count for k, v in req.delta.items()}
    ids = []
    target = _project(sc, req, path)
    for i in range(count):
        if target is not None:
            from provisioners.base import ServerSpec as OpenStackServer

            provisioner, project = target
            server = OpenStackServer(
                tag=_tag(req, i), flavor=spec["flavor"], image=spec["image"], name=spec.get("name")
            )
            ref = backend_call(provisioner.ensure_server, project, server)
        else:
            simulated_spec = ServerSpec(
                tag=_tag(req, i),
                project=f"{path}/{req.cloud}",
                flavor=spec["flavor"],
                image=spec["image"],
                vcpus=share.get("vcpus", 1),
                ram_mb=share.get("ram_mb", 1024),
            )
            ref = backend_call(simulated(sc.worker).ensure_server, simulated_spec)
        ids.append(ref.id)
        with as_system(uow):
            ledger.commit(uow, owner_of(req.id), share)  # this server's share, in the step's transaction
    return {"servers": ids, "committed": req.delta}


def _undo_servers(sc: StepContext, uow: UnitOfWork) -> None:
    req, path = _request(uow, sc)
    target = _project(sc, req, path)
    for i in range(int(req.spec.get("count", 1))):
        if target is not None:
            backend_call(target[0].delete_server, target[1], _tag(req, i))
        else:
            backend_call(simulated(sc.worker).delete_by_tag, _tag(req, i))
    committed = sc.memo.get("committed") or {}
    if committed:
        with as_system(uow):
            ledger.release_used(uow, NodeKey(path, req.cloud, req.region), committed, reason="compensated")


def _create_on_openstack(kind: str, target: tuple[Any, Any], req: Request) -> Any:
    """A volume in Cinder, or a bucket as a Swift container whose byte quota is the ledger's object_gb."""
    provisioner, project = target
    if kind == "bucket":
        from provisioners.openstack import quota_bytes

        size = quota_bytes(int(req.delta["object_gb"]))
        try:
            ref = backend_call(provisioner.ensure_bucket, project, _tag(req, 0), size, name=req.spec.get("name"))
        except OperatorError as exc:
            if isinstance(exc.__cause__, ResourceConflict):  # the name is another bucket's: the tenant picks another
                raise PermanentFailure(f"bucket name taken: {exc.__cause__}") from exc
            raise
        return ref.name
    from provisioners.base import VolumeSpec as OpenStackVolume

    volume = OpenStackVolume(tag=_tag(req, 0), size_gb=int(req.spec["size_gb"]), name=req.spec.get("name"))
    return backend_call(provisioner.ensure_volume, project, volume).id


def _resource(kind: str) -> Step:
    """Volumes (Cinder) and buckets (Swift) on OpenStack in OpenStack regions; the simulated
    backend elsewhere."""

    def run(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
        req, path = _request(uow, sc)
        target = _project(sc, req, path)
        if target is not None:
            resource = _create_on_openstack(kind, target, req)
        else:
            simulated_spec = ServerSpec(
                tag=_tag(req, 0), project=f"{path}/{req.cloud}", flavor=kind, image="-", vcpus=0, ram_mb=0
            )
            resource = backend_call(simulated(sc.worker).ensure_server, simulated_spec).id
        with as_system(uow):
            ledger.commit(uow, owner_of(req.id))
        return {"resource": resource, "committed": req.delta}

    def undo(sc: StepContext, uow: UnitOfWork) -> None:
        req, path = _request(uow, sc)
        target = _project(sc, req, path)
        if target is None:
            backend_call(simulated(sc.worker).delete_by_tag, _tag(req, 0))
        elif kind == "bucket":
            backend_call(target[0].delete_bucket, target[1], _tag(req, 0), name=req.spec.get("name"))
        else:
            backend_call(target[0].delete_volume, target[1], _tag(req, 0))
        committed = sc.memo.get("committed") or {}
        if committed:
            with as_system(uow):
                ledger.release_used(uow, NodeKey(path, req.cloud, req.region), committed, reason="compensated")

    return Step(f"{kind}.create", run, undo)


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


def vm_hosts(worker: Any, req: Request, path: str, tags: list[str]) -> list[Any] | None:
    """Inventory of a VM request's servers (by tag: their first fixed address, the Ansible user),
    or None where there is nothing to log in to (simulated servers). Used by the MLPS baseline
    and by backups of VM sources (``controlplane.backup.agent``).

    ``worker.extras["baseline_hosts"]`` replaces the lookup (tests point it at a throwaway Debian
    root through the chroot connection: no VM with an address can run here)."""
    from provisioners.ansible import Host

    override = worker.extras.get("baseline_hosts")
    if override is not None:
        return list(override(req, tags))
    provisioner = backends.openstack(worker, req.region)
    if provisioner is None:
        return None  # simulated servers have no operating system to reach
    from provisioners.openstack import domain_name, project_name

    project = backend_call(provisioner.find_project, domain_name(path), project_name(path, req.cloud))
    if project is None:
        raise OperatorError(f"{path} has no OpenStack project for {req.cloud} in {req.region}")
    hosts = []
    for tag in tags:
        ref = backend_call(provisioner.find_server, project, tag)
        if ref is None or not ref.addresses:
            raise OperatorError(f"server {tag} has no address: Ansible cannot reach it")
        hosts.append(Host(tag, ref.addresses[0], {"ansible_user": worker.settings.ansible_user}))
    return hosts


def _baseline_hosts(sc: StepContext, req: Request, path: str) -> list[Any] | None:
    return vm_hosts(sc.worker, req, path, [_tag(req, i) for i in range(int(req.spec.get("count", 1)))])


def _baseline(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    """The MLPS baseline (``playbooks/baseline.yml``) on every new server, in regions with
    ``baseline: true``; skipped, saying why, elsewhere. A failed task errors the operation (an
    operator looks: the server exists and is committed), an unreachable host is retried."""
    req, path = _request(uow, sc)
    region = next(r for r in sc.worker.site.regions if r.code == req.region)
    if not region.baseline:
        return {"baseline": f"off in region {req.region}"}
    hosts = _baseline_hosts(sc, req, path)
    if hosts is None:
        return {"baseline": "skipped: simulated servers"}
    system = uow.session.get(InformationSystem, req.system_id)
    level = system.mlps_level if system is not None else 2
    ports = [int(p) for p in req.spec.get("tcp_ports") or [22]]

    def progress(event: Any) -> None:
        if event.host is None:
            sc.progress(f"baseline: {event.task}")

    result = backend_call(
        ansible(sc.worker).baseline,
        hosts,
        mlps_level=level,
        tcp_ports=ports,
        ssh_private_key=backends.ssh_private_key(sc.worker),
        progress=progress,
    )
    backend_call(result.raise_for_status)
    return {"baseline": f"MLPS {level}: {result.ok} ok, {result.changed} changed on {len(hosts)} host(s)"}


register_step("request.vm", Step("servers.create", _servers, _undo_servers))
register_step("request.vm", Step("ansible.baseline", _baseline))


def _namespace_allocation(uow: UnitOfWork, req: Request, tenant_path: str, cpu_m: int, memory_mb: int) -> Any:
    from provisioners.kubernetes import NamespaceAllocation

    system = uow.session.get(InformationSystem, req.system_id)
    level = system.mlps_level if system is not None else 2
    return NamespaceAllocation(
        tenant_path=tenant_path,
        tenant_code=tenant_path.rsplit(".", 1)[-1],
        cloud=req.cloud,
        mlps_level=level,
        k8s_cpu_m=cpu_m,
        k8s_memory_mb=memory_mb,
        groups=(f"{tenant_path}--users",),
        direct_access=bool(req.spec.get("direct_access")),
    )


def _namespace(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    """A fenced namespace (quota, limits, view bindings, default-deny + same-tenant policy, the
    MLPS node selector) on the region's cluster; the simulated backend where there is none."""
    req, path = _request(uow, sc)
    kube = backends.kubernetes(sc.worker, req.region)
    if kube is None:
        ref = backend_call(
            simulated(sc.worker).ensure_server,
            ServerSpec(
                tag=_tag(req, 0), project=f"{path}/{req.cloud}", flavor="k8s-namespace", image="-", vcpus=0, ram_mb=0
            ),
        )
        name = ref.id
    else:
        allocation = _namespace_allocation(uow, req, path, int(req.spec["cpu_m"]), int(req.spec["memory_mb"]))
        name = backend_call(kube.ensure, allocation).namespace
    with as_system(uow):
        ledger.commit(uow, owner_of(req.id))
    return {"namespace": name, "committed": req.delta}


def _undo_namespace(sc: StepContext, uow: UnitOfWork) -> None:
    req, path = _request(uow, sc)
    kube = backends.kubernetes(sc.worker, req.region)
    if kube is None:
        backend_call(simulated(sc.worker).delete_by_tag, _tag(req, 0))
    else:
        allocation = _namespace_allocation(uow, req, path, int(req.spec["cpu_m"]), int(req.spec["memory_mb"]))
        backend_call(kube.retire, allocation)
    committed = sc.memo.get("committed") or {}
    if committed:
        with as_system(uow):
            ledger.release_used(uow, NodeKey(path, req.cloud, req.region), committed, reason="compensated")


register_step("request.k8s-namespace", Step("namespace.create", _namespace, _undo_namespace))
for _kind in ("volume", "bucket"):
    register_step(f"request.{_kind}", _resource(_kind))
register_step("request.quota-change", Step("ledger.set-limits", _quota_change))


def _openstack_onboarding(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    """Keystone domain/project/group/roles, quotas (direct-access slices only) and the default
    network on the zone's external network; flavors ensured first. Skipped in simulated regions."""
    req, path = _request(uow, sc)
    provisioner = backends.openstack(sc.worker, req.region)
    if provisioner is None:
        return {}
    from provisioners.base import FlavorSpec
    from provisioners.openstack import TenantOnboarding, quotas_from_limits

    target = req.spec.get("tenant") or path
    tenant = uow.session.scalars(select(Tenant).where(Tenant.path == target)).one()
    region = next(r for r in sc.worker.site.regions if r.code == req.region)
    external = region.external_networks.get(tenant.network_zone)
    if external is None:
        raise OperatorError(f"region {req.region} maps no external network for zone {tenant.network_zone}")
    backend_call(
        provisioner.ensure_flavors, [FlavorSpec(f.name, f.vcpus, f.ram_mb, f.disk_gb) for f in sc.worker.site.flavors]
    )
    direct = bool(req.spec.get("direct_access"))
    limits = req.spec.get("limits") or {}
    _removal_steps.lock_domain(uow, target, exclusive=False)  # no retirement empties the domain meanwhile

    def progress(part: str) -> None:
        sc.progress(f"openstack: {part} ready")
        backends.fault_point(f"openstack.{part}")

    done = backend_call(
        provisioner.onboard,
        TenantOnboarding(
            tenant_path=target,
            cloud=req.cloud,
            mlps_ceiling=tenant.mlps_ceiling,
            zone=tenant.network_zone,
            external_network=external,
            groups=(f"{target}--users",),
            direct_access=direct,
            quotas=quotas_from_limits(limits) if direct else quotas_from_limits({}),
        ),
        progress=progress,
    )
    return {"openstack_project": done.project.id, "openstack_domain": done.domain.id}


def _undo_openstack_onboarding(sc: StepContext, uow: UnitOfWork) -> None:
    req, path = _request(uow, sc)
    provisioner = backends.openstack(sc.worker, req.region)
    if provisioner is None:
        return
    from provisioners.openstack import domain_name, project_name

    target = req.spec.get("tenant") or path
    _removal_steps.lock_domain(uow, target, exclusive=True)
    project = backend_call(provisioner.find_project, domain_name(target), project_name(target, req.cloud))
    if project is not None:
        backend_call(provisioner.retire_project, project)


def _onboarding_namespace(sc: StepContext, uow: UnitOfWork) -> dict[str, Any]:
    """Onboarding into a region with a cluster fences a namespace sized by the allocation's k8s limits."""
    req, path = _request(uow, sc)
    kube = backends.kubernetes(sc.worker, req.region)
    limits = req.spec.get("limits") or {}
    if kube is None or limits.get("k8s_cpu_m") is None or limits.get("k8s_memory_mb") is None:
        return {}
    target = req.spec.get("tenant") or path
    allocation = _namespace_allocation(uow, req, target, int(limits["k8s_cpu_m"]), int(limits["k8s_memory_mb"]))
    return {"namespace": backend_call(kube.ensure, allocation).namespace}


def _undo_onboarding_namespace(sc: StepContext, uow: UnitOfWork) -> None:
    req, path = _request(uow, sc)
    kube = backends.kubernetes(sc.worker, req.region)
    limits = req.spec.get("limits") or {}
    if kube is not None and limits.get("k8s_cpu_m") is not None and limits.get("k8s_memory_mb") is not None:
        target = req.spec.get("tenant") or path
        backend_call(
            kube.retire, _namespace_allocation(uow, req, target, int(limits["k8s_cpu_m"]), int(limits["k8s_memory_mb"]))
        )


register_step("request.tenant-onboarding", Step("ledger.allocation", _onboarding))
register_step("request.tenant-onboarding", Step("openstack.onboard", _openstack_onboarding, _undo_openstack_onboarding))
register_step(
    "request.tenant-onboarding", Step("kubernetes.namespace", _onboarding_namespace, _undo_onboarding_namespace)
)


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

# backup enrolments: the policy and its repository at the DR site (registers its steps)
from controlplane.backup import enrolment as _enrolment  # noqa: E402, F401

# volume backups, deletions and allocation retirements (registers their steps)
from controlplane.requests import removal_steps as _removal_steps  # noqa: E402
