"""Backup wall time through the control plane against plain `restic backup` of the same data.

Starts what it needs: a fresh SQLite database (migrated and seeded), a policy row with a
sealed password, and a local restic repository per side under a temporary directory (the
smoke run uses a local repository, not Swift: the control plane's overhead is what is
measured, and the DR store adds the same cost to both sides). Each round backs the same tree
up into two fresh repositories, in alternating order:

  plain    - `restic backup --json` of the tree, as a shell user would run it
  control  - a BackupRun through `runner.execute_run`: claim, restic through the wrapper with
             progress written to the run row, up to `uploaded` (uploaded_at - started_at)

and prints both medians, their ratio (target <= 1.05x) with the spread of the per-round
ratios, and the control plane's own time: the upload time minus the restic process's wall time
(the run records both: `progress.timing`), i.e. claim, policy read and row updates around
restic. On a shared machine the two restic processes differ by more than that from round to
round, so the ratio's spread is mostly restic's own; the own-time figure is the overhead.
Not counted in the ratio, and printed separately: the DR-side verification (snapshots, check,
manifest) that plain restic does not do, which runs after `uploaded` and before `verified`.

    .venv/bin/python benchmarks/dr_overhead.py [--smoke] [--mib 256] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.fernet import Fernet
from sqlalchemy import select

from controlplane.backup import runner
from controlplane.backup.enrolment import sealer
from controlplane.backup.models import BackupPolicy, BackupRun, Trigger
from controlplane.backup.scheduler import new_run
from controlplane.backup.store import DrStore
from controlplane.bootstrap import seed_database
from controlplane.db.engine import make_engine
from controlplane.db.migrate import upgrade
from controlplane.db.uow import unit_of_work
from controlplane.requests.models import InformationSystem
from controlplane.settings import Settings
from controlplane.site_config import load_site
from controlplane.tenants.models import Tenant
from controlplane.worker.runtime import WorkerContext

TENANT = "hubei.wuhan.jiangan"


def make_tree(root: Path, mib: int) -> None:
    """Incompressible files of mixed sizes (restic deduplicates: every file differs)."""
    rng = random.Random(42)
    left, i = mib * 2**20, 0
    while left > 0:
        size = min(left, rng.choice((64 * 1024, 1 * 2**20, 8 * 2**20)))
        path = root / f"d{i % 8}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        left -= size
        i += 1


def plain_backup(repo: Path, password_file: Path, tree: Path) -> float:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(repo.parent), "RESTIC_REPOSITORY": str(repo)}
    env["RESTIC_PASSWORD_FILE"] = str(password_file)
    subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run(
        ["restic", "backup", "--json", "--host", TENANT, str(tree)], env=env, check=True, capture_output=True
    )
    return time.perf_counter() - start


def setup(work: Path) -> tuple[WorkerContext, uuid.UUID]:
    keys = work / "keys"
    keys.write_text(Fernet.generate_key().decode() + "\n")
    keys.chmod(0o600)
    settings = Settings(
        database_url=f"sqlite:///{work / 'bench.sqlite3'}", data_dir=work / "data", secret_keys_file=keys
    )
    upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    seed_database(engine, load_site(None))
    ctx = WorkerContext(settings=settings, engine=engine, site=load_site(None))
    ctx.extras["dr_store"] = DrStore(dr_base=str(work / "dr"), state_dir=work / "dr-state")
    with unit_of_work(engine) as uow:
        tenant_id = uow.session.scalars(select(Tenant.id).where(Tenant.path == TENANT)).one()
        now = uow.now()
        system = InformationSystem(
            tenant_id=tenant_id, cloud="health", name="bench", mlps_level=2, dr_required=True, status="approved"
        )
        system.created_by, system.created_at, system.updated_at = "bench", now, now
        uow.session.add(system)
        uow.session.flush()
        return ctx, system.id


def new_policy(ctx: WorkerContext, system_id: uuid.UUID, tree: Path, n: int) -> BackupPolicy:
    with unit_of_work(ctx.engine) as uow:
        now = uow.now()
        policy = BackupPolicy(
            tenant_id=uow.session.scalars(select(Tenant.id).where(Tenant.path == TENANT)).one(),
            system_id=system_id,
            slug=f"bench-{n}",
            source_paths=[str(tree)],
            schedule="0 2 * * *",
            drill_schedule="0 4 * * 0",
            rpo_target_s=86400,
            retention={"last": 7},
            source_region="wuhan",
            target_region="yichang",
            repository_url="",
            repository_prefix=f"{TENANT}/bench-{n}",
            password_sealed=sealer(ctx).seal(uuid.uuid4().hex),
            last_claimed_at=now,
            drill_last_claimed_at=now,
            created_at=now,
            updated_at=now,
        )
        uow.session.add(policy)
        uow.session.flush()
        return policy


def control_backup(ctx: WorkerContext, system_id: uuid.UUID, tree: Path, n: int) -> tuple[float, float, float, str]:
    """(claim → uploaded, restic's own wall time inside it, the whole run with verification, state)."""
    policy = new_policy(ctx, system_id, tree, n)
    view_password = sealer(ctx).open(policy.password_sealed)
    ctx.extras["dr_store"].dr(policy.repository_prefix, view_password).init()
    with unit_of_work(ctx.engine) as uow:
        run_id = new_run(uow, policy, uow.now(), Trigger.MANUAL).id
    start = time.perf_counter()
    state = runner.execute_run(ctx, run_id)
    whole = time.perf_counter() - start
    with unit_of_work(ctx.engine) as uow:
        run = uow.session.get(BackupRun, run_id)
        assert run is not None and run.started_at and run.uploaded_at, state
        upload = (run.uploaded_at - run.started_at).total_seconds()
        engine = float(run.progress.get("timing", {}).get("engine_s", 0.0))
    return upload, engine, whole, state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small and quick (CI)")
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    mib, rounds = (32, 2) if args.smoke else (args.mib, args.rounds)
    if shutil.which("restic") is None:
        print("restic is not installed (apt-get install -y restic)")
        return 2
    with tempfile.TemporaryDirectory(prefix="chutian-dr-bench-") as tmp:
        work = Path(tmp)
        tree = work / "tree"
        make_tree(tree, mib)
        password_file = work / "plain.password"
        password_file.write_text(uuid.uuid4().hex)
        password_file.chmod(0o600)
        ctx, system_id = setup(work)
        plain: list[float] = []
        control: list[float] = []
        own: list[float] = []
        whole: list[float] = []
        for n in range(rounds):
            order = ("plain", "control") if n % 2 == 0 else ("control", "plain")
            for side in order:
                if side == "plain":
                    plain.append(plain_backup(work / f"plain-{n}", password_file, tree))
                else:
                    upload, engine, total, state = control_backup(ctx, system_id, tree, n)
                    if state != "verified":
                        print(f"control-plane run ended {state}")
                        return 1
                    control.append(upload)
                    own.append(upload - engine)
                    whole.append(total)
        p, c, w = statistics.median(plain), statistics.median(control), statistics.median(whole)
        ratio = c / p
        rounds_ratio = [ci / pi for ci, pi in zip(control, plain, strict=True)]
        mine = statistics.median(own)
        print(f"dr_overhead: {mib} MiB, {rounds} round(s), local restic repositories (median)")
        print(f"  plain restic backup        {p:7.2f} s   rounds {' '.join(f'{x:.2f}' for x in plain)}")
        print(f"  through the control plane  {c:7.2f} s   rounds {' '.join(f'{x:.2f}' for x in control)}")
        print(f"  ratio {ratio:.3f}x (target <= 1.05x); per round {min(rounds_ratio):.3f}-{max(rounds_ratio):.3f}x")
        print(
            f"  control plane's own time (upload minus the restic process): {mine * 1000:.0f} ms median "
            f"(max {max(own) * 1000:.0f} ms) = {mine / c * 100:.1f}% of the upload"
        )
        print(f"  not in the ratio: whole run incl. DR-side verification (snapshots, check, manifest): {w:.2f} s")
        print("  within target" if ratio <= 1.05 else "  ABOVE TARGET (see the per-round spread and the own time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
