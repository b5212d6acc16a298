"""Tokens and credentials created here never appear in plain text in logs or the database."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, select
from sqlalchemy.engine import Engine

from tests.conftest import CREATED_SECRETS


def dump_database(engine: Engine) -> str:
    """Every row of every table, as text (reflected, so new tables are included automatically)."""
    metadata = MetaData()
    metadata.reflect(engine)
    lines: list[str] = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                lines.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(lines)


def test_no_secret_in_logs_or_database(
    client: TestClient,
    api_as: Callable[..., TestClient],
    engine: Engine,
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)  # bound parameters end up in the log
    try:
        secrets: list[str] = []
        created = client.post("/v1/tokens", json={"name": "leak-check", "subject": "svc-dr", "kind": "service"})
        secrets.append(created.json()["token"])
        secrets.append(client.post("/v1/tokens", json={"name": "own"}).json()["token"])
        # failed attempts with a real secret slightly altered must not log what was presented
        client.get("/v1/whoami", headers={"Authorization": f"Bearer {secrets[0][:-2]}zz"})
        client.delete(f"/v1/tokens/{created.json()['id']}")
        client.get("/v1/whoami", headers={"Authorization": f"Bearer {secrets[0]}"})  # revoked: 401
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHUTIAN_")}
        env |= {
            "CHUTIAN_DATABASE_URL": database_url,
            "CHUTIAN_DATA_DIR": str(tmp_path),
            "CHUTIAN_SECRET_KEYS_FILE": str(tmp_path / "keys"),
            "CHUTIAN_LOG_LEVEL": "DEBUG",
        }
        (tmp_path / "keys").write_text(__import__("cryptography.fernet").fernet.Fernet.generate_key().decode())
        (tmp_path / "keys").chmod(0o600)
        bootstrap = subprocess.run(
            [sys.executable, "-m", "controlplane.cli", "bootstrap-admin", "--name", "ops"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        admin_token = bootstrap.stdout.strip()
        assert admin_token.startswith("ctk_") and bootstrap.stdout.count("\n") == 1, "stdout: the token only"
        secrets.append(admin_token)
        assert admin_token not in bootstrap.stderr
        secrets += CREATED_SECRETS
        logs = caplog.text + bootstrap.stderr
        database = dump_database(engine)
        assert len(database) > 1000, "the dump is suspiciously small"
        for secret in secrets:
            assert secret not in logs, "a token appeared in the logs"
            assert secret not in database, "a token is stored in plain text"
            if not secret.startswith("ctk_"):
                continue  # other tests' secrets (a backup repository's password, ...) are whole
            secret_part = secret.split("_", 2)[2]  # ctk_<prefix>_<secret>; the secret may itself contain "_"
            assert len(secret_part) >= 40 and secret_part not in database, "a token's secret is stored in plain text"
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
