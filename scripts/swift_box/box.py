"""scripts/swift-box: a single-node OpenStack Swift on loopback for DR tests and demos.

Swift (pip, pinned by constraints.txt) in its own virtualenv under SWIFT_BOX_DIR; memcached
from Debian; one device on a plain directory (xattrs work, ``mount_check = false``); rings
with one device; account/container/object servers and the proxy on 127.0.0.1.

    install            apt packages (memcached, restic, rclone), the virtualenv (wheelhouse cached
                       outside the clone, in SWIFT_BOX_WHEELHOUSE)
    start [--auth M]   write the configuration, build the rings (once), start everything and
                       wait (up to --timeout, 60 s) until a real write/read/delete succeeds
    stop               stop by PID file (SIGTERM, then SIGKILL): never by process name; in keystone
                       mode first remove this box's object-store endpoints from Keystone
    status             each process and a health check; exit 0 only when all is up
    env [--user U]     shell exports for restic's swift backend (ST_AUTH/ST_USER/ST_KEY) and
        [--json]       rclone (RCLONE_CONFIG_*); --json: everything, all users; in keystone
                       mode the OS_* variables of the Keystone `swift` user

Auth modes: ``tempauth`` (users below, keys generated once, stored 0600 in
credentials.json) and ``keystone`` (authtoken + keystoneauth against the OpenStack box's
Keystone; ``start`` registers the ``swift`` service user, the ``object-store`` service and its
endpoints there itself, idempotently, through Keystone's API). Container quotas
(``X-Container-Meta-Quota-Bytes``) are enforced in both modes.

Standard library only: it runs on the machine's Python before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import http.client
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from boxlib import BoxError, Console, apt_install, install_hash, missing_apt, python311, run, tail

HERE = Path(__file__).resolve().parent
BOX = Path(os.environ.get("SWIFT_BOX_DIR", "/var/tmp/chutian-swift-box"))  # noqa: S108
WHEELHOUSE = Path(os.environ.get("SWIFT_BOX_WHEELHOUSE", "/var/cache/chutian/swift-wheels"))
PORT_BASE = int(os.environ.get("SWIFT_BOX_PORT_BASE", "16000"))
VENV = BOX / "venv"
ETC = BOX / "etc"
DEVICES = BOX / "srv" / "node"
DEVICE = "d1"
LOG = BOX / "log"
RUN = BOX / "run"
CREDENTIALS = BOX / "credentials.json"
MODE_FILE = BOX / "auth-mode"
INSTALL_STAMP = VENV / ".chutian-swift-box-install.sha256"
APT_PACKAGES = ("memcached", "restic", "rclone")
BOX_VERSION = "1"  # bump to force a reinstall
HOST = "127.0.0.1"
PORTS = {
    "proxy": PORT_BASE,
    "account": PORT_BASE + 1,
    "container": PORT_BASE + 2,
    "object": PORT_BASE + 3,
    "memcached": PORT_BASE + 4,
}
AUTH_URL = f"http://{HOST}:{PORTS['proxy']}/auth/v1.0"
READY_TIMEOUT_S = 60.0
PIPELINE_HEAD = ("catch_errors", "gatekeeper", "healthcheck", "proxy-logging", "cache", "listing_formats")
PIPELINE_TAIL = ("slo", "dlo", "versioned_writes", "proxy-logging", "proxy-server")
PROBE_CONTAINER = "chutian-swift-box-probe"
# Right after the auth filter (container_quotas' own advice), with `copy` above it so a
# server-side COPY is counted too (Swift's sample pipeline does the same).
QUOTA_FILTERS = ("copy", "container-quotas")
AUTH_FILTERS = {"tempauth": ("tempauth",), "keystone": ("authtoken", "keystoneauth")}
RESELLER_ROLE = "ResellerAdmin"  # keystoneauth's default reseller_admin_role


@dataclass(frozen=True)
class Keystone:
    """Keystone mode's settings (SWIFT_BOX_KEYSTONE_*); the defaults are the OpenStack box's."""

    url: str
    region: str
    user: str
    password: str
    project: str
    domain_id: str
    admin_user: str
    admin_password: str
    admin_project: str

    @classmethod
    def from_env(cls) -> Keystone:
        env = os.environ.get
        return cls(
            url=env("SWIFT_BOX_KEYSTONE_URL", "http://127.0.0.1:15000").rstrip("/"),
            region=env("SWIFT_BOX_KEYSTONE_REGION", "wuhan"),
            user=env("SWIFT_BOX_KEYSTONE_USER", "swift"),
            password=env("SWIFT_BOX_KEYSTONE_PASSWORD", "chutian-box-service"),
            project=env("SWIFT_BOX_KEYSTONE_PROJECT", "service"),
            domain_id=env("SWIFT_BOX_KEYSTONE_DOMAIN_ID", "default"),
            admin_user=env("SWIFT_BOX_KEYSTONE_ADMIN_USER", "admin"),
            admin_password=env("SWIFT_BOX_KEYSTONE_ADMIN_PASSWORD", "chutian-box-admin"),
            admin_project=env("SWIFT_BOX_KEYSTONE_ADMIN_PROJECT", "admin"),
        )

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{PORTS['proxy']}/v1/AUTH_%(project_id)s"


# tempauth users: account:user -> groups.  ``dr:admin`` is the DR operator (retention, checks,
# verification); ``dr:cityNN`` have no rights of their own: the DR admin grants each one
# read/write on its repository container (the append-only gateway uses it); ``testNN:admin``
# own an account each, for tests that want one to themselves.
USERS: dict[str, tuple[str, ...]] = {
    "dr:admin": (".admin", ".reseller_admin"),
    **{f"dr:city{i:02d}": () for i in range(1, 9)},
    **{f"test{i:02d}:admin": (".admin",) for i in range(1, 9)},
}


_console = Console("swift-box")
say, out, timing = _console.say, _console.out, _console.timing


# ---------------------------------------------------------------- install


def _python() -> str:
    return python311("constraints.txt is pinned for Python 3.11")


def _install_hash(python: str) -> str:
    return install_hash(python, BOX_VERSION, [HERE / name for name in ("requirements.txt", "constraints.txt")])


def _apt_install(packages: Iterable[str]) -> None:
    apt_install(packages, LOG / "install.log", say)


def _pip(*args: str, log: Path, check: bool) -> int:
    # The machine-wide pip constraint file (if any) is not ours: only constraints.txt applies.
    env = {"PIP_CONSTRAINT": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return run([str(VENV / "bin/python"), "-m", "pip", *args], log, env, check=check)


def cmd_install(args: argparse.Namespace) -> int:
    """Serialised on a lock next to the shared wheelhouse (two boxes may install at once)."""
    WHEELHOUSE.parent.mkdir(parents=True, exist_ok=True)
    with open(WHEELHOUSE.parent / f".{WHEELHOUSE.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _install(args)


def _install(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    LOG.mkdir(parents=True, exist_ok=True)
    _apt_install(APT_PACKAGES)
    python = _python()
    want = _install_hash(python)
    if (
        not args.force
        and INSTALL_STAMP.exists()
        and INSTALL_STAMP.read_text().strip() == want
        and (VENV / "bin/swift-proxy-server").exists()
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
    reqs = ("-c", str(HERE / "constraints.txt"), "-r", str(HERE / "requirements.txt"))
    offline = ("install", "--no-index", "--find-links", str(WHEELHOUSE), *reqs)
    if _pip(*offline, log=log, check=False) != 0:
        say(f"install: filling the wheelhouse {WHEELHOUSE} from the package index (once)")
        _pip("wheel", "--wheel-dir", str(WHEELHOUSE), "--find-links", str(WHEELHOUSE), *reqs, log=log, check=True)
        if _pip(*offline, log=log, check=False) != 0:
            raise BoxError(f"pip install from the wheelhouse failed (see {log})")
    INSTALL_STAMP.write_text(want + "\n")
    say("install: done")
    timing("install", time.monotonic() - t0)
    return 0


def _require_install() -> None:
    missing = missing_apt(("memcached",))
    if missing or not INSTALL_STAMP.exists() or INSTALL_STAMP.read_text().strip() != _install_hash(_python()):
        raise BoxError("the swift-box virtualenv is missing or stale: run `scripts/swift-box install` first")


# ---------------------------------------------------------------- configuration


def _credentials() -> dict[str, object]:
    """Keys are generated once and kept (0600): restarting the box never changes them."""
    if CREDENTIALS.exists():
        data: dict[str, object] = json.loads(CREDENTIALS.read_text())
        keys = data.get("keys")
        if isinstance(keys, dict) and set(USERS) <= set(keys):
            return data
    else:
        data = {"hash_suffix": secrets.token_hex(16), "keys": {}}
    keys = dict(data.get("keys") or {})  # type: ignore[call-overload]
    for user in USERS:
        keys.setdefault(user, secrets.token_urlsafe(24))
    data["keys"] = keys
    BOX.mkdir(parents=True, exist_ok=True)
    fd = os.open(CREDENTIALS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.chmod(CREDENTIALS, 0o600)
    return data


def _server_conf(name: str, app: str, extra: str = "") -> str:
    return f"""[DEFAULT]
