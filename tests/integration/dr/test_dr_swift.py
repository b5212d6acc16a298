"""Remote DR with the real thing: restic into a single-node Swift, cities through the append-only gateway."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup import RecoveryPoint, RetentionPolicy, apply_retention, rpo_status
from backup.schedule import SHANGHAI
from provisioners.errors import BackendResourceFailed, PermissionDenied, RepositoryDamaged, SourceMissing
from provisioners.restic import BackupProgress
from tests.integration.dr.conftest import Policy, SwiftBox, tree_digests, write_random

pytestmark = pytest.mark.dr

MIB = 2**20


def test_incremental_backup_uploads_only_changed_data_and_rpo_follows_the_verified_snapshot(
    policy: Policy, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for i in range(4):
        write_random(src / f"file{i}.bin", 2 * MIB, seed=i)
    progress: list[BackupProgress] = []

    first = policy.city.backup(
        [src], tags=["tenant:hubei.wuhan", "policy:payroll"], host="wuhan-fs1", on_progress=progress.append
    )
    # 4 files x 2 MiB of random data: at least 8 MiB added (restic compresses nothing here: v1 repo)
    assert first.data_added >= 8 * MIB
    assert first.files_new == 4
    assert progress, "restic's --json status lines reach the progress callback"

    write_random(src / "file2.bin", 2 * MIB, seed=99)  # one file rewritten
    second = policy.city.backup([src], tags=["tenant:hubei.wuhan", "policy:payroll"], host="wuhan-fs1")
    # only that file's 2 MiB (plus a little metadata) travels: well under the first run's 8 MiB
    assert 2 * MIB <= second.data_added < 3 * MIB
    assert (second.files_changed, second.files_unmodified) == (1, 3)

    unchanged = policy.city.backup([src], tags=["tenant:hubei.wuhan"], host="wuhan-fs1")
    assert unchanged.data_added < 64 * 1024  # nothing but (at most) a new tree

    # Verified = listed at the DR site with DR credentials, and a check started after it passed.
    listed = {s.id: s for s in policy.dr.snapshots()}
    assert {first.snapshot_id, second.snapshot_id, unchanged.snapshot_id} <= set(listed)
    policy.dr.check(read_data_subset="100%")
    newest = listed[unchanged.snapshot_id]
    points = [RecoveryPoint(s.id, s.time, verified=True, site="yichang") for s in listed.values()]
    now = newest.time + timedelta(minutes=7)
    status = rpo_status(points, target=timedelta(hours=1), now=now, site="yichang")
    assert status.newest_verified is not None and status.newest_verified.id == unchanged.snapshot_id
    assert status.achieved == timedelta(minutes=7)
    assert status.compliant


def test_gateway_accepts_backups_but_refuses_deletion_with_the_city_credential(
    policy: Policy, tmp_path: Path, swift_box: SwiftBox
) -> None:
    src = tmp_path / "src"
    write_random(src / "a.bin", 64 * 1024, seed=1)
    one = policy.city.backup([src], host="wuhan-fs1")
    two = policy.city.backup([src], host="wuhan-fs1")

    with pytest.raises(PermissionDenied, match="403"):
        policy.city.forget([one.snapshot_id])  # stopped at the first 403 (restic would retry for ~45 s)
    # nor can the city user delete straight in Swift outside its container, or create containers
    status, _ = swift_box.call("dr:city01", "PUT", f"/{policy.container}-other")
    assert status == 403

    assert {s.id for s in policy.dr.snapshots()} >= {one.snapshot_id, two.snapshot_id}
    # the gateway got its Swift key and its own password through the environment, not its arguments
    gateway_pid = json.loads(policy.gateway.pidfile.read_text())["pid"]
    cmdline = Path(f"/proc/{gateway_pid}/cmdline").read_bytes().decode()
    gateway_password = urllib.parse.urlsplit(policy.gateway.url("x").removeprefix("rest:")).password
    assert gateway_password and gateway_password not in cmdline
    assert swift_box.key("dr:city01") not in cmdline
    assert "--append-only" in cmdline.split("\0")
    # the DR side, with its own credentials, can: retention runs there only
    policy.dr.forget([one.snapshot_id])
    assert one.snapshot_id not in {s.id for s in policy.dr.snapshots()}
    three = policy.city.backup([src], host="wuhan-fs1")  # the city keeps writing through the gateway
    assert three.snapshot_id in {s.id for s in policy.dr.snapshots()}


def test_restore_at_the_dr_site_is_byte_identical(policy: Policy, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i, size in enumerate((0, 1, 4096, 3 * MIB + 17)):
        write_random(src / f"d{i % 2}" / f"f{i}.bin", size, seed=100 + i)
    (src / "text.txt").write_text("楚天云 远程灾备\n")
    result = policy.city.backup([src], host="wuhan-fs1")

    entries = {e.path for e in policy.dr.ls(result.snapshot_id) if e.type == "file"}
    assert f"{src}/text.txt" in entries and len(entries) == 5

    target = tmp_path / "restored"
    policy.dr.restore(result.snapshot_id, target)
    restored_root = target / src.relative_to("/")
    assert tree_digests(restored_root) == tree_digests(src)


def test_a_killed_backup_leaves_a_stale_lock_that_is_cleared_and_the_next_backup_succeeds(
    policy: Policy, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_random(src / "big.bin", 48 * MIB, seed=7)
    pids: list[int] = []

    def kill_at_first_progress(_progress: BackupProgress) -> None:
        if pids:
            os.kill(pids[0], signal.SIGKILL)

    with pytest.raises(BackendResourceFailed, match="killed"):
        policy.city.backup([src], host="wuhan-fs1", on_start=pids.append, on_progress=kill_at_first_progress)

    locks = policy.city.locks()
    assert [(lock.pid, lock.stale) for lock in locks] == [(pids[0], True)]
    # the danger of leaving it: an exclusive command (check, forget, prune) fails on it
    env = policy.dr._env()
    raw = subprocess.run(["restic", "check"], env=env, capture_output=True, text=True, check=False)
    assert raw.returncode != 0 and "locked" in raw.stderr

    cleared = policy.city.clear_stale_locks()  # through the append-only gateway: lock files may go
    assert [lock.id for lock in cleared] == [locks[0].id]
    assert policy.city.locks() == []

    result = policy.city.backup([src], host="wuhan-fs1")
    assert result.snapshot_id in {s.id for s in policy.dr.snapshots()}
    policy.dr.check(read_data_subset="10%")


def test_check_fails_when_a_pack_is_corrupted(policy: Policy, tmp_path: Path, swift_box: SwiftBox) -> None:
    src = tmp_path / "src"
    write_random(src / "payload.bin", 512 * 1024, seed=3)
    policy.city.backup([src], host="wuhan-fs1")
    policy.dr.check(read_data_subset="100%")  # sound before

    packs = swift_box.objects("dr:admin", policy.container, prefix=f"{policy.prefix}/data/")
    assert packs
    name = f"/{policy.container}/{packs[0]}"
    status, body = swift_box.call("dr:admin", "GET", name)
    assert status == 200
    damaged = bytearray(body)
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte in the middle of a pack
    status, _ = swift_box.call("dr:admin", "PUT", name, data=bytes(damaged))
    assert status == 201

    with pytest.raises(RepositoryDamaged, match="check found errors") as caught:
        policy.dr.check(read_data_subset="100%")
    assert packs[0].rsplit("/", 1)[-1][:8] in str(caught.value)  # it names the damaged pack


def _history(rng: random.Random, start: datetime) -> list[datetime]:
    """~25 snapshot times over 90 days: gaps, two on some days, times either side of midnight in Shanghai."""
    times: set[datetime] = set()
    for day in range(90):
        base = start + timedelta(days=day)
        roll = rng.random()
        if roll < 0.75:
            continue  # no backup that day
        times.add(base + timedelta(hours=rng.randrange(1, 22), minutes=rng.randrange(60)))
        if roll > 0.93:  # and one more just before midnight (UTC 15:xx: another UTC day than the morning's)
            times.add(base + timedelta(hours=23, minutes=rng.randrange(50, 60)))
    return sorted(times)


def test_retention_over_a_synthetic_90_day_history_keeps_exactly_the_gfs_set(policy: Policy, tmp_path: Path) -> None:
    src = tmp_path / "src"
    times = _history(random.Random(2024), datetime(2024, 1, 1, tzinfo=SHANGHAI))
    assert 18 <= len(times) <= 40
    # Written straight at the DR site (the gateway adds nothing to what is measured here, and
    # costs time): one snapshot per time, with restic's --time.
    for i, when in enumerate(times):
        (src / "counter.txt").parent.mkdir(parents=True, exist_ok=True)
        (src / "counter.txt").write_text(str(i))
        policy.dr.backup([src], host="wuhan-fs1", time=when, resolve_id=False)
    snapshots = policy.dr.snapshots()
    assert sorted(s.time for s in snapshots) == [t.astimezone(UTC) for t in times]

    rules = RetentionPolicy(last=3, daily=7, weekly=5, monthly=3)
    points = [RecoveryPoint(s.id, s.time, verified=True) for s in snapshots]
    decision = apply_retention(points, rules)

    # restic's own reading of the same rules agrees with ours...
    restic_view = policy.dr.forget_policy(rules.restic_args(), dry_run=True)
    assert set(restic_view.keep) == decision.keep_ids
    assert set(restic_view.remove) == decision.forget_ids

    # ...and applying our forget list leaves exactly the GFS set.
    policy.dr.forget(sorted(decision.forget_ids))
    assert {s.id for s in policy.dr.snapshots()} == decision.keep_ids
    policy.dr.prune()
    policy.dr.check(read_data_subset="10%")


def test_missing_source_is_an_error_not_a_warning(policy: Policy, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "a.bin", 1024, seed=5)
    with pytest.raises(SourceMissing, match=f"do not exist: {tmp_path / 'gone'}"):
        policy.city.backup([src, tmp_path / "gone"], host="wuhan-fs1")
    assert policy.dr.snapshots() == []
