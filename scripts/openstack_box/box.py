"""scripts/openstack-box: a real, local OpenStack for the control plane's tests.

Keystone, Placement, Nova (fake compute driver), Cinder (sparse-file volumes,
posix backups), Glance and an API-only Neutron, from PyPI releases, in their
own virtualenv under OPENSTACK_BOX_DIR, each on 127.0.0.1. MariaDB and
RabbitMQ are the machine's own. See docs/openstack-box.md.

Standard library only: runs on the machine's Python 3.11 before the box's
virtualenv exists.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import configs as cfg
from boxlib import BoxError, Console, apt_install, install_hash, python311, run, tail

HERE = Path(__file__).resolve().parent
BOX = Path(os.environ.get("OPENSTACK_BOX_DIR", "/var/tmp/chutian-openstack-box"))  # noqa: S108
WHEELHOUSE = Path(os.environ.get("OPENSTACK_BOX_WHEELHOUSE", "/var/cache/chutian/openstack-wheels"))
VENV = BOX / "venv"
LOG = BOX / "log"
RUN = BOX / "run"
LIB = BOX / "lib"
INSTALL_STAMP = VENV / ".chutian-box-install.sha256"
INIT_STAMP = BOX / "init.done"
APT_PACKAGES = ("qemu-utils",)  # qemu-img, for Cinder/Glance image conversions
LIB_FILES = ("box_wsgi.py", "box_cinder_driver.py")
MARKER = "CHUTIAN_BOX_DIR"  # in every service's environment
BOX_VERSION = "1"  # bump to force a reinstall

SETTINGS = cfg.Settings(
    box=str(BOX),
    venv=str(VENV),
    db_host=os.environ.get("OPENSTACK_BOX_DB_HOST", "127.0.0.1"),
    db_port=int(os.environ.get("OPENSTACK_BOX_DB_PORT", "3306")),
    db_user=os.environ.get("OPENSTACK_BOX_DB_USER", "root"),
    db_password=os.environ.get("OPENSTACK_BOX_DB_PASSWORD", ""),
    rabbit_host=os.environ.get("OPENSTACK_BOX_RABBIT_HOST", "127.0.0.1"),
    rabbit_port=int(os.environ.get("OPENSTACK_BOX_RABBIT_PORT", "5672")),
    rabbit_user=os.environ.get("OPENSTACK_BOX_RABBIT_USER", "guest"),
    rabbit_password=os.environ.get("OPENSTACK_BOX_RABBIT_PASSWORD", "guest"),
)


_console = Console("openstack-box")
say, out, timing = _console.say, _console.out, _console.timing


# ---------------------------------------------------------------- install


def _python311() -> str:
    return python311("the services are pinned for Python 3.11")


def _install_hash(python: str) -> str:
    files = [HERE / name for name in ("requirements.txt", "constraints.txt")]
    return install_hash(python, BOX_VERSION, files, extra=(" ".join(APT_PACKAGES),))


def _apt_install(packages: Iterable[str]) -> None:
    apt_install(packages, LOG / "install.log", say)


def _pip_install_offline(log: Path) -> int:
    return run(
        [
            str(VENV / "bin/python"),
            "-m",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            str(WHEELHOUSE),
            "-c",
            str(HERE / "constraints.txt"),
            "-r",
            str(HERE / "requirements.txt"),
        ],
        log,
        check=False,
    )


def cmd_install(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    LOG.mkdir(parents=True, exist_ok=True)
    _apt_install(APT_PACKAGES)
    python = _python311()
    want = _install_hash(python)
    if (
        not args.force
        and INSTALL_STAMP.exists()
        and INSTALL_STAMP.read_text().strip() == want
        and (VENV / "bin/nova-compute").exists()
    ):
        say(f"install: virtualenv {VENV} is up to date")
        timing("install", time.monotonic() - t0)
        return 0
    log = LOG / "install.log"
    say(f"install: building {VENV} (log: {log})")
    if VENV.exists():
        shutil.rmtree(VENV)
    run([python, "-m", "venv", str(VENV)], log)
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    if _pip_install_offline(log) != 0:
        say(f"install: filling the wheelhouse {WHEELHOUSE} from the package index (once)")
        run(
            [
                str(VENV / "bin/python"),
                "-m",
                "pip",
                "wheel",
                "--wheel-dir",
                str(WHEELHOUSE),
                "--find-links",
                str(WHEELHOUSE),
                "-c",
                str(HERE / "constraints.txt"),
                "-r",
                str(HERE / "requirements.txt"),
            ],
            log,
        )
        if _pip_install_offline(log) != 0:
            raise BoxError(f"pip install from the wheelhouse failed (see {log})")
    INSTALL_STAMP.write_text(want + "\n")
    say("install: done")
    timing("install", time.monotonic() - t0)
    return 0


def _require_install() -> None:
    if not INSTALL_STAMP.exists() or INSTALL_STAMP.read_text().strip() != _install_hash(_python311()):
        raise BoxError("the box's virtualenv is missing or stale: run `scripts/openstack-box install` first")


# ---------------------------------------------------------------- services


@dataclass
class Service:
    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    stop_timeout: float = 15.0

    @property
    def pidfile(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return LOG / f"{self.name}.log"


def _gunicorn(name: str, env: dict[str, str]) -> Service:
    port = cfg.PORTS[name]
    cmd = [
        str(VENV / "bin/gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--worker-class",
        "gthread",
        "--threads",
        "8",
        "--timeout",
        "300",
        "--graceful-timeout",
        "5",
        # No keep-alive: a client reusing a connection the server is closing
        # after its idle timeout gets "RemoteDisconnected" (seen with 2 s polls).
        "--keep-alive",
        "0",
        "--pythonpath",
        str(LIB),
        "--name",
        f"chutian-box-{name}",
        "box_wsgi:application",
    ]
    return Service(name, cmd, {"CHUTIAN_BOX_SERVICE": name, **env}, port)


def services() -> list[Service]:
    nova_conf = str(BOX / "etc/nova/nova.conf")
    cinder_conf = str(BOX / "etc/cinder/cinder.conf")
    bin_ = VENV / "bin"
    return [
        _gunicorn("keystone", {"OS_KEYSTONE_CONFIG_DIR": str(BOX / "etc/keystone")}),
        _gunicorn("placement", {"OS_PLACEMENT_CONFIG_DIR": str(BOX / "etc/placement")}),
        _gunicorn("glance-api", {"OS_GLANCE_CONFIG_DIR": str(BOX / "etc/glance")}),
        _gunicorn(
            "neutron-api",
            {
                "OS_NEUTRON_CONFIG_DIR": str(BOX / "etc/neutron"),
                "OS_NEUTRON_CONFIG_FILES": "neutron.conf;ml2_conf.ini",
            },
        ),
        _gunicorn("nova-api", {"OS_NOVA_CONFIG_DIR": str(BOX / "etc/nova")}),
        _gunicorn("cinder-api", {"CHUTIAN_BOX_CINDER_CONF": cinder_conf}),
        Service("nova-conductor", [str(bin_ / "nova-conductor"), "--config-file", nova_conf]),
        Service("nova-scheduler", [str(bin_ / "nova-scheduler"), "--config-file", nova_conf]),
        Service("nova-compute", [str(bin_ / "nova-compute"), "--config-file", nova_conf]),
        # Cinder's services ignore SIGTERM for a while: wait less, then SIGKILL.
        Service("cinder-scheduler", [str(bin_ / "cinder-scheduler"), "--config-file", cinder_conf], stop_timeout=8),
        Service(
            "cinder-volume",
            [str(bin_ / "cinder-volume"), "--config-file", cinder_conf],
            {"PYTHONPATH": str(LIB)},
            stop_timeout=8,
        ),
        Service(
            "cinder-backup",
            [str(bin_ / "cinder-backup"), "--config-file", cinder_conf],
            {"PYTHONPATH": str(LIB)},
            stop_timeout=8,
        ),
    ]


def service_by_name(name: str) -> Service:
    for svc in services():
        if svc.name == name:
            return svc
    raise KeyError(name)


# ------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[int, int, int, str] | None:
    """(ppid, pgrp, starttime, state) of a process, or None if it's gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2 :].split()
    # fields after the command: state(3) ppid(4) pgrp(5) ... starttime(22)
    return int(rest[1]), int(rest[2]), int(rest[19]), rest[0]