bind_ip = {HOST}
bind_port = {PORTS[name]}
workers = 1
user = {_user()}
swift_dir = {ETC}
devices = {DEVICES}
mount_check = false
disable_fallocate = true
log_name = {name}-server
log_level = INFO

[pipeline:main]
pipeline = healthcheck {name}-server

[app:{name}-server]
use = egg:swift#{app}
{extra}
[filter:healthcheck]
use = egg:swift#healthcheck
"""


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _tempauth_users(keys: dict[str, str]) -> str:
    lines = []
    for user, groups in USERS.items():
        account, name = user.split(":")
        lines.append(f"user_{account}_{name} = {keys[user]} {' '.join(groups)}".rstrip())
    return "\n".join(lines)


def write_config(auth: str) -> None:
    creds = _credentials()
    keys: dict[str, str] = creds["keys"]  # type: ignore[assignment]
    ETC.mkdir(parents=True, exist_ok=True)
    (DEVICES / DEVICE).mkdir(parents=True, exist_ok=True)
    (ETC / "swift.conf").write_text(
        f"""[swift-hash]
swift_hash_path_prefix = chutian-swift-box
swift_hash_path_suffix = {creds["hash_suffix"]}

[storage-policy:0]
name = Policy-0
default = yes
"""
    )
    (ETC / "account-server.conf").write_text(_server_conf("account", "account"))
    (ETC / "container-server.conf").write_text(_server_conf("container", "container"))
    (ETC / "object-server.conf").write_text(_server_conf("object", "object", "mb_per_sync = 16\n"))
    if auth == "tempauth":
        auth_conf = f"""[filter:tempauth]
