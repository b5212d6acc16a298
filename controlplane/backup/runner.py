"""One backup run, end to end, as the worker executes it.

1. claim the row (scheduled → running, with a lease a keeper renews);
2. `restic backup --json` on the city side (through the append-only gateway), its status
   lines written into the run's `progress` (throttled, each in its own small transaction);
3. uploaded → **verified**: the snapshot must be listed by `restic snapshots --json` read at
   the DR site with DR credentials, and a `restic check --read-data-subset` started after it
   must pass. The outcome is read from the repository at the DR site, never from the city;
4. the manifest: `restic ls --json` of the snapshot plus SHA-256 of a sampled subset of files;
5. retention at the DR side only (forget the ids `backup.retention` picks, then prune).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from backup.retention import RecoveryPoint, RetentionPolicy, apply_retention
from backup.states import RunState, transition
from controlplane.backup.enrolment import sealer
from controlplane.backup.leases import LeaseKeeper, claim, lease_of, owner_name
from controlplane.backup.models import VERIFIED_STATES, BackupPolicy, BackupRun, SourceKind
from controlplane.backup.store import store_of
from controlplane.db.uow import UnitOfWork, run_in_unit
from controlplane.tenants.models import Tenant
from controlplane.worker.runtime import WorkerContext
from provisioners.errors import ProvisionerError
from provisioners.restic import BackupProgress, BackupResult, LsEntry, Restic

log = logging.getLogger(__name__)

SAMPLE_FILES = 32  # files hashed into the manifest at backup time
PROGRESS_EVERY_S = 1.0


class RunFailed(Exception):
    """The run ends `failed` with this reason."""


@dataclass(frozen=True)
class PolicyView:
    """What a run needs of its policy, read once (the session is not kept across restic calls)."""

    id: uuid.UUID
    slug: str
    tenant_path: str
    source_kind: str
    source_vm: str | None
    paths: list[str]
    source_region: str
    target_region: str
    prefix: str
    password: str
    retention: dict[str, int]

    @property
    def host(self) -> str:
        return self.tenant_path  # restic's --host: the tenant, so snapshots group per tenant

    @property
    def tags(self) -> list[str]:
        code = self.tenant_path.rsplit(".", 1)[-1]
        return [
            f"tenant={code}",
            f"policy={self.slug}",
            f"source={self.source_region}",
            f"target={self.target_region}",
        ]


def policy_view(ctx: WorkerContext, uow: UnitOfWork, policy_id: uuid.UUID) -> PolicyView:
    policy = uow.session.get(BackupPolicy, policy_id)
    assert policy is not None
    path = uow.session.scalar(select(Tenant.path).where(Tenant.id == policy.tenant_id)) or ""
    return PolicyView(
        id=policy.id,
        slug=policy.slug,
        tenant_path=path,
        source_kind=policy.source_kind,
        source_vm=policy.source_vm,
        paths=list(policy.source_paths),
        source_region=policy.source_region,
        target_region=policy.target_region,
        prefix=policy.repository_prefix,
        password=sealer(ctx).open(policy.password_sealed),
        retention=dict(policy.retention),
    )


def _update(ctx: WorkerContext, run_id: uuid.UUID, held_by: str, **values: Any) -> bool:
    """Write to the run only while we still hold it (the reaper may have ended it)."""

    def work(uow: UnitOfWork) -> bool:
        result = uow.session.execute(
            update(BackupRun)
            .where(BackupRun.id == run_id, BackupRun.owner == held_by)
            .values(updated_at=uow.now(), **values)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    return bool(run_in_unit(ctx.engine, work, clock=ctx.clock))


def _move(
    ctx: WorkerContext, run_id: uuid.UUID, owner: str, current: RunState, target: RunState, **values: Any
) -> None:
    transition(current, target)  # the table decides; an illegal move is a bug, not a state
    if target in (RunState.VERIFIED, RunState.PARTIALLY_FAILED, RunState.FAILED):
        values |= {"finished_at": ctx.clock(), "owner": None, "lease_expires_at": None}
    if not _update(ctx, run_id, owner, state=target.value, **values):
        raise RunFailed("lease lost: another worker or the reaper took the run")


def _sample(entries: list[LsEntry], snapshot_id: str) -> dict[str, str]:
    """SHA-256 of a stable pseudo-random subset of the snapshot's files, read from the source
    right after the backup; a file whose size or mtime changed since is left out (not a mismatch)."""
    files = [e for e in entries if e.type == "file"]
    files.sort(key=lambda e: hashlib.sha256(f"{snapshot_id}|{e.path}".encode()).digest())
    sums: dict[str, str] = {}
    for entry in files[:SAMPLE_FILES]:
        source = Path(entry.path)
        try:
            if source.stat().st_size != entry.size:
                continue
            sums[entry.path] = hashlib.sha256(source.read_bytes()).hexdigest()
        except OSError:
            continue
    return sums


def _agent_sample(entries: list[LsEntry], sample: dict[str, tuple[int, str]]) -> dict[str, str]:
    """The VM agent's hashes, kept only for files the DR side lists with the same size."""
    sizes = {e.path: e.size for e in entries if e.type == "file"}
    return {path: sha for path, (size, sha) in sample.items() if sizes.get(path) == size}


