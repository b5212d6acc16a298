"""Ansible adapter: run a playbook from `playbooks/` with ansible-runner and report per host.

Each run gets a private data directory (a 0700 temporary directory, removed afterwards,
whatever happened) holding the generated inventory, the variables file and the
artifacts. Secrets never reach a command line or a log:

- `secrets` (e.g. a restic password) are written with the other variables to the
  runner's `env/extravars` file (0600) and passed as `-e @file`. They are deliberately
  NOT passed as runner `envvars`: ansible-runner copies its environment, envvars
  included, into `artifacts/<ident>/command`. Playbook tasks that touch them use
  `no_log: true`, and any secret value still found in a failure message is masked.
- `ssh_private_key` goes through the runner's ssh-key facility (a FIFO fed to
  `ssh-agent`; never a regular file).

The event stream becomes `Progress` callbacks (task names, per-host ok/changed/failed
counts). `run()` returns a `PlaybookResult`; `raise_for_status()` maps a failed run into
`provisioners.errors`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ansible_runner

from provisioners.errors import (
    BackendMisconfigured,
    BackendResourceFailed,
    BackendTimeout,
    InvalidField,
    ProvisionerError,
    TransientBackendError,
)

BACKEND = "ansible"
PLAYBOOKS_DIR = Path(__file__).resolve().parent.parent / "playbooks"
DEFAULT_COLLECTIONS_PATH = Path("/var/cache/chutian/ansible-collections")
MASK = "********"

_HOST_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,251}[A-Za-z0-9])?$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAYBOOK = re.compile(r"^[a-z0-9][-a-z0-9_]*\.ya?ml$")
# Connection variables that carry secrets: refused in host vars, they belong in `secrets`.
_SECRET_HOST_VARS = frozenset(
    {"ansible_password", "ansible_ssh_pass", "ansible_ssh_password", "ansible_become_password", "ansible_become_pass"}
)

SecretValue = str | Mapping[str, str]  # a secret, or named secrets (e.g. a backend's credentials)
RunStatus = Literal["successful", "failed", "timeout", "canceled", "unreachable"]


@dataclass(frozen=True)
class Host:
    """One inventory host: `address` becomes `ansible_host`; `vars` are connection vars
    (`ansible_user`, `ansible_port`, `ansible_connection`, `ansible_python_interpreter`…)."""

    name: str
    address: str
    vars: Mapping[str, str | int | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass(frozen=True)
class Progress:
    """One step of the event stream: a task started (`host` None) or a host finished it."""

    task: str
    host: str | None
    event: str
    ok: int
    changed: int
    failed: int


@dataclass(frozen=True)
class PlaybookResult:
    playbook: str
    status: RunStatus
    rc: int
    hosts: Mapping[str, HostStats]
    duration_s: float
    failures: tuple[str, ...] = ()  # "host: task: message", secrets masked

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())

    @property
    def failed(self) -> int:
        return sum(h.failed for h in self.hosts.values())

    @property
    def ok(self) -> int:
        return sum(h.ok for h in self.hosts.values())

    def raise_for_status(self) -> PlaybookResult:
        """Unreachable: retry later; timeout: BackendTimeout; a failed task: an operator looks."""
        detail = "; ".join(self.failures[:5])
        if self.status == "successful":
            return self
        if self.status == "unreachable":
            raise TransientBackendError(f"{self.playbook}: host(s) unreachable: {detail}", backend=BACKEND)
        if self.status == "timeout":
            raise BackendTimeout(f"{self.playbook}: timed out after {self.duration_s:.0f}s", backend=BACKEND)
        raise BackendResourceFailed(f"{self.playbook}: {self.status} (rc={self.rc}): {detail}", backend=BACKEND)


def _check_name(value: str, pattern: re.Pattern[str], field_name: str, what: str) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidField(field_name, f"{value!r} is not {what}", backend=BACKEND)


def inventory(hosts: Sequence[Host]) -> dict[str, Any]:
    """The YAML/JSON inventory for `hosts`, validated."""
    if not hosts:
        raise InvalidField("hosts", "no hosts to run against", backend=BACKEND)
    entries: dict[str, dict[str, Any]] = {}
    for index, host in enumerate(hosts):
        _check_name(host.name, _HOST_NAME, f"hosts[{index}].name", "a host name")
        if host.name in entries:
            raise InvalidField(f"hosts[{index}].name", f"{host.name!r} appears twice", backend=BACKEND)
        if not isinstance(host.address, str) or not host.address or any(c.isspace() for c in host.address):
            raise InvalidField(f"hosts[{index}].address", f"{host.address!r} is not an address", backend=BACKEND)
        for key, value in host.vars.items():
            _check_name(key, _VAR_NAME, f"hosts[{index}].vars", "a variable name")
            if key in _SECRET_HOST_VARS:
                raise InvalidField(
                    f"hosts[{index}].vars.{key}", "a secret: pass it in `secrets`, not in host vars", backend=BACKEND
                )
            if not isinstance(value, str | int | bool):
                raise InvalidField(f"hosts[{index}].vars.{key}", "must be a string, number or bool", backend=BACKEND)
        entries[host.name] = {"ansible_host": host.address, **host.vars}
    return {"all": {"hosts": entries}}


_STATS_KEYS = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")


class _Tracker:
    """Turns runner events into `Progress` callbacks and keeps counts and failure messages."""

    def __init__(
        self,
        progress: Callable[[Progress], None] | None,
        secrets: Sequence[str],
        results: Callable[[str, str, Mapping[str, Any]], None] | None = None,
    ) -> None:
        self._progress = progress
        self._results = results
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.counts: dict[str, dict[str, int]] = {}
        self.failures: list[str] = []
        self.stats: dict[str, dict[str, int]] = {}
        self.task = ""

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = str(event.get("event", ""))
        data = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            self.stats = {key: dict(data.get(key) or {}) for key in _STATS_KEYS}
        elif kind == "runner_retry":  # one attempt of an `until` loop: a task's output while it waits
            self._result(data)
        elif kind == "playbook_on_task_start":
            self.task = str(data.get("task") or data.get("name") or "")
            self._emit(Progress(self.task, None, kind, *self._totals()))
        elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped"):
            host = str(data.get("host", ""))
            counts = self.counts.setdefault(host, {"ok": 0, "changed": 0, "failed": 0})
            result = data.get("res") or {}
            if kind == "runner_on_ok":
                self._result(data)
                counts["ok"] += 1
                counts["changed"] += bool(isinstance(result, Mapping) and result.get("changed"))
            elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
                counts["failed"] += 1
                message = result.get("msg", "") if isinstance(result, Mapping) else ""
                self.failures.append(self.mask(f"{host}: {data.get('task', self.task)}: {message}")[:500])
            self._emit(Progress(str(data.get("task", self.task)), host, kind, *self._totals()))
        return False  # nothing is kept on disk: what we need is counted here

    def _result(self, data: Mapping[str, Any]) -> None:
        result = data.get("res")
        if self._results is not None and isinstance(result, Mapping):
            self._results(str(data.get("task", self.task)), str(data.get("host", "")), result)

    def _totals(self) -> tuple[int, int, int]:
        return (
            sum(c["ok"] for c in self.counts.values()),
            sum(c["changed"] for c in self.counts.values()),
            sum(c["failed"] for c in self.counts.values()),
        )

    def _emit(self, progress: Progress) -> None:
        if self._progress is not None:
            self._progress(progress)


class AnsibleRunner:
    """Runs playbooks from `playbooks_dir` with ansible-runner; one private data dir per run."""

    def __init__(
        self,
        *,
        playbooks_dir: Path = PLAYBOOKS_DIR,
        collections_path: Path | None = DEFAULT_COLLECTIONS_PATH,
        default_timeout_s: float = 1800.0,
        ansible_playbook: str | None = None,
        work_dir: Path | None = None,
        inspect_private_dir: Callable[[Path], None] | None = None,
    ) -> None:
        """`inspect_private_dir` is called with the private data dir just before it is removed (tests)."""
        self.playbooks_dir = playbooks_dir
        self.collections_path = collections_path
        self.default_timeout_s = default_timeout_s
        sibling = Path(sys.executable).with_name("ansible-playbook")
        self.ansible_playbook = ansible_playbook or (str(sibling) if sibling.exists() else "ansible-playbook")
        self.work_dir = work_dir
        self._inspect = inspect_private_dir

    def run(
        self,
        playbook: str,
        hosts: Sequence[Host],
        *,
        extra_vars: Mapping[str, Any] | None = None,
        secrets: Mapping[str, SecretValue] | None = None,
        ssh_private_key: str | None = None,
        known_hosts: str | None = None,
        tags: Sequence[str] = (),
        timeout_s: float | None = None,
        progress: Callable[[Progress], None] | None = None,
        on_result: Callable[[str, str, Mapping[str, Any]], None] | None = None,
    ) -> PlaybookResult:
        """Run `playbook` against `hosts`.

        `on_result(task, host, result)` sees each task's result as it arrives (and each attempt
        of an `until` loop): how a caller reads output a playbook produces while it runs.

        `extra_vars` and `secrets` become playbook variables (a name may not be in both);
        `known_hosts` (OpenSSH format) turns on strict host-key checking, otherwise a new
        host's key is accepted on first contact (each run starts with an empty file).
        """
        _check_name(playbook, _PLAYBOOK, "playbook", "a playbook file name")
        if not (self.playbooks_dir / playbook).is_file():
            raise BackendMisconfigured(f"no playbook {playbook} in {self.playbooks_dir}", backend=BACKEND)
        extra_vars, secrets = dict(extra_vars or {}), dict(secrets or {})
        for name in (*extra_vars, *secrets):
            _check_name(name, _VAR_NAME, "extra_vars" if name in extra_vars else "secrets", "a variable name")
        if overlap := sorted(set(extra_vars) & set(secrets)):
            raise InvalidField("secrets", f"{overlap} also given as extra vars", backend=BACKEND)
        for tag in tags:
            _check_name(tag, _VAR_NAME, "tags", "a tag")
        hosts_inventory = inventory(hosts)
        timeout = timeout_s if timeout_s is not None else self.default_timeout_s

        private = Path(tempfile.mkdtemp(prefix="chutian-ansible-", dir=self.work_dir))
        started = time.monotonic()
        tracker = _Tracker(progress, _strings(secrets), on_result)
        try:
            (private / "env").mkdir(mode=0o700)
            (private / "inventory").mkdir(mode=0o700)
            (private / "inventory" / "hosts.json").write_text(json.dumps(hosts_inventory))
            variables = private / "env" / "extravars"
            with os.fdopen(os.open(variables, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
                json.dump({**extra_vars, **secrets}, out)
            (private / "ansible.cfg").write_text("[defaults]\n")  # ours, not one from the cwd or home
            known_hosts_file = private / "known_hosts"
            known_hosts_file.write_text(known_hosts or "")
            runner = ansible_runner.run(
                private_data_dir=str(private),
                project_dir=str(self.playbooks_dir),
                playbook=playbook,
                inventory=str(private / "inventory" / "hosts.json"),
                envvars=self._environment(private, known_hosts_file, strict=known_hosts is not None),
                ssh_key=ssh_private_key,
                tags=",".join(tags) or None,
                timeout=max(1, math.ceil(timeout)),
                event_handler=tracker,
                suppress_env_files=True,
                quiet=True,
            )
            if self._inspect is not None:
                self._inspect(private)
            result = self._result(playbook, runner, tracker, time.monotonic() - started)
            if result.status != "successful" and not result.failures:  # e.g. a syntax error: no task failed
                tail = [tracker.mask(line) for line in _stdout_tail(private)]
                result = dataclasses.replace(result, failures=tuple(tail))
            return result
        except ProvisionerError:
            raise
        except (OSError, RuntimeError, ValueError) as exc:
            raise BackendMisconfigured(
                f"{playbook}: ansible-runner could not run: {tracker.mask(str(exc))}", backend=BACKEND
            ) from exc
        finally:
            shutil.rmtree(private, ignore_errors=True)

    def baseline(
        self,
        hosts: Sequence[Host],
        *,
        mlps_level: int,
        tcp_ports: Sequence[int] = (22,),
        udp_ports: Sequence[int] = (),
        **options: Any,
    ) -> PlaybookResult:
        """`baseline.yml` at `mlps_level` with the tenant's open ports (options as for `run`)."""
        return self.run(
            "baseline.yml",
            hosts,
            extra_vars=baseline_vars(mlps_level, tcp_ports=tcp_ports, udp_ports=udp_ports),
            tags=baseline_tags(mlps_level),
            **options,
        )

    def backup_agent(
        self,
        hosts: Sequence[Host],
        *,
        policy: str,
        repository: str,
        password: str,
        backend_env: Mapping[str, str] | None = None,
        backup_args: Sequence[str] | None = None,
        sample_files: int = 32,
        **options: Any,
    ) -> PlaybookResult:
        """`backup-agent.yml`: restic and the policy's credentials (0600); the secrets (the
        repository URL too: a gateway's carries its password) never leave the vars file.

        With `backup_args` (``Restic.backup_command``'s) the same run then backs up on the host:
        restic's ``--json`` output goes to a file there, a polling task returns its newest line
        every second (read them with `on_result`: task "Follow the backup"), and the task
        "Backup outcome" returns the summary/error lines, restic's stderr tail and exit code;
        "Sample the source" returns SHA-256 and size of up to `sample_files` files of the
        snapshot, read on the host."""
        extra: dict[str, Any] = {"backup_policy": policy}
        if backup_args is not None:
            extra |= {"restic_backup_args": list(backup_args), "backup_sample_files": sample_files}
            options.setdefault("tags", ("agent", "backup"))
        return self.run(
            "backup-agent.yml",
            hosts,
            extra_vars=extra,
            secrets={
                "restic_repository": repository,
                "restic_password": password,
                "restic_backend_env": dict(backend_env or {}),
            },
            **options,
        )

    def _environment(self, private: Path, known_hosts: Path, *, strict: bool) -> dict[str, str]:
        checking = "yes" if strict else "accept-new"
        env = {
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
            "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(private / "cp"),
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=15s",
            "ANSIBLE_SSH_COMMON_ARGS": (
                f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking={checking} "
                "-o PasswordAuthentication=no -o BatchMode=yes"
            ),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_CONFIG": str(private / "ansible.cfg"),
            "ANSIBLE_PIPELINING": "True",
        }
        if self.collections_path is not None:
            env["ANSIBLE_COLLECTIONS_PATH"] = str(self.collections_path)
        bin_dir = Path(self.ansible_playbook).parent
        if str(bin_dir) not in ("", "."):  # the runner calls `ansible-playbook` from PATH: ours first
            env["PATH"] = os.pathsep.join([str(bin_dir), os.environ.get("PATH", os.defpath)])
        return env

    def _result(self, playbook: str, runner: Any, tracker: _Tracker, duration_s: float) -> PlaybookResult:
        stats = tracker.stats  # from the playbook_on_stats event (the runner keeps no events on disk)
        names = set(tracker.counts)
        for table in stats.values():
            names |= set(table)
        hosts = {
            name: HostStats(
                ok=int(stats.get("ok", {}).get(name, 0)),
                changed=int(stats.get("changed", {}).get(name, 0)),
                failed=int(stats.get("failures", {}).get(name, 0)),
                unreachable=int(stats.get("dark", {}).get(name, 0)),
                skipped=int(stats.get("skipped", {}).get(name, 0)),
                rescued=int(stats.get("rescued", {}).get(name, 0)),
                ignored=int(stats.get("ignored", {}).get(name, 0)),
            )
            for name in sorted(names)
        }
        status: RunStatus = runner.status if runner.status in ("successful", "timeout", "canceled") else "failed"
        if (
            status == "failed"
            and any(h.unreachable for h in hosts.values())
            and not any(h.failed for h in hosts.values())
        ):
            status = "unreachable"
        return PlaybookResult(
            playbook=playbook,
            status=status,
            rc=int(runner.rc if runner.rc is not None else -1),
            hosts=hosts,
            duration_s=round(duration_s, 3),
            failures=tuple(tracker.failures),
        )


def _strings(value: Any) -> list[str]:
    """Every string inside `value` (secrets may be nested one level: NAME → value)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in _strings(item)]
    return []


def _stdout_tail(private: Path, lines: int = 15) -> list[str]:
    text = "".join(p.read_text(errors="replace") for p in sorted(private.glob("artifacts/*/stdout")))
    return [line[:300] for line in text.strip().splitlines()[-lines:]]


def baseline_vars(
    mlps_level: int, *, tcp_ports: Sequence[int] = (22,), udp_ports: Sequence[int] = ()
) -> dict[str, Any]:
    """Extra vars for `baseline.yml`."""
    return {"mlps_level": mlps_level, "allowed_tcp_ports": list(tcp_ports), "allowed_udp_ports": list(udp_ports)}


def baseline_tags(mlps_level: int) -> tuple[str, ...]:
    """`baseline.yml`'s tag for an MLPS level: level 2 → `mlps2`, level 3 and 4 → `mlps3`."""
    if mlps_level not in (2, 3, 4):
        raise InvalidField("mlps_level", f"{mlps_level!r} is not one of 2, 3, 4", backend=BACKEND)
    return ("mlps2",) if mlps_level == 2 else ("mlps3",)
