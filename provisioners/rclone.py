"""The append-only gateway in front of the DR object store: ``rclone serve restic --append-only``.

A city's restic writes through it (``rest:http://…@127.0.0.1:<port>/<prefix>``), never to
Swift directly.  The gateway holds the Swift credential (a Swift user that the DR admin
granted read/write on this one container); the city holds only the gateway's user and
password.  Append-only: the gateway refuses every deletion except restic's own lock files,
so a stolen city credential cannot delete history.  Retention (``forget``/``prune``) runs
at the DR side only, with restic straight against Swift and the DR credentials.

Secrets never reach arguments or logs: the Swift key goes into ``RCLONE_CONFIG_<REMOTE>_KEY``
and the gateway's password into ``RCLONE_PASS`` (rclone reads every flag from
``RCLONE_<FLAG>``), in the child's environment only.  Stopped by PID (the handle, or the
PID file with its start time), never by name.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

from provisioners.errors import BackendMisconfigured, BackendTimeout, InvalidField, ResourceConflict

BACKEND: Final = "rclone"
REMOTE: Final = "DRSTORE"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwiftCredential:
    """How the gateway logs in to Swift: v1 (tempauth) or Keystone v3 (``auth_version='3'``)."""

    auth_url: str
    user: str
    key: str = field(repr=False)
    auth_version: str = "1"
    tenant: str | None = None
    domain: str | None = None
    tenant_domain: str | None = None
    region: str | None = None

    def rclone_env(self, remote: str = REMOTE) -> dict[str, str]:
        prefix = f"RCLONE_CONFIG_{remote.upper()}_"
        env = {
            "TYPE": "swift",
            "AUTH": self.auth_url,
            "USER": self.user,
            "KEY": self.key,
            "AUTH_VERSION": self.auth_version,
        }
        for name, value in (
            ("TENANT", self.tenant),
            ("DOMAIN", self.domain),
            ("TENANT_DOMAIN", self.tenant_domain),
            ("REGION", self.region),
        ):
            if value:
                env[name] = value
        return {prefix + k: v for k, v in env.items()}


def _proc_start(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2 :].split()
    return None if rest[0] in ("Z", "X") else int(rest[19])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class AppendOnlyGateway:
    """One ``rclone serve restic --append-only`` for one Swift container, on a loopback port.

    ``state_dir`` keeps the PID file and the log; ``url(prefix)`` is the repository URL a
    city's restic uses (it contains the gateway password: pass it via ``RESTIC_REPOSITORY``).
    """

    def __init__(
        self,
        swift: SwiftCredential,
        container: str,
        *,
        user: str,
        password: str,
        state_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        binary: str = "rclone",
    ) -> None:
        if not container or "/" in container:
            raise InvalidField("container", f"{container!r} is not a container name", backend=BACKEND)
        if not user or ":" in user or not password:
            raise InvalidField("user", "a user without ':' and a non-empty password are required", backend=BACKEND)
        self.swift = swift
        self.container = container
        self.user = user
        self._password = password
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"AppendOnlyGateway({self.container!r} on {self.host}:{self.port})"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / f"rclone-{self.port}.pid"

    @property
    def logfile(self) -> Path:
        return self.state_dir / f"rclone-{self.port}.log"

    def url(self, prefix: str) -> str:
        """``rest:`` URL of the repository at ``prefix`` inside the container, with the gateway credentials."""
        path = prefix.strip("/")
        user = urllib.parse.quote(self.user, safe="")
        password = urllib.parse.quote(self._password, safe="")
        return f"rest:http://{user}:{password}@{self.host}:{self.port}/{path}/"

    def _env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "SSL_CERT_FILE") if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(self.swift.rclone_env())
        env["RCLONE_CONFIG"] = str(self.state_dir / "rclone.conf")  # empty: the remote comes from the env
        env["RCLONE_USER"] = self.user
        env["RCLONE_PASS"] = self._password
        return env

    def running(self) -> bool:
        info = self._read_pidfile()
        return info is not None and _proc_start(info["pid"]) == info["starttime"]

    def _read_pidfile(self) -> dict[str, int] | None:
        try:
            info: dict[str, int] = json.loads(self.pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return info

    def start(self, *, timeout_s: float = 15.0) -> None:
        """Start the gateway and wait until it answers (an unauthenticated request gets 401)."""
        if self.running():
            raise ResourceConflict(f"a gateway already runs on {self.host}:{self.port}", backend=BACKEND)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "rclone.conf").touch(mode=0o600)
        cmd = [
            self.binary,
            "serve",
            "restic",
            "--append-only",
            "--addr",
            f"{self.host}:{self.port}",
            "--log-level",
            "NOTICE",
            f"{REMOTE}:{self.container}",
        ]
        log.info("starting append-only gateway for container %s on %s:%d", self.container, self.host, self.port)
        try:
            with self.logfile.open("ab") as out:
                self._proc = subprocess.Popen(
                    cmd,
                    env=self._env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except FileNotFoundError as err:
            raise BackendMisconfigured(f"rclone binary {self.binary!r} not found", backend=BACKEND) from err
        start = _proc_start(self._proc.pid) or 0
        self.pidfile.write_text(json.dumps({"pid": self._proc.pid, "starttime": start}) + "\n")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.logfile.read_text(errors="replace")[-800:]
                self.pidfile.unlink(missing_ok=True)
                raise BackendMisconfigured(f"the gateway exited at start (exit {self._proc.returncode}): {tail}")
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise BackendTimeout(f"the gateway on {self.host}:{self.port} did not answer within {timeout_s:.0f} s")

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
        try:
            conn.request("GET", "/")
            return conn.getresponse().status == 401
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL, the process we started (by handle, or by PID file and start time)."""
        info = self._read_pidfile()
        pid = self._proc.pid if self._proc is not None else (info["pid"] if info else None)
        if pid is not None and (self._proc is not None or (info and _proc_start(pid) == info["starttime"])):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self._alive(pid):
                time.sleep(0.05)
            if self._alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if self._proc is not None:
                self._proc.wait(timeout=timeout_s)
        self._proc = None
        self.pidfile.unlink(missing_ok=True)

    def _alive(self, pid: int) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return _proc_start(pid) is not None

    def __enter__(self) -> AppendOnlyGateway:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
