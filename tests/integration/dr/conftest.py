"""Fixtures for the DR tests: real restic and rclone against the single-node Swift (scripts/swift-box).

The box must be installed: these tests FAIL (never skip) when it cannot be started, so a
CI run that forgot `scripts/swift-box install` cannot pass by running nothing.  The
`swift_box` fixture calls `scripts/swift-box start` (idempotent: a running box is only
probed) and stops the box at the end only if it started it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioners.rclone import AppendOnlyGateway, SwiftCredential
from provisioners.restic import Restic, ResticRepository
from tests.conftest import CREATED_SECRETS

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "swift-box"
HINT = "install and start the DR store first: `scripts/swift-box install && scripts/swift-box start`"
CITY_USER = "dr:city01"  # has no rights of its own: each test's container grants it read/write


def pytest_configure(config: pytest.Config) -> None:
    # pyproject.toml registers it too; registering here keeps this folder runnable on its own.
    config.addinivalue_line("markers", "dr: needs the DR store (scripts/swift-box), restic and rclone")


def _fail(reason: str) -> None:
    pytest.fail(f"swift-box not usable: {reason}\n-> {HINT}", pytrace=False)


def _box(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class SwiftBox:
    doc: dict[str, Any]

    @property
    def auth_url(self) -> str:
        return str(self.doc["auth_url"])

    @property
    def devices(self) -> Path:
        return Path(self.doc["devices"])

    def key(self, user: str) -> str:
        return str(self.doc["users"][user]["key"])

    def restic_env(self, user: str) -> dict[str, str]:
        """restic's swift backend, v1 (tempauth) auth."""
        return {"ST_AUTH": self.auth_url, "ST_USER": user, "ST_KEY": self.key(user)}

    def credential(self, user: str) -> SwiftCredential:
        return SwiftCredential(auth_url=self.auth_url, user=user, key=self.key(user))

    def _auth(self, user: str) -> tuple[str, str]:
        headers = {"X-Auth-User": user, "X-Auth-Key": self.key(user)}
        req = urllib.request.Request(self.auth_url, headers=headers)  # noqa: S310 (the box's own loopback URL)
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return resp.headers["X-Storage-Url"], resp.headers["X-Auth-Token"]

    def call(
        self, user: str, method: str, path: str, *, headers: dict[str, str] | None = None, data: bytes | None = None
    ) -> tuple[int, bytes]:
        """One Swift API call as ``user``; ``path`` is relative to the user's account."""
        url, token = self._auth(user)
        all_headers = {"X-Auth-Token": token, **(headers or {})}
        req = urllib.request.Request(url + path, method=method, headers=all_headers, data=data)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def objects(self, user: str, container: str, prefix: str = "") -> list[str]:
        status, body = self.call(user, "GET", f"/{container}?prefix={prefix}&limit=10000")
        assert status in (200, 204), status
        return body.decode().split()


@pytest.fixture(scope="session")
def swift_box() -> Iterator[SwiftBox]:
    for tool in ("restic", "rclone"):
        if shutil.which(tool) is None:
            _fail(f"`{tool}` is not installed (apt-get install -y restic rclone memcached)")
    was_running = _box("status").returncode == 0
    started = _box("start")
    if started.returncode != 0:
        _fail(f"`scripts/swift-box start` failed:\n{started.stderr[-3000:]}")
    env = _box("env", "--json")
    if env.returncode != 0:
        _fail(f"`scripts/swift-box env --json` failed:\n{env.stderr[-2000:]}")
    box = SwiftBox(json.loads(env.stdout))
    CREATED_SECRETS.extend(u["key"] for u in box.doc["users"].values())
    yield box
    if not was_running:
        _box("stop")


@pytest.fixture
def container(swift_box: SwiftBox) -> Iterator[str]:
    """A fresh container in the DR account; the city's Swift user may read and write it, nothing else."""
    name = f"chutian-test-{uuid.uuid4().hex[:10]}"
    status, _ = swift_box.call(
        "dr:admin", "PUT", f"/{name}", headers={"X-Container-Read": CITY_USER, "X-Container-Write": CITY_USER}
    )
    assert status in (201, 202), f"creating container {name}: {status}"
    yield name
    for obj in swift_box.objects("dr:admin", name):
        swift_box.call("dr:admin", "DELETE", f"/{name}/{obj}")
    swift_box.call("dr:admin", "DELETE", f"/{name}")


def secret() -> str:
    value = uuid.uuid4().hex + uuid.uuid4().hex
    CREATED_SECRETS.append(value)
    return value


@dataclass
class Policy:
    """One policy's repository seen from both sides: the city (through the gateway) and the DR site."""

    city: Restic
    dr: Restic
    gateway: AppendOnlyGateway
    container: str
    prefix: str


@pytest.fixture
def policy(swift_box: SwiftBox, container: str, tmp_path: Path) -> Iterator[Policy]:
    password = secret()
    prefix = "hubei.wuhan/payroll"
    gateway = AppendOnlyGateway(
        swift_box.credential(CITY_USER),
        container,
        user="wuhan",
        password=secret(),
        state_dir=tmp_path / "gateway",
    )
    gateway.start()
    try:
        city = Restic(ResticRepository(url=gateway.url(prefix), password=password), state_dir=tmp_path / "city")
        dr = Restic(
            ResticRepository(
                url=f"swift:{container}:/{prefix}", password=password, env=swift_box.restic_env("dr:admin")
            ),
            state_dir=tmp_path / "dr",
        )
        city.init()
        yield Policy(city=city, dr=dr, gateway=gateway, container=container, prefix=prefix)
    finally:
        gateway.stop()


def write_random(path: Path, size: int, seed: int) -> None:
    """Incompressible, reproducible content (restic deduplicates, so every file must differ)."""
    import random

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))


def tree_digests(root: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(autouse=True)
def _no_inherited_restic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wrapper builds the child's environment itself; make sure nothing of ours would help it."""
    for name in list(os.environ):
        if name.startswith(("RESTIC_", "ST_", "OS_", "RCLONE_")):
            monkeypatch.delenv(name)