use = egg:swift#tempauth
reseller_prefix = AUTH
token_life = 86400
{_tempauth_users(keys)}
"""
    else:
        ks = Keystone.from_env()
        auth_conf = f"""[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = {ks.url}/v3
auth_url = {ks.url}/v3
auth_type = password
username = {ks.user}
password = {ks.password}
project_name = {ks.project}
user_domain_id = {ks.domain_id}
project_domain_id = {ks.domain_id}
region_name = {ks.region}
delay_auth_decision = True
cache = swift.cache
include_service_catalog = False

[filter:keystoneauth]
use = egg:swift#keystoneauth
operator_roles = admin, member
reseller_prefix = AUTH_
reseller_admin_role = {RESELLER_ROLE}
"""
    auth_filters = " ".join(AUTH_FILTERS[auth] + QUOTA_FILTERS)
    proxy = f"""[DEFAULT]
bind_ip = {HOST}
bind_port = {PORTS["proxy"]}
workers = 1
user = {_user()}
swift_dir = {ETC}
log_name = proxy-server
log_level = INFO

[pipeline:main]
pipeline = {" ".join(PIPELINE_HEAD)} {auth_filters} {" ".join(PIPELINE_TAIL)}

[app:proxy-server]
use = egg:swift#proxy
allow_account_management = true
account_autocreate = true
node_timeout = 30
conn_timeout = 2
recoverable_node_timeout = 30

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:cache]
use = egg:swift#memcache
memcache_servers = {HOST}:{PORTS["memcached"]}

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:copy]
use = egg:swift#copy

