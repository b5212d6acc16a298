"""The restic wrapper's own guarantees, with real restic on local-directory repositories (no Swift needed)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioners.errors import BackendAuthError, BackendNotFound, InvalidField, RepositoryLocked, ResourceConflict
from provisioners.restic import BackupProgress, Restic, ResticRepository
from tests.integration.dr.conftest import secret, write_random

pytestmark = pytest.mark.dr


@pytest.fixture
def repo(tmp_path: Path) -> Restic:
    restic = Restic(ResticRepository(url=str(tmp_path / "repo"), password=secret()), state_dir=tmp_path / "state")
    restic.init()
    return restic


def _wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def live_backup(repo: Restic) -> Iterator[subprocess.Popen[bytes]]:
    """A real restic backup that holds its lock: it reads stdin, which we keep open."""
    proc = subprocess.Popen(
        ["restic", "backup", "--stdin", "--stdin-filename", "dump.sql"],
        env=repo._env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(lambda: len(repo.locks()) == 1)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_secrets_reach_restic_through_its_environment_only(
    repo: Restic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # the worker's own environment must not leak in (nor be needed)
    monkeypatch.setenv("RESTIC_PASSWORD", "not-the-password")
    monkeypatch.setenv("RESTIC_REPOSITORY", str(tmp_path / "elsewhere"))
    src = tmp_path / "src"
    write_random(src / "a.bin", 1024, seed=1)
    seen: dict[str, str] = {}

    def inspect(pid: int) -> None:
        # on_start may see the child before its exec has completed (under load): wait for restic
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen["cmdline"] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            seen["environ"] = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            if Path(seen["cmdline"].split("\0")[0]).name == "restic" and seen["environ"]:
                return
            time.sleep(0.005)

    caplog.set_level(logging.DEBUG)
    repo.backup([src], host="wuhan-fs1", on_start=inspect)
    password = repo.repository.password
    assert password
    assert password not in seen["cmdline"]
    assert f"RESTIC_PASSWORD={password}" in seen["environ"].split("\0")
    assert "not-the-password" not in seen["environ"]
    assert password not in caplog.text
    assert password not in repr(repo.repository) and password not in repr(repo)


def test_rest_urls_are_shown_without_their_credentials() -> None:
    repository = ResticRepository(
        url="rest:http://wuhan:s3cr3t-pass@127.0.0.1:16010/hubei.wuhan/payroll/", password="x"
    )
    assert repository.display_url == "rest:http://***@127.0.0.1:16010/hubei.wuhan/payroll/"
    assert "s3cr3t" not in repr(repository)


def test_a_password_file_must_be_private(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(secret())
    pw.chmod(0o644)
    loose = Restic(ResticRepository(url=str(tmp_path / "r"), password_file=pw), state_dir=tmp_path / "s")
    with pytest.raises(InvalidField, match="password_file"):
        loose.init()
    pw.chmod(0o600)
    loose.init()
    assert loose.snapshots() == []
    with pytest.raises(InvalidField, match="exactly one"):
        ResticRepository(url="x", password="a", password_file=pw)


def test_init_is_refused_twice_and_ensure_is_idempotent(repo: Restic) -> None:
    with pytest.raises(ResourceConflict):
        repo.init()
    assert repo.ensure_initialised() is False


def test_wrong_password_and_missing_repository_are_told_apart(repo: Restic, tmp_path: Path) -> None:
    wrong = Restic(ResticRepository(url=repo.repository.url, password="wrong-password"), state_dir=tmp_path / "w")
    with pytest.raises(BackendAuthError, match="wrong repository password"):
        wrong.snapshots()
    nowhere = Restic(ResticRepository(url=str(tmp_path / "none"), password="pw-1234"), state_dir=tmp_path / "n")
    with pytest.raises(BackendNotFound, match="no repository at"):
        nowhere.snapshots()


def test_progress_lines_tolerate_missing_fields() -> None:
    # restic omits zero-valued fields: the very first status line may carry almost nothing
    assert BackupProgress.from_json({"message_type": "status"}) == BackupProgress()
    line = '{"message_type":"status","percent_done":0.5,"total_files":4,"bytes_done":1024,"current_files":["/a"]}'
    progress = BackupProgress.from_json(json.loads(line))
    assert (progress.percent_done, progress.total_files, progress.files_done, progress.bytes_done) == (0.5, 4, 0, 1024)
    assert progress.current_files == ("/a",)


def test_a_live_lock_is_never_cleared_a_dead_ones_is(
    repo: Restic, live_backup: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    # Another process on this host (not sharing our host-level lock dir) runs restic: its lock is live.
    other = Restic(repo.repository, state_dir=tmp_path / "other-worker")
    [lock] = other.locks()
    assert (lock.pid, lock.stale) == (live_backup.pid, False)
    with pytest.raises(RepositoryLocked, match=f"pid {live_backup.pid}"):
        other.clear_stale_locks()
    assert len(other.locks()) == 1  # untouched

    live_backup.send_signal(signal.SIGKILL)  # killed mid-run: its lock stays behind
    live_backup.wait()
    [lock] = other.locks()
    assert lock.stale
    assert [gone.id for gone in other.clear_stale_locks()] == [lock.id]
    assert other.locks() == []
    assert other.check(read_data_subset="100%")


def test_runs_are_serialised_per_repository_across_processes(repo: Restic) -> None:
    lock_file = repo.state_dir / "locks" / f"{repo.repository.key}.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock_file)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        impatient = Restic(repo.repository, state_dir=repo.state_dir, lock_timeout_s=0.3)
        with pytest.raises(RepositoryLocked, match="another run on this host"):
            impatient.check(read_data_subset=None)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert impatient.check(read_data_subset=None)  # free again


def test_runs_are_serialised_per_repository_within_a_process(repo: Restic) -> None:
    impatient = Restic(repo.repository, state_dir=repo.state_dir, lock_timeout_s=0.2)
    with repo.serialised(), pytest.raises(RepositoryLocked, match="busy in this process"):
        impatient.prune()