def manifest_of(dr: Restic, snapshot_id: str, sample: dict[str, tuple[int, str]] | None = None) -> dict[str, Any]:
    """`restic ls` at the DR side plus the sampled SHA-256s (read here, or by the VM's agent)."""
    entries = dr.ls(snapshot_id)
    return {
        "snapshot": snapshot_id,
        "entries": [{"path": e.path, "type": e.type, "size": e.size} for e in entries],
        "files": sum(1 for e in entries if e.type == "file"),
        "bytes": sum(e.size for e in entries if e.type == "file"),
        "sampled_sha256": _sample(entries, snapshot_id) if sample is None else _agent_sample(entries, sample),
    }


def verified_snapshot_ids(uow: UnitOfWork, policy_id: uuid.UUID) -> set[str]:
    return {
        sid
        for sid in uow.session.scalars(
            select(BackupRun.snapshot_id).where(
                BackupRun.policy_id == policy_id, col(BackupRun.state).in_(VERIFIED_STATES)
            )
        )
        if sid
    }


def apply_dr_retention(ctx: WorkerContext, view: PolicyView, dr: Restic) -> dict[str, Any]:
    """Retention at the DR side only: forget what `apply_retention` drops, then prune."""
    verified = run_in_unit(ctx.engine, lambda uow: verified_snapshot_ids(uow, view.id), clock=ctx.clock)
    points = [
        RecoveryPoint(s.id, s.time, verified=s.id in verified, site=view.target_region)
        for s in dr.snapshots(tags=[f"policy={view.slug}"], host=view.host)
    ]
    decision = apply_retention(points, RetentionPolicy(**view.retention))
    forget = sorted(decision.forget_ids)
    if forget:
        dr.forget(forget)
        dr.prune()
    return {"kept": len(decision.keep), "forgotten": forget}


def _throttled(
    ctx: WorkerContext, run_id: uuid.UUID, owner: str, on_progress: Callable[[dict[str, Any]], None]
) -> Callable[[BackupProgress], None]:
    """restic status lines → the run's `progress` (at most once a second, each its own small
    transaction, only while we hold the run) and to the caller (the CLI's bar) every time."""
    last = [0.0]

    def progress(p: BackupProgress) -> None:
        doc = {
            "percent_done": p.percent_done,
            "bytes_done": p.bytes_done,
            "total_bytes": p.total_bytes,
            "files_done": p.files_done,
            "total_files": p.total_files,
            "seconds_remaining": p.seconds_remaining,
        }
        on_progress(doc)
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            _update(ctx, run_id, owner, progress=doc)

    return progress


@dataclass
class Timing:
    """Where a run's upload time goes: the restic process (or the agent's playbook) against the
    control plane's own work around it (claim, policy, row updates); the benchmark reads it."""

    claimed: float = 0.0
    engine_started: float = 0.0
    engine_done: float = 0.0

    def as_doc(self) -> dict[str, float]:
        return {
            "before_engine_s": round(self.engine_started - self.claimed, 4),
            "engine_s": round(self.engine_done - self.engine_started, 4),
        }


def _backup(
    ctx: WorkerContext,
    view: PolicyView,
    run_id: uuid.UUID,
    owner: str,
    on_progress: Callable[[dict[str, Any]], None],
    timing: Timing,
) -> tuple[BackupResult, dict[str, tuple[int, str]] | None]:
    """restic on the city side (paths) or on the VM through its agent; the result and, for a VM,
    the agent's sample of the source (the worker cannot read the VM's files)."""
    progress = _throttled(ctx, run_id, owner, on_progress)
    if view.source_kind == SourceKind.VM.value:
        from controlplane.backup.agent import backup_on_vm  # Ansible is imported only for VM sources

        timing.engine_started = time.monotonic()
        try:
            return backup_on_vm(ctx, view, progress)
        finally:
            timing.engine_done = time.monotonic()
    city = store_of(ctx).city(view.prefix, view.password)

    def started(_pid: int) -> None:
        timing.engine_started = time.monotonic()

    try:
        # the full id comes from the DR side's listing (one restic start less on the city side)
        result = city.backup(
            view.paths, tags=view.tags, host=view.host, on_progress=progress, on_start=started, resolve_id=False
        )
        return result, None
    finally:
        timing.engine_done = time.monotonic()