[filter:container-quotas]
use = egg:swift#container_quotas

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo

[filter:versioned_writes]
use = egg:swift#versioned_writes

{auth_conf}"""
    (ETC / "proxy-server.conf").write_text(proxy)
    os.chmod(ETC / "proxy-server.conf", 0o600)  # it holds the tempauth keys or the service password
    MODE_FILE.write_text(auth + "\n")


def build_rings() -> None:
    """One ring per server type with the one device (partition power 8, one replica); once."""
    builder = str(VENV / "bin/swift-ring-builder")
    for kind in ("account", "container", "object"):
        if (ETC / f"{kind}.ring.gz").exists():
            continue
        path = str(ETC / f"{kind}.builder")
        log = LOG / "rings.log"
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        run([builder, path, "create", "8", "1", "1"], log)
        run([builder, path, "add", f"r1z1-{HOST}:{PORTS[kind]}/{DEVICE}", "100"], log)
        run([builder, path, "rebalance"], log)


# ---------------------------------------------------------------- processes


@dataclass(frozen=True)
class Service:
    name: str
    port: int

    @property
    def cmd(self) -> list[str]:
        if self.name == "memcached":
            return ["/usr/bin/memcached", "-l", HOST, "-p", str(self.port), "-U", "0", "-m", "64", "-u", _user()]
        return [str(VENV / f"bin/swift-{self.name}-server"), str(ETC / f"{self.name}-server.conf"), "--verbose"]

    @property
    def pidfile(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return LOG / f"{self.name}.log"


SERVICES = [Service(name, PORTS[name]) for name in ("memcached", "account", "container", "object", "proxy")]


def _proc_stat(pid: int) -> tuple[int, int, str] | None:
    """(pgrp, starttime, state) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2 :].split()
    return int(rest[2]), int(rest[19]), rest[0]


def _read_pidfile(svc: Service) -> dict[str, int] | None:
    try:
        info: dict[str, int] = json.loads(svc.pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return info


def _alive(info: dict[str, int] | None) -> bool:
    if not info:
        return False
    st = _proc_stat(info["pid"])
    return st is not None and st[1] == info["starttime"] and st[2] not in ("Z", "X")


def _group_members(pgid: int) -> list[int]:
    """Processes still in the service's process group (a group id is not reused while it has members)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st and st[0] == pgid and st[2] not in ("Z", "X"):
                members.append(int(entry))
    return members


def launch(svc: Service) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    LOG.mkdir(parents=True, exist_ok=True)
    with svc.log.open("a") as fh:
        fh.write(f"\n===== {dt.datetime.now().isoformat(timespec='seconds')} starting {svc.name}\n")
        fh.flush()
        proc = subprocess.Popen(
            svc.cmd,
            cwd=str(BOX),
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop signals the group it leads
        )
    st = _proc_stat(proc.pid)
    svc.pidfile.write_text(json.dumps({"pid": proc.pid, "starttime": st[1] if st else 0}) + "\n")


def stop_service(svc: Service, timeout: float = 10.0) -> None:
    info = _read_pidfile(svc)
    if info is None:
        return
    pgid = info["pid"]
    # The group is ours if its leader is the process we started, or (leader gone) if it still has members
    # (a process group id is not reused while the group exists).
    members = _group_members(pgid) if (_alive(info) or _proc_stat(pgid) is None) else []
    if members:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_members(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.2)
    svc.pidfile.unlink(missing_ok=True)


# ---------------------------------------------------------------- HTTP probes


def _request(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or HOST, parts.port or 80, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def authenticate(user: str, key: str) -> tuple[str, str]:
    """tempauth v1.0: (storage URL, token)."""
    status, headers, _ = _request("GET", AUTH_URL, {"X-Auth-User": user, "X-Auth-Key": key})
    if status != 200:
        raise BoxError(f"auth as {user} answered {status}")
    return headers["x-storage-url"], headers["x-auth-token"]


# ---------------------------------------------------------------- Keystone (keystone mode)


def _ks(
    ks: Keystone, method: str, path: str, token: str | None = None, body: object | None = None
) -> tuple[int, dict[str, str], dict[str, object]]:
    """One Keystone v3 call; JSON in and out. Bodies may hold passwords: never logged."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    data = json.dumps(body).encode() if body is not None else None
    status, got, raw = _request(method, f"{ks.url}/v3{path}", headers, data)
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError:
        doc = {}
    return status, got, doc if isinstance(doc, dict) else {}


def _ks_ok(what: str, answer: tuple[int, dict[str, str], dict[str, object]], *ok: int) -> dict[str, object]:
    status, _, doc = answer
    if status not in ok:
        error = doc.get("error")
        message = error.get("message") if isinstance(error, dict) else ""
        raise BoxError(f"Keystone: {what} answered {status} {message}".rstrip())
    return doc


def keystone_token(ks: Keystone, user: str, password: str, project: str) -> tuple[str, dict[str, object]]:
    """(token, token body) for `user` scoped to `project`, both in the configured domain."""
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": {"id": ks.domain_id}, "password": password}},
            },
            "scope": {"project": {"name": project, "domain": {"id": ks.domain_id}}},
        }
    }
    answer = _ks(ks, "POST", "/auth/tokens", body=body)
    doc = _ks_ok(f"token for {user} on {project}", answer, 201)
    token = doc.get("token")
    return answer[1]["x-subject-token"], token if isinstance(token, dict) else {}


