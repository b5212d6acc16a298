"""restic, driven as a subprocess: one repository and one password per backup policy.

No restic library: the ``restic`` binary (Debian's 0.14) with ``--json`` where it has it.

- **Secrets** never appear in arguments or logs: the repository URL (a ``rest:`` URL may
  carry the gateway's user and password), the repository password and the backend's
  credentials (``ST_*`` / ``OS_*``) go through the environment of the child only, or a
  0600 password file.  The child's environment is built from scratch (PATH, HOME, LANG, TZ
  and ours): nothing of the worker's own environment leaks into it, or the other way.
- **Serialised per repository**: a ``threading.Lock`` (threads of this process) plus an
  ``flock`` on ``<state_dir>/locks/<repository key>.lock`` (other processes on this host)
  around every command that changes or restores the repository.  Listing commands
  (``snapshots``, ``ls``, ``locks``) run with ``--no-lock`` and are not serialised.
- **Stale locks**: a killed run leaves its lock in the repository; backups still work but
  ``check``/``forget``/``prune`` (exclusive) would fail.  Before those, and after any
  "already locked" failure, the wrapper lists the repository's locks while it holds the
  host-level lock: a lock whose process is this host's and dead is stale, and only then
  ``restic unlock`` (without ``--remove-all``: restic itself removes only stale locks)
  runs.  A lock of a live restic process, or another host's recent lock, is never touched:
  that is ``RepositoryLocked``.
- **A missing source path is an error** (restic only warns "does not exist, skipping" and
  exits 0): paths are checked first, and the warning is still caught afterwards.
- **forget and prune are separate steps** (restic 0.14 mixes text into
  ``forget --prune --json``).
- A 403 from the server (an append-only gateway refusing a deletion) is final: restic would
  retry it for ~45 s; the wrapper stops it at the first one and raises ``PermissionDenied``.
- ``backup --json`` progress lines become ``BackupProgress`` callbacks; restic omits
  zero-valued fields, so every field defaults to zero.

Errors map into ``provisioners.errors``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from provisioners.errors import (
    BackendAuthError,
    BackendMisconfigured,
    BackendNotFound,
    BackendResourceFailed,
    BackendTimeout,
    InvalidField,
    PermissionDenied,
    ProvisionerError,
    RepositoryDamaged,
    RepositoryLocked,
    ResourceConflict,
    SourceMissing,
    TransientBackendError,
)

BACKEND: Final = "restic"
TIMEZONE: Final = "Asia/Shanghai"  # snapshot times (and so restic's own GFS buckets) use the province's days
RESTIC_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
STALE_AFTER: Final = timedelta(minutes=30)  # restic's own rule for another host's lock
EXIT_INCOMPLETE: Final = 3  # backup: snapshot written, some source files could not be read
_TAG = re.compile(r"^[A-Za-z0-9_.:=/@+-]{1,128}$")
_HOST = re.compile(r"^[A-Za-z0-9_.-]{1,253}$")
_SNAPSHOT_ID = re.compile(r"^[0-9a-f]{8,64}$")
_REFUSED = re.compile(r"\b(403 Forbidden|401 Unauthorized)\b")
_PROGRESS = re.compile(r"^(\[\d+:\d\d\]|check |load |read |using temporary cache|created new cache|no errors)")
_SUBSET = re.compile(r"^(\d{1,3}(\.\d+)?%|\d+/\d+)$")
_PASSTHROUGH_ENV: Final = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE")
_ERRORS: Final[tuple[tuple[tuple[str, ...], type[ProvisionerError], str], ...]] = (
    (("wrong password", "no key found"), BackendAuthError, "wrong repository password for {where}"),
    (("already locked", "unable to create lock"), RepositoryLocked, "repository {where} is locked"),
    (("config file already exists", "already initialized"), ResourceConflict, "a repository exists at {where}"),
    (
        ("is there a repository at the following location", "unable to open config file"),
        BackendNotFound,
        "no repository at {where}",
    ),
    (("repository contains errors", "does not match"), RepositoryDamaged, "repository {where} is damaged"),
    (
        ("authorization failure", "unauthorized", "401"),
        BackendAuthError,
        "the storage refused our credentials at {where}",
    ),
    (
        ("connection refused", "no such host", "timeout", "503", "502", "500 internal"),
        TransientBackendError,
        "storage unavailable at {where}",
    ),
)
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResticRepository:
    """Where a policy's repository lives and how to open it.

    ``url``: ``swift:<container>:/<prefix>`` (DR side, with the DR credentials in ``env``),
    ``rest:http://user:pass@127.0.0.1:<port>/<prefix>`` (through the append-only gateway)
    or a local path.  ``password`` or ``password_file`` (mode 0600) opens it.  ``env``: the
    backend's credentials (``ST_AUTH``/``ST_USER``/``ST_KEY`` or ``OS_*``).  None of these
    is shown by ``repr``.
    """

    url: str = field(repr=False)
    password: str | None = field(default=None, repr=False)
    password_file: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if (self.password is None) == (self.password_file is None):
            raise InvalidField("password", "give exactly one of password and password_file", backend=BACKEND)
        if self.password is not None and not self.password:
            raise InvalidField("password", "must not be empty", backend=BACKEND)
        if not self.url:
            raise InvalidField("url", "must not be empty", backend=BACKEND)

    @property
    def display_url(self) -> str:
        """The URL without credentials: safe for logs and messages."""
        if self.url.startswith("rest:"):
            parts = urllib.parse.urlsplit(self.url[len("rest:") :])
            if parts.password is not None or parts.username is not None:
                host = parts.hostname or ""
                netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
                return "rest:" + urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        return self.url

    @property
    def key(self) -> str:
        """Stable name of the repository for host-level lock files (the credential-free URL, hashed)."""
        return hashlib.sha256(self.display_url.encode()).hexdigest()[:32]

    def secrets(self) -> list[str]:
        values = [self.password or "", *self.env.values()]
        if self.url.startswith("rest:"):
            parts = urllib.parse.urlsplit(self.url[len("rest:") :])
            values.append(parts.password or "")
        return [v for v in values if len(v) >= 4]


@dataclass(frozen=True)
class BackupProgress:
    """One ``status`` line of ``restic backup --json`` (absent fields are zero)."""

    percent_done: float = 0.0
    total_files: int = 0
    files_done: int = 0
    total_bytes: int = 0
    bytes_done: int = 0
    seconds_elapsed: int = 0
    seconds_remaining: int = 0
    current_files: tuple[str, ...] = ()
    error_count: int = 0

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> BackupProgress:
        return cls(
            percent_done=float(doc.get("percent_done", 0.0)),
            total_files=int(doc.get("total_files", 0)),
            files_done=int(doc.get("files_done", 0)),
            total_bytes=int(doc.get("total_bytes", 0)),
            bytes_done=int(doc.get("bytes_done", 0)),
            seconds_elapsed=int(doc.get("seconds_elapsed", 0)),
            seconds_remaining=int(doc.get("seconds_remaining", 0)),
            current_files=tuple(doc.get("current_files") or ()),
            error_count=int(doc.get("error_count", 0)),
        )


@dataclass(frozen=True)
class BackupResult:
    snapshot_id: str
    short_id: str
    data_added: int
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    total_files_processed: int = 0
    total_bytes_processed: int = 0
    duration_s: float = 0.0
    incomplete: bool = False
    """restic exit 3: the snapshot exists but some source files could not be read (``warnings``)."""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: datetime
    hostname: str
    paths: tuple[str, ...]
    tags: tuple[str, ...] = ()
    tree: str = ""
    parent: str | None = None


@dataclass(frozen=True)
class LsEntry:
    path: str
    type: str
    size: int = 0
    mode: int = 0
    mtime: str = ""


@dataclass(frozen=True)
class LockInfo:
    id: str
    hostname: str
    pid: int
    time: datetime
    exclusive: bool
    stale: bool
    """Ours to clear: this host's and its process is gone (or older than restic's 30 minutes)."""


@dataclass(frozen=True)
class ForgetResult:
    keep: tuple[str, ...]
    remove: tuple[str, ...]


@dataclass
class _Completed:
    rc: int
    stdout: list[str]
    stderr: list[str]
    refused: str | None = None  # the first 403/401 line, when we stopped the process there
    timed_out: bool = False


def parse_time(value: str) -> datetime:
    """restic's RFC 3339 times carry nanoseconds, which ``fromisoformat`` does not take."""
    text = value.strip().replace("Z", "+00:00")
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", text)
    if match:
        frac = (match.group(2) or "")[:7]  # dot + at most 6 digits
        text = f"{match.group(1)}{frac}{match.group(3)}"
    return datetime.fromisoformat(text)