def _all_procs() -> dict[int, tuple[int, int, int, str]]:
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st:
                procs[int(entry)] = st
    return procs


def _read_pidfile(svc: Service) -> dict | None:
    try:
        return json.loads(svc.pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _alive(info: dict | None) -> bool:
    if not info:
        return False
    st = _proc_stat(info["pid"])
    return bool(st) and st[2] == info["starttime"] and st[3] not in ("Z", "X")


def _family(info: dict) -> dict[int, int]:
    """pid -> starttime of a service's processes: its process group and the leader's descendants.

    Members of the process group are ours even when the leader is gone (a group
    id is not reused while the group has members); descendants are only
    followed from a leader whose start time matches the PID file.
    """
    procs = _all_procs()
    pid = info["pid"]
    res: dict[int, int] = {}
    if pid in procs and procs[pid][2] == info["starttime"]:
        res[pid] = procs[pid][2]
    for p, (_ppid, pgrp, start, state) in procs.items():
        if pgrp == pid and state not in ("Z", "X"):
            res[p] = start
    changed = True
    while changed:
        changed = False
        for p, (ppid, _pgrp, start, _state) in procs.items():
            if ppid in res and p not in res:
                res[p] = start
                changed = True
    return res


def _signal_family(family: dict[int, int], sig: int) -> None:
    for pid, start in family.items():
        st = _proc_stat(pid)
        if st and st[2] == start and st[3] not in ("Z", "X"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def _living(family: dict[int, int]) -> list[int]:
    res = []
    for pid, start in family.items():
        st = _proc_stat(pid)
        if st and st[2] == start and st[3] not in ("Z", "X"):
            res.append(pid)
    return res


def launch(svc: Service) -> subprocess.Popen:
    RUN.mkdir(parents=True, exist_ok=True)
    LOG.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **svc.env, MARKER: str(BOX)}
    env.pop("OS_CLOUD", None)
    with svc.log.open("a") as fh:
        fh.write(f"\n===== {dt.datetime.now().isoformat(timespec='seconds')} starting {svc.name}\n")
        fh.flush()
        proc = subprocess.Popen(
            svc.cmd,
            env=env,
            cwd=str(BOX),
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: stop signals the whole group
        )
    st = _proc_stat(proc.pid)
    info = {"pid": proc.pid, "starttime": st[2] if st else 0, "started_at": time.time(), "cmd": svc.cmd}
    svc.pidfile.write_text(json.dumps(info) + "\n")
    return proc


def stop_services(svcs: list[Service]) -> list[str]:
    """Stop services by their PID files: SIGTERM, wait, then SIGKILL; return leftovers (none)."""
    infos: dict[str, dict] = {}
    families: dict[str, dict[int, int]] = {}
    for svc in svcs:
        info = _read_pidfile(svc)
        if info is None:
            continue
        fam = _family(info)
        if not _living(fam):
            svc.pidfile.unlink(missing_ok=True)
            continue
        infos[svc.name], families[svc.name] = info, fam
        _signal_family(fam, signal.SIGTERM)
    by_name = {s.name: s for s in svcs}
    t0 = time.monotonic()
    pending = set(families)
    while pending and time.monotonic() - t0 < 90:
        time.sleep(0.25)
        for name in sorted(pending):
            # re-scan: a process started while we wait (a privsep helper, a
            # respawned worker) belongs to the service all the same
            families[name].update(_family(infos[name]))
            if not _living(families[name]):
                pending.discard(name)
                by_name[name].pidfile.unlink(missing_ok=True)
            elif time.monotonic() - t0 > by_name[name].stop_timeout:
                if not infos[name].get("killed"):
                    say(f"{name} still running after {by_name[name].stop_timeout:.0f}s: SIGKILL")
                    infos[name]["killed"] = True
                _signal_family(families[name], signal.SIGKILL)
    leftovers = []
    for name, fam in families.items():
        leftovers += [f"{name}:{pid}" for pid in _living(fam)]
    return leftovers


def _marked_processes() -> list[int]:
    """Processes that carry this box's marker in their environment (for verification only)."""
    found = []
    needle = f"{MARKER}={BOX}\0".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes() + b"\0"
        except OSError:
            continue
        st = _proc_stat(int(entry))
        if needle in environ and st and st[3] not in ("Z", "X"):
            found.append(int(entry))
    return found


# ------------------------------------------------------------------ HTTP


def http(
    method: str, url: str, token: str | None = None, body: dict | None = None, timeout: float = 10.0
) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http://127.0.0.1 only)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            raw = resp.read()
            status, headers = resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw = err.read()
        status, headers = err.code, dict(err.headers)
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError:
        doc = {}
    return status, doc, headers


def probe(port: int, timeout: float = 5.0) -> tuple[bool, str]:
    """A real HTTP request with a timeout (a gunicorn master without a live worker still accepts)."""
    t0 = time.monotonic()
    try:
        status, _doc, _h = http("GET", f"http://127.0.0.1:{port}/", timeout=timeout)
    except (OSError, urllib.error.URLError) as err:
        return False, f"no answer ({getattr(err, 'reason', err)})"
    took = time.monotonic() - t0
    return status < 500, f"HTTP {status} in {took:.2f}s"


def admin_token(password: str = cfg.ADMIN_PASSWORD, timeout: float = 10.0) -> tuple[str, str]:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": cfg.ADMIN_USER, "domain": {"id": "default"}, "password": password}},
            },
            "scope": {"project": {"name": cfg.ADMIN_PROJECT, "domain": {"id": "default"}}},
        }
    }
    status, doc, headers = http("POST", f"{cfg.KEYSTONE_URL}/auth/tokens", body=body, timeout=timeout)
    if status != 201:
        raise BoxError(f"keystone refused the admin token (HTTP {status}): {doc}")
    return headers["X-Subject-Token"], doc["token"]["project"]["id"]