def _one(ks: Keystone, token: str, collection: str, query: dict[str, str]) -> dict[str, object] | None:
    doc = _ks_ok(f"list {collection}", _ks(ks, "GET", f"/{collection}?{urllib.parse.urlencode(query)}", token), 200)
    items = doc.get(collection)
    return items[0] if isinstance(items, list) and items else None


def register_keystone(ks: Keystone) -> None:
    """Idempotent: `ResellerAdmin` for the registering admin, the `swift` user (admin on the
    service project), the `object-store` service and its public/internal/admin endpoints in the
    region pointing at this box's proxy (one per interface: others are re-pointed or removed)."""
    try:
        admin, scope = keystone_token(ks, ks.admin_user, ks.admin_password, ks.admin_project)
    except OSError as err:
        raise BoxError(f"Keystone at {ks.url} does not answer ({err}): start scripts/openstack-box first") from None
    # keystoneauth's reseller admin: the cloud admin may read and clean any project's account
    reseller = _one(ks, admin, "roles", {"name": RESELLER_ROLE})
    if reseller is None:
        body = {"role": {"name": RESELLER_ROLE}}
        reseller = _ks_ok(f"create role {RESELLER_ROLE}", _ks(ks, "POST", "/roles", admin, body), 201)["role"]  # type: ignore[assignment]
    assert isinstance(reseller, dict)
    user_id, project_id = scope["user"]["id"], scope["project"]["id"]  # type: ignore[index]
    path = f"/projects/{project_id}/users/{user_id}/roles/{reseller['id']}"
    _ks_ok(f"grant {RESELLER_ROLE} to {ks.admin_user}", _ks(ks, "PUT", path, admin), 204, 200)
    project = _one(ks, admin, "projects", {"name": ks.project, "domain_id": ks.domain_id})
    role = _one(ks, admin, "roles", {"name": "admin"})
    if project is None or role is None:
        raise BoxError(f"Keystone has no project {ks.project!r} or no role 'admin' (is it the OpenStack box?)")
    user = _one(ks, admin, "users", {"name": ks.user, "domain_id": ks.domain_id})
    if user is None:
        body = {"user": {"name": ks.user, "domain_id": ks.domain_id, "password": ks.password, "enabled": True}}
        user = _ks_ok(f"create user {ks.user}", _ks(ks, "POST", "/users", admin, body), 201)["user"]  # type: ignore[assignment]
        say(f"keystone: created user {ks.user}")
    assert isinstance(user, dict)
    path = f"/projects/{project['id']}/users/{user['id']}/roles/{role['id']}"
    _ks_ok("grant admin on the service project", _ks(ks, "PUT", path, admin), 204, 200)
    try:
        keystone_token(ks, ks.user, ks.password, ks.project)
    except BoxError:  # the user exists with another password: ours is the one the proxy will use
        body = {"user": {"password": ks.password}}
        _ks_ok(f"set the password of {ks.user}", _ks(ks, "PATCH", f"/users/{user['id']}", admin, body), 200)
        say(f"keystone: reset the password of {ks.user}")
    service = _one(ks, admin, "services", {"type": "object-store"})
    if service is None:
        body = {"service": {"type": "object-store", "name": "swift", "description": "swift-box", "enabled": True}}
        service = _ks_ok("create service", _ks(ks, "POST", "/services", admin, body), 201)["service"]  # type: ignore[assignment]
        say("keystone: created service object-store")
    assert isinstance(service, dict)
    listed = _ks_ok("list endpoints", _ks(ks, "GET", f"/endpoints?service_id={service['id']}", admin), 200)
    endpoints = [e for e in listed.get("endpoints") or [] if isinstance(e, dict)]  # type: ignore[attr-defined]
    for interface in ("public", "internal", "admin"):
        mine = [e for e in endpoints if e.get("interface") == interface and e.get("region_id") == ks.region]
        for extra in mine[1:]:
            _ks_ok("delete a duplicate endpoint", _ks(ks, "DELETE", f"/endpoints/{extra['id']}", admin), 204)
        if not mine:
            body = {
                "endpoint": {
                    "service_id": service["id"],
                    "interface": interface,
                    "region_id": ks.region,
                    "url": ks.endpoint,
                    "enabled": True,
                }
            }
            _ks_ok(f"create the {interface} endpoint", _ks(ks, "POST", "/endpoints", admin, body), 201)
            say(f"keystone: {interface} endpoint {ks.endpoint}")
        elif mine[0].get("url") != ks.endpoint or not mine[0].get("enabled", True):
            body = {"endpoint": {"url": ks.endpoint, "enabled": True}}
            _ks_ok(
                f"update the {interface} endpoint", _ks(ks, "PATCH", f"/endpoints/{mine[0]['id']}", admin, body), 200
            )
            say(f"keystone: {interface} endpoint now {ks.endpoint}")