def _claim_and_read(ctx: WorkerContext, run_id: uuid.UUID, owner: str) -> uuid.UUID | None:
    """scheduled → running and the run's policy, in one transaction (None: someone else has it)."""

    def work(uow: UnitOfWork) -> uuid.UUID | None:
        if not claim(uow, BackupRun, run_id, ready=RunState.SCHEDULED.value, owner=owner, lease=lease_of(ctx)):
            return None
        policy_id: uuid.UUID | None = uow.session.scalar(select(BackupRun.policy_id).where(BackupRun.id == run_id))
        return policy_id

    result: uuid.UUID | None = run_in_unit(ctx.engine, work, clock=ctx.clock)
    return result


def execute_run(
    ctx: WorkerContext, run_id: uuid.UUID, *, on_progress: Callable[[dict[str, Any]], None] = lambda doc: None
) -> str:
    """Claim and run one backup to its end; returns the final state (or `not-claimed`)."""
    owner = owner_name(ctx)
    timing = Timing(claimed=time.monotonic())
    policy_id = _claim_and_read(ctx, run_id, owner)
    if policy_id is None:
        return "not-claimed"
    state = RunState.RUNNING
    with LeaseKeeper(ctx, BackupRun, run_id, owner):
        try:
            view = run_in_unit(ctx.engine, lambda uow: policy_view(ctx, uow, policy_id), clock=ctx.clock)
            result, sample = _backup(ctx, view, run_id, owner, on_progress, timing)
            _move(
                ctx,
                run_id,
                owner,
                state,
                RunState.UPLOADED,
                uploaded_at=ctx.clock(),
                snapshot_id=result.snapshot_id,
                bytes_uploaded=result.data_added,
                files_new=result.files_new,
                files_changed=result.files_changed,
                progress={"percent_done": 1.0, "warnings": list(result.warnings)[:20], "timing": timing.as_doc()},
            )
            state = RunState.UPLOADED
            done = _verify(ctx, view, result, sample)
            final = RunState.PARTIALLY_FAILED if result.incomplete else RunState.VERIFIED
            reason = ("; ".join(result.warnings)[:2000] or "some files were unreadable") if result.incomplete else None
            _move(ctx, run_id, owner, state, final, reason=reason, **done)
            state = final
        except (RunFailed, ProvisionerError) as exc:
            _fail(ctx, run_id, owner, state, str(exc))
            return RunState.FAILED.value
        except Exception as exc:  # never leave the row running: the reason names the type only
            log.exception("backup run %s failed unexpectedly", run_id)
            _fail(ctx, run_id, owner, state, f"internal error ({type(exc).__name__}); see the worker's log")
            return RunState.FAILED.value
    _retention(ctx, view, run_id)
    return state.value


def _verify(
    ctx: WorkerContext, view: PolicyView, result: BackupResult, sample: dict[str, tuple[int, str]] | None
) -> dict[str, Any]:
    """Judge at the DR site with DR credentials: listed there, then a check started after it."""
    dr = store_of(ctx).dr(view.prefix, view.password)
    listed = dr.snapshots(ids=[result.snapshot_id])
    if len(listed) != 1:
        raise RunFailed(f"snapshot {result.short_id} is not listed at the DR site")
    snapshot_id, snapshot_time = listed[0].id, listed[0].time
    check_started = ctx.clock()
    dr.check(ctx.settings.backup_check_subset)
    manifest = manifest_of(dr, snapshot_id, sample)
    manifest["verification"] = {
        "listed_at_dr": True,
        "check_started_at": check_started.isoformat(),
        "check_subset": ctx.settings.backup_check_subset,
    }
    return {"snapshot_id": snapshot_id, "snapshot_time": snapshot_time, "manifest": manifest}


def _fail(ctx: WorkerContext, run_id: uuid.UUID, owner: str, state: RunState, reason: str) -> None:
    try:
        _move(ctx, run_id, owner, state, RunState.FAILED, reason=reason[:4000])
    except RunFailed:
        log.warning("backup run %s: lease lost before recording its failure: %s", run_id, reason)


def _retention(ctx: WorkerContext, view: PolicyView, run_id: uuid.UUID) -> None:
    """Best effort after the run: a retention error is recorded on the run, never fails it."""
    dr = store_of(ctx).dr(view.prefix, view.password)
    try:
        outcome: dict[str, Any] = apply_dr_retention(ctx, view, dr)
    except ProvisionerError as exc:
        outcome = {"error": str(exc)}

    def work(uow: UnitOfWork) -> None:
        run = uow.session.get(BackupRun, run_id)
        if run is not None:
            run.progress = {**run.progress, "retention": outcome}

    run_in_unit(ctx.engine, work, clock=ctx.clock)
