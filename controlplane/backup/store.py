"""Where policies' repositories live, seen from both sides.

- the **city side** writes: through the append-only gateway (`rclone serve restic
  --append-only`) in front of the DR store, so a stolen city credential cannot delete history;
- the **DR side** reads and judges: `restic snapshots`/`check` with DR credentials straight
  against Swift, and is the only side that runs retention (forget/prune) and drills.

Without a configured Swift (embedded mode, demos, the benchmark's smoke run) both sides are
one local directory: real restic, but no append-only protection; `append_only` says which.
Tasks take the store from `WorkerContext.extras["dr_store"]` when a test injects one.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlplane.errors import ConfigurationError
from controlplane.settings import Settings
from provisioners.restic import Restic, ResticRepository


def _secret_file(path: Path | None, what: str) -> str:
    if path is None:
        raise ConfigurationError([f"{what}: not set"])
    try:
        if path.stat().st_mode & 0o077:
            raise ConfigurationError([f"{what}: {path} is readable by group/others (chmod 600)"])
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError([f"{what}: {path}: {exc.strerror}"]) from None


@dataclass(frozen=True)
class DrStore:
    """`dr_base`: a local directory or `swift:<container>`; `city_base`: the gateway's `rest:`
    URL with its credentials (None: the city writes where the DR side reads, i.e. local)."""

    dr_base: str
    state_dir: Path
    dr_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    city_base: str | None = field(default=None, repr=False)

    @property
    def append_only(self) -> bool:
        return self.city_base is not None

    def location(self, prefix: str) -> str:
        """The DR-side URL stored with the policy (no credentials)."""
        if self.dr_base.startswith("swift:"):
            return f"{self.dr_base.rstrip(':/')}:/{prefix}"
        return str(Path(self.dr_base) / prefix)

    def dr(self, prefix: str, password: str) -> Restic:
        repo = ResticRepository(url=self.location(prefix), password=password, env=dict(self.dr_env))
        return Restic(repo, state_dir=self.state_dir / "dr")

    def city(self, prefix: str, password: str) -> Restic:
        if self.city_base is None:
            return Restic(ResticRepository(url=self.location(prefix), password=password), state_dir=self.state_dir)
        url = f"{self.city_base.rstrip('/')}/{prefix.strip('/')}/"
        return Restic(ResticRepository(url=url, password=password), state_dir=self.state_dir / "city")


def store_from_settings(settings: Settings) -> DrStore:
    state_dir = settings.data_dir / "dr-state"
    if not settings.dr_store:
        return DrStore(dr_base=str(settings.data_dir / "dr-store"), state_dir=state_dir)
    if problems := config_problems(settings):
        raise ConfigurationError(problems)
    env = {
        "ST_AUTH": settings.dr_swift_auth_url,
        "ST_USER": settings.dr_swift_user,
        "ST_KEY": _secret_file(settings.dr_swift_key_file, "CHUTIAN_DR_SWIFT_KEY_FILE"),
    }
    city = None
    if settings.dr_gateway_url:
        parts = urllib.parse.urlsplit(settings.dr_gateway_url.removeprefix("rest:"))
        password = _secret_file(settings.dr_gateway_password_file, "CHUTIAN_DR_GATEWAY_PASSWORD_FILE")
        user = urllib.parse.quote(settings.dr_gateway_user, safe="")
        netloc = f"{user}:{urllib.parse.quote(password, safe='')}@{parts.netloc}"
        city = "rest:" + urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return DrStore(dr_base=settings.dr_store, state_dir=state_dir, dr_env=env, city_base=city)


def config_problems(settings: Settings) -> list[str]:
    """Every DR-store setting that is wrong, at once (for `chutian check-config` and start-up)."""
    if not settings.dr_store:
        return []
    problems: list[str] = []
    if not settings.dr_store.startswith("swift:") or not settings.dr_store.removeprefix("swift:").strip(":/"):
        problems.append(f"CHUTIAN_DR_STORE: {settings.dr_store!r}: use swift:<container> or leave empty")
    for name, value in (
        ("CHUTIAN_DR_SWIFT_AUTH_URL", settings.dr_swift_auth_url),
        ("CHUTIAN_DR_SWIFT_USER", settings.dr_swift_user),
    ):
        if not value:
            problems.append(f"{name}: required with CHUTIAN_DR_STORE=swift:…")
    checks = [(settings.dr_swift_key_file, "CHUTIAN_DR_SWIFT_KEY_FILE")]
    if settings.dr_gateway_url:
        checks.append((settings.dr_gateway_password_file, "CHUTIAN_DR_GATEWAY_PASSWORD_FILE"))
        if not settings.dr_gateway_url.startswith("rest:http"):
            problems.append("CHUTIAN_DR_GATEWAY_URL: expected rest:http(s)://host:port/")
    for path, what in checks:
        try:
            _secret_file(path, what)
        except ConfigurationError as exc:
            problems += exc.problems
    return problems


def store_of(worker: Any) -> DrStore:
    """The injected store (tests) or the one the settings describe."""
    store = worker.extras.get("dr_store")
    if store is None:
        store = worker.extras["dr_store"] = store_from_settings(worker.settings)
    assert isinstance(store, DrStore)
    return store


def restore_root(settings: Settings) -> Path:
    return settings.dr_restore_root or settings.data_dir / "dr-restores"