def _parse_ts(value: str | None) -> float:
    if not value:
        return 0.0
    value = value.replace("Z", "").split("+")[0]
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC).timestamp()


def worker_health(token: str, project_id: str) -> dict[str, tuple[bool, str]]:
    """Health of the RPC services as their APIs list them (state up, heartbeat since this start)."""
    res: dict[str, tuple[bool, str]] = {}
    rows: list[dict] = []
    status, doc, _ = http("GET", cfg.url("nova-api") + "/v2.1/os-services", token)
    if status == 200:
        rows += doc.get("services", [])
    status, doc, _ = http("GET", cfg.url("cinder-api") + f"/v3/{project_id}/os-services", token)
    if status == 200:
        rows += doc.get("services", [])
    for row in rows:
        name = row["binary"]
        info = None
        with contextlib.suppress(KeyError):
            info = _read_pidfile(service_by_name(name))
        fresh = info is not None and _parse_ts(row.get("updated_at")) >= info["started_at"] - 2
        ok = row.get("state") == "up" and row.get("status") == "enabled" and fresh
        detail = f"{row.get('state')}/{row.get('status')} host={row.get('host')} updated={row.get('updated_at')}"
        if not fresh:
            detail += " (no heartbeat since this start)"
        if name in res and res[name][0] and not ok:
            continue  # keep a healthy row (e.g. an old host's row next to ours)
        res[name] = (ok, detail)
    status, doc, _ = http("GET", cfg.url("nova-api") + "/v2.1/os-hypervisors", token)
    hypers = doc.get("hypervisors", []) if status == 200 else []
    up = [h for h in hypers if h.get("state") == "up" and h.get("status") == "enabled"]
    res["hypervisor"] = (
        bool(up),
        ", ".join(f"{h['hypervisor_hostname']}:{h.get('state')}" for h in hypers) or "none visible",
    )
    return res