def deregister_keystone(ks: Keystone) -> None:
    """Remove the endpoints pointing at this box (and the service when none is left), so clients
    of the shared Keystone never find an object store that is not running."""
    admin, _ = keystone_token(ks, ks.admin_user, ks.admin_password, ks.admin_project)
    service = _one(ks, admin, "services", {"type": "object-store"})
    if service is None:
        return
    listed = _ks_ok("list endpoints", _ks(ks, "GET", f"/endpoints?service_id={service['id']}", admin), 200)
    endpoints = [e for e in listed.get("endpoints") or [] if isinstance(e, dict)]  # type: ignore[attr-defined]
    mine = [e for e in endpoints if e.get("url") == ks.endpoint]
    for endpoint in mine:
        _ks_ok("delete an endpoint", _ks(ks, "DELETE", f"/endpoints/{endpoint['id']}", admin), 204, 404)
    if len(mine) == len(endpoints):
        _ks_ok("delete the service", _ks(ks, "DELETE", f"/services/{service['id']}", admin), 204, 404)
    say(f"keystone: removed {len(mine)} object-store endpoint(s) of this box")


def keystone_storage(ks: Keystone) -> tuple[str, str]:
    """(storage URL, token) of the swift service user on its project, the URL read from the catalog."""
    token, body = keystone_token(ks, ks.user, ks.password, ks.project)
    for service in body.get("catalog") or []:  # type: ignore[attr-defined]
        if service.get("type") != "object-store":
            continue
        for endpoint in service.get("endpoints") or []:
            if endpoint.get("interface") == "public" and endpoint.get("region_id", endpoint.get("region")) == ks.region:
                return str(endpoint["url"]), token
    raise BoxError(f"no public object-store endpoint in region {ks.region} in the token's catalog")


