"""Where the monitoring tests find their binaries and files. A missing tool fails the test
that needs it with how to install it: nothing is skipped silently."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "monitoring" / "rules"
RULE_TESTS_DIR = ROOT / "monitoring" / "tests"
DASHBOARDS_DIR = ROOT / "helm" / "chutian" / "dashboards"
CHART_DIR = ROOT / "helm" / "chutian"


def binary(name: str, hint: str = "scripts/test-assets installs it (apt package prometheus)") -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not on PATH: {hint}")
    return found


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.rules.yml"))


def rules(path: Path) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def all_rules() -> list[dict[str, Any]]:
    return [rule for path in rule_files() for rule in rules(path)]