WORKERS = (
    "nova-conductor",
    "nova-scheduler",
    "nova-compute",
    "cinder-scheduler",
    "cinder-volume",
    "cinder-backup",
)


def health() -> dict[str, tuple[bool, str]]:
    result: dict[str, tuple[bool, str]] = {}
    for svc in services():
        if svc.port:
            result[svc.name] = probe(svc.port)
    try:
        token, project_id = admin_token(timeout=5)
        wh = worker_health(token, project_id)
    except (OSError, BoxError, urllib.error.URLError, KeyError, ValueError) as err:
        wh = {}
        reason = f"unknown: no admin token ({err})"
    else:
        reason = "not listed by the API"
    for name in (*WORKERS, "hypervisor"):
        result[name] = wh.get(name, (False, reason))
    return result


# ------------------------------------------------------------------ init


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _copy_lib() -> None:
    LIB.mkdir(parents=True, exist_ok=True)
    for name in LIB_FILES:
        shutil.copyfile(HERE / name, LIB / name)


def write_configs() -> None:
    s = SETTINGS
    venv_etc = VENV / "etc"
    _write(BOX / "etc/keystone/keystone.conf", cfg.keystone_conf(s))
    _write(BOX / "etc/placement/placement.conf", cfg.placement_conf(s))
    _write(BOX / "etc/nova/nova.conf", cfg.nova_conf(s))
    shutil.copyfile(venv_etc / "nova/api-paste.ini", BOX / "etc/nova/api-paste.ini")
    _write(BOX / "etc/cinder/cinder.conf", cfg.cinder_conf(s))
    _write(BOX / "etc/cinder/api-paste.ini", cfg.CINDER_API_PASTE)
    shutil.copyfile(venv_etc / "cinder/rootwrap.conf", BOX / "etc/cinder/rootwrap.conf")
    _write(BOX / "etc/glance/glance-api.conf", cfg.glance_conf(s))
    shutil.copyfile(venv_etc / "glance/glance-api-paste.ini", BOX / "etc/glance/glance-api-paste.ini")
    _write(BOX / "etc/neutron/neutron.conf", cfg.neutron_conf(s))
    _write(BOX / "etc/neutron/ml2_conf.ini", cfg.ML2_CONF)
    shutil.copyfile(venv_etc / "neutron/api-paste.ini", BOX / "etc/neutron/api-paste.ini")
    for svc in ("nova", "cinder", "glance", "neutron", "keystone", "placement"):
        Path(s.state(svc), "lock").mkdir(parents=True, exist_ok=True)
    for sub in ("instances",):
        Path(s.state("nova"), sub).mkdir(parents=True, exist_ok=True)
    for sub in ("volumes", "backups", "coordination"):
        Path(s.state("cinder"), sub).mkdir(parents=True, exist_ok=True)
    for sub in ("images", "staging", "tasks"):
        Path(s.state("glance"), sub).mkdir(parents=True, exist_ok=True)
    _copy_lib()
    _write(BOX / "clouds.yaml", cfg.clouds_yaml())


