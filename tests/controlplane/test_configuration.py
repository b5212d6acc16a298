"""Configuration is validated as a whole and reported at once, with paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from controlplane.bootstrap import check_config
from controlplane.errors import ConfigurationError
from controlplane.secretbox import SecretBox, ensure_key_file, read_keys
from controlplane.settings import Settings
from controlplane.site_config import default_site_text, load_site, parse_site
from controlplane.tenants.credit_code import credit_code_problem, make_credit_code


def broken_site() -> dict:
    data = yaml.safe_load(default_site_text())
    data["clouds"][0]["allowed_flavors"].append("nope")
    data["regions"][0]["capacity"]["gpus"] = 3
    data["clouds"][1]["class"] = "x"
    data["regions"][1]["primary"] = True
    data["flavors"][0]["vcpus"] = 0
    return data


def test_default_site_file_is_valid() -> None:
    site = load_site(None)
    assert [r.code for r in site.regions] == ["wuhan", "xiangyang", "yichang"]
    assert len(site.clouds) == 10 and site.region("wuhan").primary


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_site(broken_site())
    text = "\n".join(caught.value.problems)
    assert "clouds[0].allowed_flavors[" in text and "'nope'" in text
    assert "regions[0].capacity" in text and "gpus" in text
    assert "clouds[1].class" in text
    assert "exactly one region must be primary" in text
    assert "flavors[0].vcpus" in text
    assert len(caught.value.problems) == 5


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"missing\.yaml"):
        load_site(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("regions: [unclosed")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_site(bad)


def test_check_config_collects_site_secret_and_broker_problems(tmp_path: Path) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(broken_site(), allow_unicode=True))
    settings = Settings(
        site_file=site_file,
        database_url="postgresql+psycopg://postgres@127.0.0.1/x",
        broker_url="ftp://nope",
        secret_keys_file=tmp_path / "absent",
        data_dir=tmp_path,
    )
    _, problems = check_config(settings)
    text = "\n".join(problems)
    assert "CHUTIAN_SECRET_KEYS_FILE" in text, "PostgreSQL without a key file must be refused"
    assert "CHUTIAN_BROKER_URL" in text
    assert "clouds[0].allowed_flavors" in text
    assert len(problems) == 7


def test_embedded_key_file_is_created_0600_once(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    ensure_key_file(path)
    first = path.read_text()
    ensure_key_file(path)
    assert path.read_text() == first, "an existing key file must never be overwritten"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert len(read_keys(path)) == 1


def test_secret_box_first_key_encrypts_all_decrypt(tmp_path: Path) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    sealed_old = SecretBox([old]).seal("app-cred-secret")
    box = SecretBox([new, old])
    assert box.open(sealed_old) == "app-cred-secret"
    rotated = box.rotate(sealed_old)
    assert SecretBox([new]).open(rotated) == "app-cred-secret"
    assert "app-cred-secret" not in box.seal("app-cred-secret")
    assert "keys hidden" in repr(box)
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox([Fernet.generate_key()]).open(sealed_old)


def test_key_file_problems_are_named(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("not-a-key\n")
    path.chmod(0o644)
    with pytest.raises(ConfigurationError) as caught:
        read_keys(path)
    assert any("line 1" in p for p in caught.value.problems)
    assert any("chmod 600" in p for p in caught.value.problems)


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("91350100M000100Y43", None),  # published example
        ("91350100M000100Y44", "check character"),
        ("91350100M000100Y4", "18 characters"),
        ("91350100M0001O0Y43", "alphabet"),  # letter O is not in the alphabet
        ("9135X100M000100Y43", "division"),
    ],
)
def test_credit_code_check(code: str, problem: str | None) -> None:
    found = credit_code_problem(code)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_made_codes_validate() -> None:
    for n in range(200):
        assert credit_code_problem(make_credit_code("12", "420500", f"A{n:08d}")) is None
