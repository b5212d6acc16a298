"""Start-up checks and preparation shared by `serve`, `worker`, `migrate` and the tests."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from controlplane.db.engine import make_engine
from controlplane.db.migrate import upgrade
from controlplane.db.uow import unit_of_work
from controlplane.errors import ConfigurationError
from controlplane.secretbox import SecretBox, ensure_key_file, read_keys
from controlplane.settings import Settings
from controlplane.site_config import Site, load_site

BROKER_SCHEMES = ("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://", "sqla+", "memory://")


def check_config(settings: Settings, *, create_embedded_key: bool = False) -> tuple[Site | None, list[str]]:
    """Everything wrong with the configuration, at once, each with where it is."""
    problems: list[str] = []
    site: Site | None = None
    try:
        site = load_site(settings.site_file)
    except ConfigurationError as exc:
        problems += exc.problems
    try:
        url = make_url(settings.resolved_database_url)
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            problems.append(f"CHUTIAN_DATABASE_URL: unsupported backend '{url.get_backend_name()}'")
    except ArgumentError:
        problems.append("CHUTIAN_DATABASE_URL: not a database URL")
    if settings.broker_url and not settings.broker_url.startswith(BROKER_SCHEMES):
        problems.append(f"CHUTIAN_BROKER_URL: unsupported scheme (expected one of {', '.join(BROKER_SCHEMES)})")
    problems += _secret_problems(settings, create_embedded_key=create_embedded_key)
    from controlplane.backup.store import config_problems

    problems += config_problems(settings)
    return site, problems


def _secret_problems(settings: Settings, *, create_embedded_key: bool) -> list[str]:
    path: Path = settings.resolved_secret_keys_file
    if not path.exists():
        if settings.is_sqlite and settings.secret_keys_file is None:
            if create_embedded_key:
                ensure_key_file(path)
            else:
                return []  # created on first `serve`/`migrate`
        else:
            return [
                f"CHUTIAN_SECRET_KEYS_FILE: {path} does not exist; "
                "outside embedded mode a key file is required "
                "(generate one with `chutian secret-key >> FILE; chmod 600 FILE`)"
            ]
    try:
        read_keys(path)
    except ConfigurationError as exc:
        return exc.problems
    return []


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox(read_keys(settings.resolved_secret_keys_file))


def prepare(settings: Settings, *, seed: bool = True) -> Site:
    """Validate, migrate, sync the catalogue and seed the org tree. Refuses bad config."""
    site, problems = check_config(settings, create_embedded_key=True)
    if problems or site is None:
        raise ConfigurationError(problems)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    try:
        seed_database(engine, site, seed=seed)
    finally:
        engine.dispose()
    return site


def seed_database(engine: object, site: Site, *, seed: bool = True) -> None:
    from controlplane.catalogue.service import sync_from_site
    from controlplane.ledger.seed import seed_ledger
    from controlplane.tenants.seed import seed_org_tree

    with unit_of_work(engine) as uow:
        sync_from_site(uow, site)
        if seed:
            seed_org_tree(uow)
        seed_ledger(uow)


def ensure_embedded_admin(settings: Settings) -> Path | None:
    """Embedded mode, first run: mint a platform-admin token into a 0600 file in the data dir
    (never into a log), so a newcomer can call the API at once. Returns the file's path."""
    import os
    from datetime import timedelta

    from sqlalchemy import select

    from controlplane.audit.chain import append_hook
    from controlplane.auth import bindings
    from controlplane.auth.models import Role, RoleBinding
    from controlplane.auth.principal import system_principal

    if not (settings.embedded and settings.is_sqlite):
        return None
    path = settings.data_dir / "admin-token"
    engine = make_engine(settings.resolved_database_url)
    try:
        with unit_of_work(engine, principal=system_principal("embedded-setup"), before_commit=[append_hook]) as uow:
            has_admin = uow.session.scalars(
                select(RoleBinding.id).where(RoleBinding.role == Role.PLATFORM_ADMIN.value).limit(1)
            ).first()
            if has_admin is not None:
                return path if path.exists() else None
            secret = bindings.admin_token(
                uow,
                "admin",
                label="embedded",
                created_by="embedded-setup",
                ttl=timedelta(days=settings.token_default_ttl_days),
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secret + "\n")
    finally:
        engine.dispose()
    return path
