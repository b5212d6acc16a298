"""Restore drills and restores on demand, executed at the DR side.

A drill restores the newest *verified* point into a scratch directory, compares the full
content against the manifest recorded at backup time (every entry's presence, type and size;
SHA-256 of the sampled files), records the RTO (restore + compare wall time) and keeps the
evidence (log lines, checksums of every restored file, mismatches) with the drill; the scratch
copy is removed. A restore on demand does the same into the tenant's restore area and keeps it.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from controlplane.backup.leases import LeaseKeeper, claim, lease_of, owner_name
from controlplane.backup.models import VERIFIED_STATES, BackupDrill, BackupRun, DrillPurpose, DrillState
from controlplane.backup.runner import policy_view
from controlplane.backup.store import store_of
from controlplane.db.uow import UnitOfWork, run_in_unit
from controlplane.worker.runtime import WorkerContext
from provisioners.errors import ProvisionerError

log = logging.getLogger(__name__)


class DrillFailed(Exception):
    pass


def newest_verified_run(uow: UnitOfWork, policy_id: uuid.UUID) -> BackupRun | None:
    return uow.session.scalars(
        select(BackupRun)
        .where(
            BackupRun.policy_id == policy_id,
            col(BackupRun.state).in_(VERIFIED_STATES),
            col(BackupRun.snapshot_id).is_not(None),
        )
        .order_by(col(BackupRun.snapshot_time).desc(), col(BackupRun.finished_at).desc())
        .limit(1)
    ).first()


def compare(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Every manifest entry restored under `root` with its type and size; sampled files by SHA-256."""
    mismatches: list[str] = []
    checksums: dict[str, str] = {}
    sampled = manifest.get("sampled_sha256") or {}
    for entry in manifest.get("entries") or []:
        restored = root / entry["path"].lstrip("/")
        if entry["type"] == "dir":
            if not restored.is_dir():
                mismatches.append(f"{entry['path']}: directory missing")
            continue
        if entry["type"] != "file":
            if not restored.is_symlink() and not restored.exists():
                mismatches.append(f"{entry['path']}: {entry['type']} missing")
            continue
        if not restored.is_file():
            mismatches.append(f"{entry['path']}: file missing")
            continue
        size = restored.stat().st_size
        if size != entry["size"]:
            mismatches.append(f"{entry['path']}: {size} bytes, manifest says {entry['size']}")
        digest = hashlib.sha256(restored.read_bytes()).hexdigest()
        checksums[entry["path"]] = digest
        if entry["path"] in sampled and sampled[entry["path"]] != digest:
            mismatches.append(f"{entry['path']}: SHA-256 differs from the one recorded at backup time")
    return {
        "compared": len(manifest.get("entries") or []),
        "sampled_compared": sum(1 for p in sampled if p in checksums),
        "checksums": checksums,
        "mismatches": mismatches[:200],
    }


def _finish(ctx: WorkerContext, drill_id: uuid.UUID, owner: str, **values: Any) -> None:
    def work(uow: UnitOfWork) -> None:
        uow.session.execute(
            update(BackupDrill)
            .where(BackupDrill.id == drill_id, BackupDrill.owner == owner)
            .values(owner=None, lease_expires_at=None, finished_at=uow.now(), updated_at=uow.now(), **values)
            .execution_options(synchronize_session=False)
        )

    run_in_unit(ctx.engine, work, clock=ctx.clock)


def execute_drill(ctx: WorkerContext, drill_id: uuid.UUID) -> str:
    owner = owner_name(ctx)
    claimed = run_in_unit(
        ctx.engine,
        lambda uow: claim(
            uow, BackupDrill, drill_id, ready=DrillState.SCHEDULED.value, owner=owner, lease=lease_of(ctx)
        ),
        clock=ctx.clock,
    )
    if not claimed:
        return "not-claimed"
    evidence: dict[str, Any] = {"log": []}
    with LeaseKeeper(ctx, BackupDrill, drill_id, owner):
        try:
            values = _drill(ctx, drill_id, evidence)
            _finish(ctx, drill_id, owner, state=DrillState.PASSED.value, evidence=evidence, **values)
            return DrillState.PASSED.value
        except (DrillFailed, ProvisionerError) as exc:
            evidence["log"].append(f"failed: {exc}")
            _finish(ctx, drill_id, owner, state=DrillState.FAILED.value, evidence=evidence, reason=str(exc)[:4000])
        except Exception as exc:
            log.exception("drill %s failed unexpectedly", drill_id)
            reason = f"internal error ({type(exc).__name__}); see the worker's log"
            _finish(ctx, drill_id, owner, state=DrillState.FAILED.value, evidence=evidence, reason=reason)
    return DrillState.FAILED.value


def _drill(ctx: WorkerContext, drill_id: uuid.UUID, evidence: dict[str, Any]) -> dict[str, Any]:
    def load(uow: UnitOfWork) -> tuple[Any, ...]:
        drill = uow.session.get(BackupDrill, drill_id)
        assert drill is not None
        point = newest_verified_run(uow, drill.policy_id)
        view = policy_view(ctx, uow, drill.policy_id)
        if point is None:
            return view, drill.purpose, drill.target, None, None, None
        return view, drill.purpose, drill.target, point.id, point.snapshot_id, point.manifest

    view, purpose, target, run_id, snapshot_id, manifest = run_in_unit(ctx.engine, load, clock=ctx.clock)
    if snapshot_id is None or not manifest:
        raise DrillFailed("no verified recovery point to restore")
    log_lines: list[str] = evidence["log"]
    log_lines.append(f"restoring snapshot {snapshot_id[:8]} (run {run_id}) at the DR site")
    scratch = purpose == DrillPurpose.DRILL.value
    if scratch:
        base = ctx.settings.data_dir / "dr-scratch"
        base.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="drill-", dir=base))
    else:
        root = Path(str(target))
        root.mkdir(parents=True, exist_ok=True)
    try:
        started = time.monotonic()
        store_of(ctx).dr(view.prefix, view.password).restore(snapshot_id, root)
        log_lines.append(f"restored into {'a scratch directory' if scratch else root}")
        result = compare(root, manifest)
        rto = time.monotonic() - started
    finally:
        if scratch:
            shutil.rmtree(root, ignore_errors=True)
    evidence.update(result, snapshot=snapshot_id)
    log_lines.append(
        f"compared {result['compared']} entries ({result['sampled_compared']} by SHA-256): "
        f"{len(result['mismatches'])} mismatch(es); RTO {rto:.2f} s"
    )
    if result["mismatches"]:
        raise DrillFailed(f"restored content differs from the manifest: {'; '.join(result['mismatches'][:5])}")
    return {"rto_s": rto, "snapshot_id": snapshot_id, "run_id": run_id}
