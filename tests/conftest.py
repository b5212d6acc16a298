"""Shared fixtures: every test gets its own migrated, seeded database.

SQLite by default; PostgreSQL when CHUTIAN_TEST_DATABASE_URL points at a server. On
PostgreSQL the session creates a template database (``alembic upgrade head`` + seed, never
``create_all``) and each test gets ``CREATE DATABASE … TEMPLATE`` of it, dropped afterwards,
so whatever earlier runs left on the shared server never leaks in.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine, make_url

from controlplane.api.app import create_app
from controlplane.audit.chain import append_hook
from controlplane.bootstrap import seed_database
from controlplane.db.engine import make_engine
from controlplane.db.migrate import upgrade
from controlplane.db.uow import RecordingDispatcher, unit_of_work
from controlplane.settings import Settings
from controlplane.site_config import Site, load_site

pytest_plugins = ["tests.debian_root"]  # the throwaway Debian root for the real playbooks

PG_URL = os.environ.get("CHUTIAN_TEST_DATABASE_URL", "")
CREATED_SECRETS: list[str] = []  # every token the fixtures mint; checked against the suite's log


def on_postgres() -> bool:
    return PG_URL.startswith("postgresql")


SUITE_LOG: list[str] = []


class _SuiteLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            SUITE_LOG.append(self.format(record))
        except Exception:  # a log record that cannot be formatted is not ours to fail on
            SUITE_LOG.append(str(record.msg))


def pytest_configure(config: pytest.Config) -> None:
    """Keep every log record of the whole suite, to grep it for secrets at the end."""
    handler = _SuiteLog(level=logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    for noisy in ("sqlalchemy", "asyncio", "httpcore", "hpack", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    text = "\n".join(SUITE_LOG)
    leaked = [s[:12] + "…" for s in CREATED_SECRETS if s in text]
    if leaked:
        print(f"\nSECRETS LEAKED INTO THE SUITE'S LOGS: {leaked}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if on_postgres():
        return
    for item in items:
        if item.get_closest_marker("postgres_only"):
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: runs in the PostgreSQL phase of scripts/test"))


def _admin_engine() -> Engine:
    return create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")


def _pg_url(name: str) -> str:
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def site() -> Site:
    return load_site(None)


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory, site: Site) -> Iterator[str]:
    """A migrated and seeded database to copy for each test: a file, or a PostgreSQL template."""
    if on_postgres():
        name = f"chutian_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin = _admin_engine()
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = _pg_url(name)
        _migrate_and_seed(url, site)
        yield name
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("template") / "template.sqlite3"
        _migrate_and_seed(f"sqlite:///{path}", site)
        yield str(path)


def _migrate_and_seed(url: str, site: Site) -> None:
    upgrade(url)
    engine = make_engine(url)
    try:
        seed_database(engine, site)
    finally:
        engine.dispose()


@pytest.fixture
def database_url(_template: str, tmp_path: Path) -> Iterator[str]:
    if on_postgres():
        name = f"chutian_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        admin = _admin_engine()
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{_template}"'))
        yield _pg_url(name)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        path = tmp_path / "chutian.sqlite3"
        shutil.copyfile(_template, path)
        yield f"sqlite:///{path}"


@pytest.fixture
def secret_keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret-keys"
    path.write_text(Fernet.generate_key().decode() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def settings(database_url: str, tmp_path: Path, secret_keys_file: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        secret_keys_file=secret_keys_file,
        broker_url="memory://",
        metrics_port=0,
    )


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def app(settings: Settings, engine: Engine, site: Site, dispatcher: RecordingDispatcher) -> FastAPI:
    return create_app(settings, engine=engine, site=site, dispatcher=dispatcher)


def grant_token(engine: Engine, subject: str, bindings: list[tuple[str, str]]) -> str:
    """Bind `subject` to (role, tenant path) pairs and mint it a token, as an admin would."""
    from controlplane.auth import tokens
    from controlplane.auth.models import PrincipalKind, RoleBinding
    from controlplane.auth.principal import system_principal
    from controlplane.tenants.models import Tenant

    with unit_of_work(engine, principal=system_principal("test-setup"), before_commit=[append_hook]) as uow:
        for role, path in bindings:
            tenant_id = uow.session.scalars(select(Tenant.id).where(Tenant.path == path)).one()
            uow.session.add(
                RoleBinding(
                    subject=subject, role=role, tenant_id=tenant_id, created_by="test-setup", created_at=uow.now()
                )
            )
        _, secret = tokens.mint(
            uow, subject=subject, name="test", kind=PrincipalKind.USER, created_by="test-setup", ttl=timedelta(days=1)
        )
    return secret


@pytest.fixture
def anon(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def api_as(app: FastAPI, engine: Engine) -> Iterator[Callable[..., TestClient]]:
    """`api_as("tenant-admin", "hubei.wuhan")`: a client for a fresh subject holding that role there
    (extra (role, path) pairs may follow; `subject=` names it)."""
    clients: list[TestClient] = []

    def make(role: str, path: str, *more: tuple[str, str], subject: str | None = None) -> TestClient:
        name = subject or f"{role}.{path}.{uuid.uuid4().hex[:6]}"
        token = grant_token(engine, name, [(role, path), *more])
        test_client = TestClient(app, raise_server_exceptions=False)
        test_client.__enter__()
        test_client.headers["Authorization"] = f"Bearer {token}"
        test_client.token = token  # type: ignore[attr-defined]
        test_client.subject = name  # type: ignore[attr-defined]
        clients.append(test_client)
        return test_client

    yield make
    for test_client in clients:
        test_client.__exit__(None, None, None)


@pytest.fixture
def client(api_as: Callable[..., TestClient]) -> TestClient:
    """A platform admin bound at the province: sees and may do everything."""
    return api_as("platform-admin", "hubei", subject="admin")