def probe(auth_mode: str = "tempauth") -> None:
    """A real write, read back and delete (the first write after a start once got a 500): as the
    DR admin with tempauth, as the Keystone `swift` user on its project with keystone."""
    if auth_mode == "keystone":
        storage, token = keystone_storage(Keystone.from_env())
    else:
        keys: dict[str, str] = _credentials()["keys"]  # type: ignore[assignment]
        storage, token = authenticate("dr:admin", keys["dr:admin"])
    auth = {"X-Auth-Token": token}
    status, _, _ = _request("PUT", f"{storage}/{PROBE_CONTAINER}", auth)
    if status not in (201, 202):
        raise BoxError(f"PUT container answered {status}")
    body = secrets.token_bytes(1024)
    name = f"{storage}/{PROBE_CONTAINER}/probe-{secrets.token_hex(4)}"
    status, _, _ = _request("PUT", name, auth, body)
    if status != 201:
        raise BoxError(f"PUT object answered {status}")
    status, _, got = _request("GET", name, auth)
    if status != 200 or got != body:
        raise BoxError(f"GET object answered {status} ({len(got)} bytes)")
    status, _, _ = _request("DELETE", name, auth)
    if status not in (204, 404):
        raise BoxError(f"DELETE object answered {status}")


def _healthy(port: int) -> bool:
    try:
        status, _, body = _request("GET", f"http://{HOST}:{port}/healthcheck", timeout=2)
    except OSError:
        return False
    return status == 200 and body.strip() == b"OK"


def _memcached_up() -> bool:
    import socket

    try:
        with socket.create_connection((HOST, PORTS["memcached"]), timeout=2) as sock:
            sock.sendall(b"version\r\n")
            return sock.recv(64).startswith(b"VERSION")
    except OSError:
        return False


# ---------------------------------------------------------------- commands


