"""Backups of VM sources, through the backup agent (`playbooks/backup-agent.yml`).

The policy names a VM request (`<request id>`, or `<request id>/<n>` for its n-th server);
its server is reached like the MLPS baseline reaches it (`requests.provisioning.vm_hosts`:
the server's fixed address and the Ansible user; tests replace the lookup with
`extras["baseline_hosts"]`). One Ansible run (ansible-runner) installs or refreshes the agent
(restic, and the repository's URL, password and backend credentials in 0600 files) and then
runs `restic backup --json` on the host, writing through the append-only gateway; its status
lines come back every second and become the run's progress, its summary and exit code are
judged by the same code as a local backup (`Restic.backup_result`). The agent also hashes a
sample of the source files for the manifest. What counts is still read at the DR site with
DR credentials (`runner._verify`), never the agent's own report.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select

from controlplane.backup.store import store_of
from controlplane.db.uow import UnitOfWork, run_in_unit
from controlplane.errors import ValidationFailed
from controlplane.operations.engine import OperatorError, PermanentFailure, TransientError
from controlplane.requests.models import Request
from controlplane.tenants.models import Tenant
from controlplane.worker.runtime import WorkerContext
from provisioners.errors import BackendMisconfigured, BackendResourceFailed
from provisioners.restic import BackupProgress, BackupResult

FOLLOW_TASK = "Follow the backup"
OUTCOME_TASK = "Backup outcome"
SAMPLE_TASK = "Sample the source"
SAMPLE_FILES = 32
AGENT_TIMEOUT_S = 86400.0  # as backup-agent.yml's backup_timeout_s: a local restic run has no limit either


class AgentUnavailable(BackendMisconfigured):
    """The VM cannot be backed up from here (no server to reach, no gateway it can write to)."""


def parse_vm_ref(value: str) -> tuple[uuid.UUID, int | None]:
    """`<request id>` or `<request id>/<n>`; ValidationFailed (422) otherwise."""
    head, _, index = value.partition("/")
    try:
        request_id = uuid.UUID(head)
        number = int(index) if index else None
    except ValueError:
        raise ValidationFailed(
            "vm: give the VM request's id, or '<request id>/<n>' for its n-th server", field="spec.vm"
        ) from None
    if number is not None and number < 0:
        raise ValidationFailed("vm: the server number starts at 0", field="spec.vm")
    return request_id, number


def check_vm_source(uow: UnitOfWork, req: Request) -> None:
    """At submit: `vm` names a succeeded VM request of the same tenant and region, and one of its
    servers (a request of several servers needs `/<n>`)."""
    value = req.spec.get("vm")
    if not value:
        return
    request_id, number = parse_vm_ref(str(value))
    vm = uow.session.get(Request, request_id)
    if vm is None or vm.tenant_id != req.tenant_id or vm.spec.get("kind") != "vm":
        raise ValidationFailed(f"vm: no VM request '{request_id}' of this tenant", field="spec.vm")
    if vm.region != req.region:
        raise ValidationFailed(
            f"vm: the VM runs in {vm.region}, the enrolment is for {req.region}: enrol from the VM's region",
            field="spec.vm",
        )
    if vm.state != "succeeded":
        raise ValidationFailed(f"vm: the VM request is {vm.state}, not succeeded", field="spec.vm")
    count = int(vm.spec.get("count", 1))
    if number is None and count > 1:
        raise ValidationFailed(
            f"vm: the request has {count} servers: name one as '{request_id}/<n>' (0-{count - 1})", field="spec.vm"
        )
    if number is not None and number >= count:
        raise ValidationFailed(f"vm: the request has {count} server(s): 0-{count - 1}", field="spec.vm")


def _host(ctx: WorkerContext, source_vm: str) -> Any:
    from controlplane.requests.provisioning import server_tag, vm_hosts

    try:
        request_id, number = parse_vm_ref(source_vm)
    except ValidationFailed as exc:
        raise AgentUnavailable(exc.detail, backend="backup-agent") from None

    def load(uow: UnitOfWork) -> tuple[Request | None, str]:
        req = uow.session.get(Request, request_id)
        path = uow.session.scalar(select(Tenant.path).where(Tenant.id == req.tenant_id)) if req else None
        if req is not None:
            uow.session.expunge(req)
        return req, path or ""

    req, path = run_in_unit(ctx.engine, load, clock=ctx.clock)
    if req is None:
        raise AgentUnavailable(f"the VM request {request_id} is gone", backend="backup-agent")
    try:
        hosts = vm_hosts(ctx, req, path, [server_tag(req, number or 0)])
    except (OperatorError, TransientError, PermanentFailure) as exc:  # the lookup's engine errors
        raise AgentUnavailable(f"cannot reach the VM: {exc}", backend="backup-agent") from None
    if hosts is None:
        raise AgentUnavailable(
            f"the VM of request {request_id} is a simulated server: it has no operating system to back up",
            backend="backup-agent",
        )
    return hosts


class _Collector:
    """The agent's task results: status lines → progress, the outcome and the sample kept."""

    def __init__(self, on_progress: Callable[[BackupProgress], None], read_line: Callable[[str], None]) -> None:
        self.on_progress = on_progress
        self.read_line = read_line
        self.outcome: str | None = None
        self.sample: dict[str, tuple[int, str]] = {}

    def __call__(self, task: str, host: str, result: Mapping[str, Any]) -> None:
        stdout = str(result.get("stdout") or "")
        if task == FOLLOW_TASK:
            for line in stdout.splitlines():
                self.read_line(line)
        elif task == OUTCOME_TASK:
            self.outcome = stdout
        elif task == SAMPLE_TASK:
            try:
                doc = json.loads(stdout.strip().splitlines()[-1] if stdout.strip() else "{}")
            except ValueError:
                doc = {}
            self.sample = {
                str(path): (int(size), str(sha)) for path, (size, sha) in (doc.items() if isinstance(doc, dict) else [])
            }