_RESET_DBS = """
import sys, pymysql
names = sys.argv[1:]
assert all(n.startswith("chutian_box_") for n in names)
conn = pymysql.connect(host={host!r}, port={port}, user={user!r}, password={password!r}, autocommit=True)
with conn.cursor() as cur:
    for name in names:
        cur.execute(f"DROP DATABASE IF EXISTS `{{name}}`")
        cur.execute(f"CREATE DATABASE `{{name}}` CHARACTER SET utf8 COLLATE utf8_general_ci")
"""


def reset_databases(log: Path) -> None:
    code = _RESET_DBS.format(
        host=SETTINGS.db_host, port=SETTINGS.db_port, user=SETTINGS.db_user, password=SETTINGS.db_password
    )
    run([str(VENV / "bin/python"), "-c", code, *cfg.DATABASES], log)


def reset_vhost(log: Path) -> None:
    vhost = cfg.RABBIT_VHOST
    res = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, check=True).stdout
    if vhost in res.split():
        run(["rabbitmqctl", "-q", "delete_vhost", vhost], log)
    run(["rabbitmqctl", "-q", "add_vhost", vhost], log)
    run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, SETTINGS.rabbit_user, ".*", ".*", ".*"], log)


def _db_chains() -> dict[str, list[list[str]]]:
    b = str(VENV / "bin")
    ks = ["--config-file", str(BOX / "etc/keystone/keystone.conf")]
    nova = ["--config-file", str(BOX / "etc/nova/nova.conf")]
    neutron = [
        "--config-file",
        str(BOX / "etc/neutron/neutron.conf"),
        "--config-file",
        str(BOX / "etc/neutron/ml2_conf.ini"),
    ]
    return {
        "keystone": [
            [
                f"{b}/keystone-manage",
                *ks,
                "fernet_setup",
                "--keystone-user",
                "root",
                "--keystone-group",
                "root",
            ],
            [
                f"{b}/keystone-manage",
                *ks,
                "credential_setup",
                "--keystone-user",
                "root",
                "--keystone-group",
                "root",
            ],
            [f"{b}/keystone-manage", *ks, "db_sync"],
            [
                f"{b}/keystone-manage",
                *ks,
                "bootstrap",
                "--bootstrap-password",
                cfg.ADMIN_PASSWORD,
                "--bootstrap-username",
                cfg.ADMIN_USER,
                "--bootstrap-project-name",
                cfg.ADMIN_PROJECT,
                "--bootstrap-role-name",
                "admin",
                "--bootstrap-service-name",
                "keystone",
                "--bootstrap-region-id",
                cfg.REGION,
                "--bootstrap-admin-url",
                cfg.KEYSTONE_URL,
                "--bootstrap-internal-url",
                cfg.KEYSTONE_URL,
                "--bootstrap-public-url",
                cfg.KEYSTONE_URL,
            ],
        ],
        "nova": [
            [f"{b}/nova-manage", *nova, "api_db", "sync"],
            [
                f"{b}/nova-manage",
                *nova,
                "cell_v2",
                "map_cell0",
                "--database_connection",
                SETTINGS.db("chutian_box_nova_cell0"),
            ],
            [f"{b}/nova-manage", *nova, "cell_v2", "create_cell", "--name", "cell1", "--verbose"],
            [f"{b}/nova-manage", *nova, "db", "sync"],
        ],
        "placement": [
            [
                f"{b}/placement-manage",
                "--config-file",
                str(BOX / "etc/placement/placement.conf"),
                "db",
                "sync",
            ]
        ],
        "cinder": [[f"{b}/cinder-manage", "--config-file", str(BOX / "etc/cinder/cinder.conf"), "db", "sync"]],
        "glance": [[f"{b}/glance-manage", "--config-file", str(BOX / "etc/glance/glance-api.conf"), "db_sync"]],
        "neutron": [[f"{b}/neutron-db-manage", *neutron, "upgrade", "heads"]],
    }