def cmd_start(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    _require_install()
    if args.auth == "keystone":
        register_keystone(Keystone.from_env())
        timing("keystone-registration", time.monotonic() - t0)
    running = [svc.name for svc in SERVICES if _alive(_read_pidfile(svc))]
    if running and len(running) == len(SERVICES) and MODE_FILE.exists() and MODE_FILE.read_text().strip() == args.auth:
        say("already running; checking it answers")
    else:
        if running and MODE_FILE.exists() and MODE_FILE.read_text().strip() == "keystone" and args.auth != "keystone":
            cmd_stop(args)  # a running box leaves keystone mode: its endpoints go from the catalog too
        for svc in SERVICES:  # a partial or differently configured box: start from scratch
            stop_service(svc)
        busy = [f"{svc.name}:{svc.port}" for svc in SERVICES if _port_open(svc.port)]
        if busy:
            raise BoxError(f"ports already in use by something else: {', '.join(busy)} (set SWIFT_BOX_PORT_BASE)")
        write_config(args.auth)
        build_rings()
        for svc in SERVICES:
            launch(svc)
    deadline = time.monotonic() + args.timeout
    last = "not probed yet"
    while time.monotonic() < deadline:
        dead = [svc.name for svc in SERVICES if not _alive(_read_pidfile(svc))]
        if dead:
            logs = "\n".join(f"--- {n}.log\n{tail(LOG / f'{n}.log')}" for n in dead)
            for svc in SERVICES:
                stop_service(svc)
            raise BoxError(f"exited during start: {', '.join(dead)}\n{logs}")
        try:
            probe(args.auth)
        except (OSError, BoxError, http.client.HTTPException) as err:
            last = str(err) or type(err).__name__
            time.sleep(0.5)
            continue
        where = (
            AUTH_URL
            if args.auth == "tempauth"
            else f"{Keystone.from_env().endpoint} (Keystone {Keystone.from_env().url})"
        )
        say(f"ready: proxy {where} ({args.auth}); `scripts/swift-box env` prints credentials")
        timing("start", time.monotonic() - t0)
        return 0
    logs = "\n".join(f"--- {svc.name}.log\n{tail(svc.log)}" for svc in SERVICES)
    raise BoxError(f"not ready after {args.timeout:.0f} s (last probe: {last})\n{logs}")


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def cmd_stop(args: argparse.Namespace) -> int:
    if MODE_FILE.exists() and MODE_FILE.read_text().strip() == "keystone":
        try:
            deregister_keystone(Keystone.from_env())
        except (OSError, BoxError) as err:  # stopping must work with Keystone gone too
            say(f"warning: could not remove the object-store endpoints from Keystone: {err}")
    for svc in reversed(SERVICES):
        stop_service(svc)
    say("stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    ok = True
    for svc in SERVICES:
        info = _read_pidfile(svc)
        alive = _alive(info)
        healthy = _memcached_up() if svc.name == "memcached" else _healthy(svc.port)
        ok = ok and alive and healthy
        pid = info["pid"] if info else "-"
        state = "running" if alive else "stopped"
        out(f"{svc.name:10} {state:8} pid {pid!s:8} {HOST}:{svc.port} {'ok' if healthy else 'DOWN'}")
    mode = MODE_FILE.read_text().strip() if MODE_FILE.exists() else "-"
    out(f"auth       {mode}  {Keystone.from_env().url if mode == 'keystone' else AUTH_URL}")
    return 0 if ok else 3


def _keystone_env() -> dict[str, str]:
    """OpenStack client variables (restic's swift backend reads them) for the Keystone `swift` user."""
    ks = Keystone.from_env()
    return {
        "OS_AUTH_URL": f"{ks.url}/v3",
        "OS_IDENTITY_API_VERSION": "3",
        "OS_REGION_NAME": ks.region,
        "OS_USERNAME": ks.user,
        "OS_PASSWORD": ks.password,
        "OS_PROJECT_NAME": ks.project,
        "OS_USER_DOMAIN_ID": ks.domain_id,
        "OS_PROJECT_DOMAIN_ID": ks.domain_id,
    }


def cmd_env(args: argparse.Namespace) -> int:
    keys: dict[str, str] = _credentials()["keys"]  # type: ignore[assignment]
    mode = MODE_FILE.read_text().strip() if MODE_FILE.exists() else None
    if args.json:
        users = {u: {"key": keys[u], "account": f"AUTH_{u.split(':')[0]}", "groups": list(g)} for u, g in USERS.items()}
        doc = {
            "auth_url": AUTH_URL,
            "storage_url_base": f"http://{HOST}:{PORTS['proxy']}/v1",
            "auth_mode": mode,
            "keystone": {**_keystone_env(), "endpoint": Keystone.from_env().endpoint} if mode == "keystone" else None,
            "ports": PORTS,
            "state_dir": str(BOX),
            "devices": str(DEVICES),
            "users": users,
        }
        out(json.dumps(doc, indent=2))
        return 0
    if mode == "keystone":
        for name, value in _keystone_env().items():
            out(f"export {name}={shlex.quote(value)}")
        return 0
    if args.user not in keys:
        raise BoxError(f"unknown user {args.user!r}; one of {', '.join(USERS)}")
    remote = args.rclone_remote.upper()
    for name, value in (
        ("ST_AUTH", AUTH_URL),
        ("ST_USER", args.user),
        ("ST_KEY", keys[args.user]),
        (f"RCLONE_CONFIG_{remote}_TYPE", "swift"),
        (f"RCLONE_CONFIG_{remote}_AUTH", AUTH_URL),
        (f"RCLONE_CONFIG_{remote}_USER", args.user),
        (f"RCLONE_CONFIG_{remote}_KEY", keys[args.user]),
        (f"RCLONE_CONFIG_{remote}_AUTH_VERSION", "1"),
    ):
        out(f"export {name}={shlex.quote(value)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swift-box", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="apt packages and the virtualenv")
    p.add_argument("--force", action="store_true", help="rebuild the virtualenv")
    p.set_defaults(func=cmd_install)
    p = sub.add_parser("start", help="configure, start and wait until a real write succeeds")
    p.add_argument("--auth", choices=("tempauth", "keystone"), default=os.environ.get("SWIFT_BOX_AUTH", "tempauth"))
    p.add_argument("--timeout", type=float, default=READY_TIMEOUT_S)
    p.set_defaults(func=cmd_start)
    sub.add_parser("stop", help="stop every process by its PID file").set_defaults(func=cmd_stop)
    sub.add_parser("status", help="processes and health checks (exit 3 when not all up)").set_defaults(func=cmd_status)
    p = sub.add_parser("env", help="credentials as shell exports (or --json)")
    p.add_argument("--user", default="dr:admin")
    p.add_argument("--rclone-remote", default="swiftbox", help="name of the rclone remote in the exports")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_env)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BoxError as err:
        say(f"error: {err}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
