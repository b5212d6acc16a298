"""The DR alert rules are valid and their promtool unit tests pass (RPO breach, failed drill, missed runs)."""

from __future__ import annotations

from tests.monitoring.dr_promtool import RULES, UNIT_TESTS, promtool


def test_dr_rules_are_valid() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 rules found" in done.stdout


def test_dr_rules_unit_tests_pass() -> None:
    done = promtool("test", "rules", str(UNIT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