def _run_chain(name: str, cmds: list[list[str]]) -> float:
    t0 = time.monotonic()
    log = LOG / f"init-{name}.log"
    log.unlink(missing_ok=True)
    for cmd in cmds:
        run(cmd, log)
    return time.monotonic() - t0


class Keystone:
    """Tiny admin client for init/start (stdlib only)."""

    def __init__(self) -> None:
        self.token, self.project_id = admin_token()

    def call(self, method: str, path: str, body: dict | None = None, ok: Iterable[int] = (200, 201, 204)) -> dict:
        status, doc, _ = http(method, cfg.KEYSTONE_URL + path, self.token, body)
        if status not in ok:
            raise BoxError(f"keystone {method} {path}: HTTP {status} {doc}")
        return doc

    def find(self, collection: str, **query: str) -> dict | None:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        items = self.call("GET", f"/{collection}?{qs}")[collection]
        return items[0] if items else None

    def ensure(self, collection: str, body: dict, **query: str) -> dict:
        found = self.find(collection, **query)
        if found:
            return found
        singular = collection[:-1]
        return self.call("POST", f"/{collection}", {singular: body})[singular]


def register_catalog() -> None:
    ks = Keystone()
    project = ks.ensure(
        "projects",
        {"name": cfg.SERVICE_PROJECT, "domain_id": "default", "description": "box service users"},
        name=cfg.SERVICE_PROJECT,
    )
    roles = {r: ks.ensure("roles", {"name": r}, name=r)["id"] for r in ("admin", "service")}
    for user in cfg.SERVICE_USERS:
        u = ks.ensure("users", {"name": user, "domain_id": "default", "password": cfg.SERVICE_PASSWORD}, name=user)
        for rid in roles.values():
            ks.call("PUT", f"/projects/{project['id']}/users/{u['id']}/roles/{rid}")
    for stype, sname, endpoint in cfg.CATALOG:
        svc = ks.ensure("services", {"type": stype, "name": sname, "enabled": True}, type=stype)
        for iface in ("public", "internal", "admin"):
            existing = ks.call("GET", f"/endpoints?service_id={svc['id']}&interface={iface}")["endpoints"]
            if not existing:
                ks.call(
                    "POST",
                    "/endpoints",
                    {
                        "endpoint": {
                            "service_id": svc["id"],
                            "interface": iface,
                            "url": endpoint,
                            "region_id": cfg.REGION,
                            "enabled": True,
                        }
                    },
                )


