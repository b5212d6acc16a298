"""The `chutian` command as scripts use it: exit codes and --json output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from controlplane.site_config import default_site_text
from tests.controlplane.helpers import credit_code


def chutian(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHUTIAN_")}
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *args],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def env_for(database_url: str, tmp_path: Path, secret_keys_file: Path) -> dict[str, str]:
    return {
        "CHUTIAN_DATABASE_URL": database_url,
        "CHUTIAN_DATA_DIR": str(tmp_path),
        "CHUTIAN_SECRET_KEYS_FILE": str(secret_keys_file),
    }


def test_check_config_ok_and_broken(tmp_path: Path, database_url: str, secret_keys_file: Path) -> None:
    env = env_for(database_url, tmp_path, secret_keys_file)
    assert chutian("check-config", env=env).returncode == 0
    data = yaml.safe_load(default_site_text())
    data["clouds"][2]["allowed_flavors"] = ["ghost"]
    data["regions"][2]["mlps_assessed"] = [5]
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(data, allow_unicode=True))
    result = chutian("check-config", "--json", env=env | {"CHUTIAN_SITE_FILE": str(site)})
    assert result.returncode == 2
    problems = json.loads(result.stdout)["problems"]
    assert any("clouds[2].allowed_flavors[0]" in p for p in problems)
    assert any("regions[2].mlps_assessed[0]" in p for p in problems)


def test_tenants_list_create_show(tmp_path: Path, database_url: str, secret_keys_file: Path) -> None:
    env = env_for(database_url, tmp_path, secret_keys_file)
    listed = chutian("tenants", "list", "--subtree", "hubei.yichang", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 14
    created = chutian(
        "tenants",
        "create",
        "--parent",
        "hubei.yichang.yidu",
        "--code",
        "water",
        "--name-zh",
        "水务局",
        "--name-en",
        "Water Bureau",
        "--kind",
        "unit",
        "--credit-code",
        credit_code(),
        "--json",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["path"] == "hubei.yichang.yidu.water"
    shown = chutian("tenants", "show", "hubei.yichang.yidu.water", "--json", env=env)
    assert json.loads(shown.stdout)["name_zh"] == "水务局"
    bad = chutian(
        "tenants",
        "create",
        "--parent",
        "hubei.yichang",
        "--code",
        "x",
        "--name-zh",
        "x",
        "--name-en",
        "x",
        "--kind",
        "county",
        "--credit-code",
        "123",
        env=env,
    )
    assert bad.returncode == 2 and "credit_code" in bad.stderr
    missing = chutian("tenants", "show", "hubei.atlantis", env=env)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_migrate_a_fresh_sqlite_database(tmp_path: Path) -> None:
    env = {"CHUTIAN_DATA_DIR": str(tmp_path)}
    result = chutian("migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "chutian.sqlite3").exists()
    assert (tmp_path / "secret-keys").stat().st_mode & 0o777 == 0o600
    assert chutian("migrate", "--check", env=env).returncode == 0
    assert len(json.loads(chutian("tenants", "list", "--json", env=env).stdout)) == 60


def test_postgres_without_key_file_refuses_to_start(tmp_path: Path) -> None:
    result = chutian(
        "migrate",
        env={
            "CHUTIAN_DATA_DIR": str(tmp_path),
            "CHUTIAN_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
            "CHUTIAN_SECRET_KEYS_FILE": str(tmp_path / "none"),
        },
    )
    assert result.returncode == 2
    assert "CHUTIAN_SECRET_KEYS_FILE" in result.stderr