def _split(outcome: str) -> tuple[list[str], list[str], int]:
    stdout, _, rest = outcome.partition("=== stderr\n")
    stderr, _, rc = rest.partition("=== rc\n")
    try:
        code = int(rc.strip() or "-1")
    except ValueError:
        code = -1
    return stdout.splitlines(), stderr.splitlines(), code


def backup_on_vm(
    ctx: WorkerContext, view: Any, on_progress: Callable[[BackupProgress], None]
) -> tuple[BackupResult, dict[str, tuple[int, str]]]:
    """Install/refresh the agent and run one backup on the VM; the result and the agent's sample
    (path → size, SHA-256). Raises provisioner errors (the run then ends `failed`)."""
    from controlplane.requests import backends

    store = store_of(ctx)
    if not store.append_only:
        raise AgentUnavailable(
            "VM sources write through the append-only gateway (CHUTIAN_DR_GATEWAY_URL): a VM cannot reach "
            "the worker's local DR store",
            backend="backup-agent",
        )
    hosts = _host(ctx, str(view.source_vm))
    city = store.city(view.prefix, view.password)
    collector = _Collector(on_progress, city.backup_output_reader(on_progress))
    played = backends.ansible(ctx).backup_agent(
        hosts,
        policy=view.slug,
        repository=city.repository.url,
        password=view.password,
        backup_args=city.backup_command(view.paths, tags=view.tags, host=view.host),
        sample_files=SAMPLE_FILES,
        ssh_private_key=backends.ssh_private_key(ctx),
        timeout_s=AGENT_TIMEOUT_S,  # the runner's default (30 min) would cut a long first copy
        on_result=collector,
    )
    if collector.outcome is None:  # the playbook failed before restic ended: its own error
        played.raise_for_status()
        raise BackendResourceFailed("backup-agent.yml reported no backup outcome", backend="backup-agent")
    stdout, stderr, rc = _split(collector.outcome)
    return city.backup_result(stdout, stderr, rc), collector.sample
