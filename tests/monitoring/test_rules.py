"""Alert and recording rules: valid for promtool, every alert unit-tested with
`promtool test rules`, every alert's summary bilingual and its runbook in docs/operations.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.monitoring.tools import ROOT, RULE_TESTS_DIR, all_rules, binary, rule_files


def test_there_are_rules_and_tests() -> None:
    assert {p.name for p in rule_files()} >= {
        "capacity.rules.yml",
        "quotas.rules.yml",
        "provisioning.rules.yml",
        "platform.rules.yml",
    }
    assert len(list(RULE_TESTS_DIR.glob("*.test.yml"))) >= 4


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_promtool_checks_the_rules_file(path: Path) -> None:
    out = subprocess.run([binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", sorted(RULE_TESTS_DIR.glob("*.test.yml")), ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path: Path) -> None:
    out = subprocess.run(
        [binary("promtool"), "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_promtool_unit_test_that_expects_it_to_fire() -> None:
    fired: set[str] = set()
    for path in RULE_TESTS_DIR.glob("*.test.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    alerts = {r["alert"] for r in all_rules() if "alert" in r}
    assert alerts - fired == set(), "alerts without a promtool test that sees them fire"


def _anchors(doc: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", doc.read_text(), re.M)
    return {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-")) for h in headings}


def test_alerts_are_bilingual_with_severity_and_a_runbook_section() -> None:
    """Every alert's runbook_url names a section that exists (docs/<page>.md#<heading>)."""
    for rule in all_rules():
        if "alert" not in rule:
            continue
        summary = rule["annotations"]["summary"]
        assert re.search(r"[\u4e00-\u9fff]", summary) and re.search(r"[A-Za-z]{3}", summary), rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page.startswith("docs/") and (ROOT / page).is_file(), f"{rule['alert']}: no page {page}"
        assert anchor in _anchors(ROOT / page), f"{rule['alert']}: {page} has no section #{anchor}"