def cmd_init(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    _require_install()
    if any(_alive(_read_pidfile(s)) for s in services()):
        say("init: stopping the running box first")
    leftovers = stop_services(list(reversed(services())))  # also clears stale PID files
    if leftovers:
        raise BoxError(f"could not stop the running box: {leftovers}")
    LOG.mkdir(parents=True, exist_ok=True)
    log = LOG / "init.log"
    log.unlink(missing_ok=True)
    INIT_STAMP.unlink(missing_ok=True)
    for sub in ("etc", "state", "lib"):
        shutil.rmtree(BOX / sub, ignore_errors=True)
    say("init: writing configs")
    write_configs()
    say(f"init: (re)creating databases {', '.join(cfg.DATABASES)} and vhost {cfg.RABBIT_VHOST}")
    reset_databases(log)
    reset_vhost(log)
    say("init: running db syncs (logs: log/init-*.log)")
    chains = _db_chains()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(chains)) as pool:
        futures = {pool.submit(_run_chain, name, cmds): name for name, cmds in chains.items()}
        for fut in concurrent.futures.as_completed(futures):
            say(f"init: {futures[fut]} db ready in {fut.result():.1f}s")
    say("init: registering service users and the catalog (temporary keystone)")
    ks = service_by_name("keystone")
    proc = launch(ks)
    try:
        _wait(lambda: probe(cfg.PORTS["keystone"], 3)[0], 90, "keystone", [(ks, proc)])
        register_catalog()
    finally:
        leftovers = stop_services([ks])
        if leftovers:
            raise BoxError(f"temporary keystone left processes behind: {leftovers}")
    INIT_STAMP.write_text(dt.datetime.now().isoformat(timespec="seconds") + "\n")
    say(f"init: done; clouds.yaml at {BOX / 'clouds.yaml'}")
    timing("init", time.monotonic() - t0)
    return 0


# ----------------------------------------------------------- start/stop