def _pid_is_live_restic(pid: int) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return False
    return comm == "restic" and state not in ("Z", "X")


class Restic:
    """One policy's repository.  ``state_dir`` holds host-level lock files and restic's cache."""

    def __init__(
        self,
        repository: ResticRepository,
        *,
        state_dir: Path,
        binary: str = "restic",
        lock_timeout_s: float = 600.0,
        timeout_s: float | None = None,
        timezone_name: str = TIMEZONE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self.state_dir = Path(state_dir)
        self.binary = binary
        self.lock_timeout_s = lock_timeout_s
        self.timeout_s = timeout_s
        self.tz = timezone_name
        self.hostname = socket.gethostname()
        self.clock = clock  # only to age other hosts' locks

    def __repr__(self) -> str:
        return f"Restic({self.repository.display_url!r})"

    # ------------------------------------------------------------ process plumbing

    def _env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.setdefault("HOME", str(self.state_dir))
        env.update(self.repository.env)
        env["TZ"] = self.tz
        env["RESTIC_REPOSITORY"] = self.repository.url
        env["RESTIC_CACHE_DIR"] = str(self.state_dir / "cache")
        env["RESTIC_PROGRESS_FPS"] = "1"
        if self.repository.password is not None:
            env["RESTIC_PASSWORD"] = self.repository.password
        else:
            assert self.repository.password_file is not None
            mode = self.repository.password_file.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise InvalidField("password_file", "must not be readable by group or others (0600)", backend=BACKEND)
            env["RESTIC_PASSWORD_FILE"] = str(self.repository.password_file)
        return env

    def _scrub(self, text: str) -> str:
        for secret in self.repository.secrets():
            text = text.replace(secret, "***")
        return text

    def _run(
        self,
        args: Sequence[str],
        *,
        on_stdout: Callable[[str], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        timeout_s: float | None = None,
        stop_on_refusal: bool = True,
    ) -> _Completed:
        cmd = [self.binary, *args]
        log.info("restic %s (%s)", " ".join(args), self.repository.display_url)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.Popen(
                cmd,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except FileNotFoundError as err:
            raise BackendMisconfigured(f"restic binary {self.binary!r} not found", backend=BACKEND) from err
        done = _Completed(rc=-1, stdout=[], stderr=[])

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                done.stderr.append(line.rstrip("\n"))
                if (
                    stop_on_refusal
                    and done.refused is None
                    and re.search(r"\b(403 Forbidden|401 Unauthorized)\b", line)
                ):
                    done.refused = line.strip()
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        limit = timeout_s if timeout_s is not None else self.timeout_s
        timer: threading.Timer | None = None
        if limit is not None:

            def expire() -> None:
                done.timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

            timer = threading.Timer(limit, expire)
            timer.daemon = True
            timer.start()
        try:
            if on_start is not None:
                on_start(proc.pid)
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                done.stdout.append(line)
                if on_stdout is not None:
                    on_stdout(line)
            done.rc = proc.wait()
            reader.join(timeout=10)
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:  # a callback raised: do not leave restic running
                proc.kill()
                proc.wait()
        if done.timed_out:
            raise BackendTimeout(f"restic {args[0]} timed out after {limit:.0f} s", backend=BACKEND)
        return done

    def _error(self, action: str, done: _Completed) -> ProvisionerError:
        """Map a failed command's output onto the error hierarchy (first matching row of ``_ERRORS``)."""
        text = self._scrub("\n".join(done.stderr + [s for s in done.stdout if not s.startswith("{")]))
        tail = "; ".join(line.strip() for line in text.splitlines()[-6:] if line.strip())
        where = self.repository.display_url
        if done.refused is not None:
            refused = self._scrub(done.refused)
            return PermissionDenied(f"{action} refused by the repository server at {where}: {refused}", backend=BACKEND)
        low = text.lower()
        for needles, cls, what in _ERRORS:
            if any(needle in low for needle in needles):
                return cls(f"{action}: {what.format(where=where)}: {tail}", backend=BACKEND)
        return BackendResourceFailed(f"{action} failed (exit {done.rc}) at {where}: {tail}", backend=BACKEND)

    @contextlib.contextmanager
    def serialised(self) -> Iterator[None]:
        """Hold this repository's thread lock and host-level ``flock`` (``RepositoryLocked`` on timeout)."""
        key = self.repository.key
        with _thread_locks_guard:
            tlock = _thread_locks.setdefault(key, threading.Lock())
        deadline = time.monotonic() + self.lock_timeout_s
        if not tlock.acquire(timeout=max(self.lock_timeout_s, 0)):
            raise RepositoryLocked(f"{self.repository.display_url} is busy in this process", backend=BACKEND)
        try:
            lock_dir = self.state_dir / "locks"
            lock_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_dir / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise RepositoryLocked(
                                f"{self.repository.display_url} is busy (another run on this host)", backend=BACKEND
                            ) from None
                        time.sleep(0.1)
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        finally:
            tlock.release()

    def _locked_run(self, action: str, args: Sequence[str], *, exclusive: bool, **kwargs: Any) -> _Completed:
        """Run under the host-level lock; clear stale locks first (exclusive) or after a lock failure."""
        if exclusive:
            self._clear_stale_locks_held()
        done = self._run(args, **kwargs)
        if done.rc != 0 and isinstance(self._error(action, done), RepositoryLocked) and self._clear_stale_locks_held():
            done = self._run(args, **kwargs)
        return done

    # ------------------------------------------------------------ commands

    def version(self) -> tuple[int, int, int]:
        done = self._run(["version"])
        match = re.search(r"restic (\d+)\.(\d+)\.(\d+)", "\n".join(done.stdout))
        if done.rc != 0 or not match:
            raise BackendMisconfigured(f"cannot tell restic's version: {done.stdout[:1]}", backend=BACKEND)
        return int(match.group(1)), int(match.group(2)), int(match.group(3))

    def init(self) -> None:
        """Create the repository; ``ResourceConflict`` if one exists already."""
        with self.serialised():
            done = self._run(["init"])
        if done.rc != 0:
            raise self._error("init", done)

    def ensure_initialised(self) -> bool:
        """Find-or-create: True when this call created the repository."""
        try:
            self.init()
        except ResourceConflict:
            return False
        return True

    def backup(
        self,
        paths: Sequence[str | Path],
        *,
        tags: Sequence[str] = (),
        host: str,
        time: datetime | None = None,
        exclude: Sequence[str] = (),
        on_progress: Callable[[BackupProgress], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        timeout_s: float | None = None,
        resolve_id: bool = True,
    ) -> BackupResult:
        """Back up ``paths`` (all must exist) as one snapshot; returns its id and the bytes added.

        restic 0.14 reports only the short id; ``resolve_id`` (default) looks the full one up
        (one more restic start, ~0.5 s); without it ``snapshot_id`` is the short id.
        """
        args = self._backup_args(paths, tags=tags, host=host, time=time, exclude=exclude)
        with self.serialised():
            done = self._locked_run(
                "backup",
                args,
                exclusive=False,
                on_stdout=self.backup_output_reader(on_progress),
                on_start=on_start,
                timeout_s=timeout_s,
            )
            result = self.backup_result(done.stdout, done.stderr, done.rc, refused=done.refused)
            if resolve_id:
                full = self._resolve_snapshot(result.snapshot_id)
                result = dataclasses.replace(result, snapshot_id=full, short_id=full[:8])
        return result

    def backup_command(self, paths: Sequence[str], *, tags: Sequence[str] = (), host: str) -> list[str]:
        """The arguments after ``restic`` for a backup run elsewhere (the VM's agent): validated
        like ``backup()``'s, but the paths are the other machine's and not looked at here."""
        return self._backup_args(paths, tags=tags, host=host, time=None, exclude=(), check_paths=False)

    @staticmethod
    def backup_output_reader(on_progress: Callable[[BackupProgress], None] | None) -> Callable[[str], None]:
        """A per-line reader of ``backup --json`` output that turns status lines into progress."""

        def on_line(line: str) -> None:
            if on_progress is None or not line.startswith("{"):
                return
            try:
                doc = json.loads(line)
            except ValueError:
                return
            if isinstance(doc, dict) and doc.get("message_type") == "status":
                on_progress(BackupProgress.from_json(doc))

        return on_line

    def backup_result(
        self, stdout: Sequence[str], stderr: Sequence[str], rc: int, *, refused: str | None = None
    ) -> BackupResult:
        """A finished ``backup --json`` (here or on a VM) judged: summary, unreadable files (exit 3),
        missing sources (restic only warns about them), killed, or the mapped error."""
        summary: dict[str, Any] = {}
        warnings: list[str] = []
        for line in stdout:
            if not line.startswith("{"):
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            kind = doc.get("message_type")
            if kind == "summary":
                summary.update(doc)
            elif kind == "error":
                err = doc.get("error") or {}
                warnings.append(f"{doc.get('during', '')} {doc.get('item', '')}: {err.get('Err', err)}".strip())
        skipped = [line for line in stderr if line.endswith("does not exist, skipping")]
        if rc not in (0, EXIT_INCOMPLETE) or not summary:
            if skipped:
                raise SourceMissing(self._scrub("; ".join(skipped)), backend=BACKEND)
            if rc in (-signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGKILL, 128 + signal.SIGTERM):
                raise BackendResourceFailed(f"backup was killed (signal {abs(rc) % 128})", backend=BACKEND)
            raise self._error("backup", _Completed(rc=rc, stdout=list(stdout), stderr=list(stderr), refused=refused))
        if skipped:  # vanished between our check and restic's scan: still not a backup of what was asked
            raise SourceMissing(self._scrub("; ".join(skipped)), backend=BACKEND)
        short = str(summary.get("snapshot_id", ""))
        return BackupResult(
            snapshot_id=short,
            short_id=short[:8],
            data_added=int(summary.get("data_added", 0)),
            files_new=int(summary.get("files_new", 0)),
            files_changed=int(summary.get("files_changed", 0)),
            files_unmodified=int(summary.get("files_unmodified", 0)),
            total_files_processed=int(summary.get("total_files_processed", 0)),
            total_bytes_processed=int(summary.get("total_bytes_processed", 0)),
            duration_s=float(summary.get("total_duration", 0.0)),
            incomplete=rc == EXIT_INCOMPLETE,
            warnings=tuple(self._scrub(w) for w in warnings),
        )

    def _backup_args(
        self,
        paths: Sequence[str | Path],
        *,
        tags: Sequence[str],
        host: str,
        time: datetime | None,
        exclude: Sequence[str],
        check_paths: bool = True,
    ) -> list[str]:
        if not paths:
            raise InvalidField("paths", "nothing to back up", backend=BACKEND)
        for tag in tags:
            if not _TAG.match(tag):
                raise InvalidField("tags", f"{tag!r}: letters, digits and _.:=/@+- only", backend=BACKEND)
        if not _HOST.match(host):
            raise InvalidField("host", f"{host!r} is not a valid host name", backend=BACKEND)
        absolute = [str(Path(p)) for p in paths]
        missing = [p for p in absolute if check_paths and not os.path.lexists(p)]
        if missing:
            raise SourceMissing(f"source paths do not exist: {', '.join(missing)}", backend=BACKEND)
        args = ["backup", "--json", "--host", host]
        for tag in tags:
            args += ["--tag", tag]
        for pattern in exclude:
            args += ["--exclude", pattern]
        if time is not None:
            if time.tzinfo is None:
                raise InvalidField("time", "must be timezone-aware", backend=BACKEND)
            args += ["--time", time.astimezone(ZoneInfo(self.tz)).strftime(RESTIC_TIME_FORMAT)]
        return [*args, "--", *absolute]

    def _resolve_snapshot(self, short: str) -> str:
        """restic 0.14's summary names the snapshot by its short id; the full id comes from the repository."""
        if len(short) == 64:
            return short
        found = self.snapshots(ids=[short])
        if len(found) != 1:
            raise BackendResourceFailed(f"snapshot {short!r} not found after backup", backend=BACKEND)
        return found[0].id

    def snapshots(
        self, *, ids: Sequence[str] = (), tags: Sequence[str] = (), host: str | None = None
    ) -> list[Snapshot]:
        """Snapshots (oldest first), read without taking a lock."""
        for sid in ids:
            if not _SNAPSHOT_ID.match(sid):
                raise InvalidField("ids", f"{sid!r} is not a snapshot id", backend=BACKEND)
        args = ["snapshots", "--json", "--no-lock"]
        if tags:
            args += ["--tag", ",".join(tags)]
        if host:
            args += ["--host", host]
        done = self._run([*args, *ids])
        if done.rc != 0:
            raise self._error("snapshots", done)
        docs = json.loads("\n".join(done.stdout) or "[]") or []
        return [
            Snapshot(
                id=d["id"],
                short_id=d.get("short_id", d["id"][:8]),
                time=parse_time(d["time"]),
                hostname=d.get("hostname", ""),
                paths=tuple(d.get("paths") or ()),
                tags=tuple(d.get("tags") or ()),
                tree=d.get("tree", ""),
                parent=d.get("parent"),
            )
            for d in docs
        ]

    def ls(self, snapshot: str) -> list[LsEntry]:
        """Every node of a snapshot (``restic ls --json``: newline-delimited, first line the snapshot)."""
        if not _SNAPSHOT_ID.match(snapshot) and snapshot != "latest":
            raise InvalidField("snapshot", f"{snapshot!r} is not a snapshot id", backend=BACKEND)
        done = self._run(["ls", "--json", "--no-lock", snapshot])
        if done.rc != 0:
            raise self._error("ls", done)
        entries = []
        for line in done.stdout:
            if not line.startswith("{"):
                continue
            doc = json.loads(line)
            if doc.get("struct_type") != "node":
                continue
            entries.append(
                LsEntry(
                    path=doc["path"],
                    type=doc.get("type", ""),
                    size=int(doc.get("size", 0)),
                    mode=int(doc.get("mode", 0)),
                    mtime=doc.get("mtime", ""),
                )
            )
        return entries

    def check(self, read_data_subset: str | None = "10%", *, timeout_s: float | None = None) -> list[str]:
        """``restic check --read-data-subset``; ``RepositoryDamaged`` (with restic's findings) on errors."""
        args = ["check"]
        if read_data_subset is not None:
            if not _SUBSET.match(read_data_subset):
                raise InvalidField("read_data_subset", f"{read_data_subset!r}: use 'N%' or 'n/t'", backend=BACKEND)
            args.append(f"--read-data-subset={read_data_subset}")
        with self.serialised():
            done = self._locked_run("check", args, exclusive=True, timeout_s=timeout_s)
        output = [self._scrub(line) for line in done.stdout + done.stderr]
        if done.rc != 0:
            error = self._error("check", done)
            if type(error) in (BackendResourceFailed, RepositoryDamaged):  # restic found errors
                findings = [line.strip() for line in output if line.strip() and not _PROGRESS.match(line.strip())]
                raise RepositoryDamaged(
                    f"check found errors in {self.repository.display_url}: {'; '.join(findings)[-2000:]}",
                    backend=BACKEND,
                )
            raise error
        return output

    def forget(self, snapshot_ids: Sequence[str]) -> None:
        """Remove these snapshots (no prune: that is ``prune()``)."""
        if not snapshot_ids:
            return
        for sid in snapshot_ids:
            if not _SNAPSHOT_ID.match(sid):
                raise InvalidField("snapshot_ids", f"{sid!r} is not a snapshot id", backend=BACKEND)
        with self.serialised():
            done = self._locked_run("forget", ["forget", *snapshot_ids], exclusive=True)
        if done.rc != 0:
            raise self._error("forget", done)

    def forget_policy(
        self, keep_args: Sequence[str], *, dry_run: bool = False, group_by: str = "host,paths"
    ) -> ForgetResult:
        """``restic forget --json --keep-…`` (e.g. ``RetentionPolicy.restic_args()``); what it keeps/removes."""
        if not keep_args or not all(re.match(r"^(--keep-[a-z]+|\d+)$", a) for a in keep_args):
            raise InvalidField("keep_args", f"{list(keep_args)!r}: --keep-<rule> N pairs only", backend=BACKEND)
        args = ["forget", "--json", "--group-by", group_by, *keep_args]
        if dry_run:
            args.append("--dry-run")
        with self.serialised():
            done = self._locked_run("forget", args, exclusive=True)
        if done.rc != 0:
            raise self._error("forget", done)
        payload = next((line for line in done.stdout if line.startswith("[")), "[]")
        keep: list[str] = []
        remove: list[str] = []
        for group in json.loads(payload) or []:
            keep += [s["id"] for s in group.get("keep") or ()]
            remove += [s["id"] for s in group.get("remove") or ()]
        return ForgetResult(keep=tuple(keep), remove=tuple(remove))

    def prune(self, *, timeout_s: float | None = None) -> list[str]:
        with self.serialised():
            done = self._locked_run("prune", ["prune"], exclusive=True, timeout_s=timeout_s)
        if done.rc != 0:
            raise self._error("prune", done)
        return [self._scrub(line) for line in done.stdout]

    def restore(
        self, snapshot: str, target: Path, *, include: Sequence[str] = (), timeout_s: float | None = None
    ) -> None:
        """Restore a snapshot under ``target`` (absolute paths are recreated below it)."""
        if not _SNAPSHOT_ID.match(snapshot) and snapshot != "latest":
            raise InvalidField("snapshot", f"{snapshot!r} is not a snapshot id", backend=BACKEND)
        args = ["restore", snapshot, "--target", str(target)]
        for pattern in include:
            args += ["--include", pattern]
        with self.serialised():
            done = self._locked_run("restore", args, exclusive=False, timeout_s=timeout_s)
        if done.rc != 0:
            raise self._error("restore", done)

    # ------------------------------------------------------------ locks

    def locks(self) -> list[LockInfo]:
        """The repository's lock files, each marked stale or not (read without locking)."""
        done = self._run(["list", "locks", "--no-lock"])
        if done.rc != 0:
            raise self._error("list locks", done)
        found = []
        for lock_id in (line.strip() for line in done.stdout):
            if not re.match(r"^[0-9a-f]{64}$", lock_id):
                continue
            cat = self._run(["cat", "lock", lock_id, "--no-lock"])
            if cat.rc != 0:  # removed in between: not a lock any more
                continue
            doc = json.loads("\n".join(cat.stdout))
            found.append(self._lock_info(lock_id, doc))
        return found

    def _lock_info(self, lock_id: str, doc: Mapping[str, Any]) -> LockInfo:
        created = parse_time(doc["time"])
        hostname = str(doc.get("hostname", ""))
        pid = int(doc.get("pid", 0))
        ours = hostname == self.hostname
        old = self.clock() - created > STALE_AFTER
        stale = (ours and not _pid_is_live_restic(pid)) or (not ours and old)
        return LockInfo(lock_id, hostname, pid, created, bool(doc.get("exclusive", False)), stale)

    def clear_stale_locks(self) -> list[LockInfo]:
        """Remove stale locks (a killed run's), never a live one; returns what was removed."""
        with self.serialised():
            return self._clear_stale_locks_held()

    def _clear_stale_locks_held(self) -> list[LockInfo]:
        # Caller holds the host-level lock: no run of ours on this host uses the repository now.
        locks = self.locks()
        if not locks:
            return []
        live = [lock for lock in locks if not lock.stale]
        stale = [lock for lock in locks if lock.stale]
        if stale:
            log.warning(
                "clearing %d stale restic lock(s) on %s: %s",
                len(stale),
                self.repository.display_url,
                ", ".join(f"{lock.hostname} pid {lock.pid} since {lock.time.isoformat()}" for lock in stale),
            )
            # restic unlock (without --remove-all) removes only what restic itself deems stale.
            done = self._run(["unlock"])
            if done.rc != 0:
                raise self._error("unlock", done)
            left = {lock.id for lock in self.locks()} & {lock.id for lock in stale}
            if left:  # e.g. the dead run's PID now belongs to another process: restic keeps the lock
                raise RepositoryLocked(
                    f"{self.repository.display_url}: restic kept {len(left)} lock(s) we consider stale "
                    "(its PID is in use again?); an operator must check before `restic unlock --remove-all`",
                    backend=BACKEND,
                )
        if live:
            lock = live[0]
            raise RepositoryLocked(
                f"{self.repository.display_url} is locked by {lock.hostname} pid {lock.pid} "
                f"since {lock.time.isoformat()} ({'exclusive' if lock.exclusive else 'shared'})",
                backend=BACKEND,
            )
        return stale