def _wait(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    procs: list[tuple[Service, subprocess.Popen]],
    interval: float = 1.0,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for svc, proc in procs:
            if proc.poll() is not None:
                raise BoxError(
                    f"{svc.name} exited with {proc.returncode} while starting; last log lines:\n{tail(svc.log)}"
                )
        if ready():
            return
        if time.monotonic() > deadline:
            raise BoxError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def ensure_external_network() -> None:
    """The external network of the box's one network zone (idempotent)."""
    token, _project = admin_token()
    base = cfg.url("neutron-api") + "/v2.0"
    status, doc, _ = http("GET", f"{base}/networks?name=ext-egov", token)
    if status != 200:
        raise BoxError(f"neutron GET networks: HTTP {status} {doc}")
    if doc["networks"]:
        net = doc["networks"][0]
    else:
        status, doc, _ = http(
            "POST",
            f"{base}/networks",
            token,
            {
                "network": {
                    "name": "ext-egov",
                    "router:external": True,
                    "provider:network_type": "flat",
                    "provider:physical_network": "egov",
                    "description": "external network of network zone egov (box)",
                }
            },
        )
        if status != 201:
            raise BoxError(f"creating ext-egov failed: HTTP {status} {doc}")
        net = doc["network"]
    status, doc, _ = http("GET", f"{base}/subnets?network_id={net['id']}", token)
    if status == 200 and not doc["subnets"]:
        status, doc, _ = http(
            "POST",
            f"{base}/subnets",
            token,
            {
                "subnet": {
                    "name": "ext-egov-subnet",
                    "network_id": net["id"],
                    "ip_version": 4,
                    "cidr": "203.0.113.0/24",
                    "gateway_ip": "203.0.113.1",
                    "enable_dhcp": False,
                }
            },
        )
        if status != 201:
            raise BoxError(f"creating ext-egov-subnet failed: HTTP {status} {doc}")


def cmd_start(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    _require_install()
    if not INIT_STAMP.exists():
        raise BoxError("the box is not initialised: run `scripts/openstack-box init` first")
    _copy_lib()
    started: list[tuple[Service, subprocess.Popen]] = []
    for svc in services():
        if _alive(_read_pidfile(svc)):
            continue
        stop_services([svc])  # a stale PID file, or leftovers of a crashed leader
        started.append((svc, launch(svc)))
    say(f"start: launched {', '.join(s.name for s, _ in started) or 'nothing (all running)'}; waiting")
    apis = [s for s in services() if s.port]
    state: dict[str, object] = {"discovered": False, "last": None}

    def ready() -> bool:
        if not all(probe(s.port, 3)[0] for s in apis if s.port):
            state["last"] = {s.name: probe(s.port, 3) for s in apis if s.port}
            return False
        try:
            token, project_id = admin_token(timeout=10)
            wh = worker_health(token, project_id)
        except (OSError, BoxError, urllib.error.URLError, KeyError, ValueError) as err:
            state["last"] = str(err)
            return False
        state["last"] = wh
        if wh.get("nova-compute", (False, ""))[0] and not state["discovered"]:
            run(
                [
                    str(VENV / "bin/nova-manage"),
                    "--config-file",
                    str(BOX / "etc/nova/nova.conf"),
                    "cell_v2",
                    "discover_hosts",
                ],
                LOG / "start.log",
            )
            state["discovered"] = True
        return all(wh.get(n, (False, ""))[0] for n in (*WORKERS, "hypervisor")) and bool(state["discovered"])

    try:
        _wait(ready, args.timeout, "all services", started, interval=2.0)
    except BoxError as err:
        say(str(err))
        say(f"last readiness check: {state['last']}")
        return 1
    ensure_external_network()
    say(f"start: ready in {time.monotonic() - t0:.1f}s")
    timing("start", time.monotonic() - t0)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    leftovers = stop_services(list(reversed(services())))
    stray = _marked_processes()
    if leftovers or stray:
        say(f"stop: processes left behind: {leftovers} {stray}")
        return 1
    say(f"stop: no box process left ({time.monotonic() - t0:.1f}s)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    res = health()
    bad = 0
    out(f"{'SERVICE':<18}{'PID':>8}  {'PORT':<6} HEALTH")
    for svc in services():
        info = _read_pidfile(svc)
        pid = str(info["pid"]) if _alive(info) and info else "-"
        ok, detail = res.get(svc.name, (False, "?"))
        if pid == "-":
            ok, detail = False, f"not running ({detail})"
        bad += not ok
        out(f"{svc.name:<18}{pid:>8}  {svc.port or '-'!s:<6} {'ok  ' if ok else 'DOWN'} {detail}")
    ok, detail = res["hypervisor"]
    bad += not ok
    out(f"{'hypervisor':<18}{'-':>8}  {'-':<6} {'ok  ' if ok else 'DOWN'} {detail}")
    out(f"box: {BOX}  clouds.yaml: {BOX / 'clouds.yaml'} (cloud {cfg.CLOUD_NAME})")
    return 1 if bad else 0


def cmd_clouds_yaml(args: argparse.Namespace) -> int:
    sys.stdout.write(cfg.clouds_yaml())
    return 0


_LOCK_FD: list[int] = []


def _lock() -> None:
    """One mutating command at a time per box (a second one waits)."""
    BOX.mkdir(parents=True, exist_ok=True)
    fd = os.open(BOX / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say("waiting for another openstack-box command on this box to finish")
        fcntl.flock(fd, fcntl.LOCK_EX)
    _LOCK_FD.append(fd)  # held until this process exits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openstack-box", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="apt packages + the services' virtualenv (from the wheelhouse)")
    p.add_argument("--force", action="store_true", help="rebuild the virtualenv even if up to date")
    p.set_defaults(func=cmd_install)
    sub.add_parser("init", help="(re)create databases, vhost, configs, catalog").set_defaults(func=cmd_init)
    p = sub.add_parser("start", help="start every service and wait until ready")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("OPENSTACK_BOX_START_TIMEOUT", "240")))
    p.set_defaults(func=cmd_start)
    sub.add_parser("stop", help="stop every service by PID").set_defaults(func=cmd_stop)
    sub.add_parser("status", help="PID, port and health of each service").set_defaults(func=cmd_status)
    sub.add_parser("clouds-yaml", help="print a clouds.yaml for the box").set_defaults(func=cmd_clouds_yaml)
    args = parser.parse_args(argv)
    try:
        if args.command in ("install", "init", "start", "stop"):
            _lock()
        return int(args.func(args))
    except BoxError as err:
        say(f"error: {err}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
