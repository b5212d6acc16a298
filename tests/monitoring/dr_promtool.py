"""Run `promtool` on the DR alert rules: the shipped unit tests, and ad-hoc ones built from
series a real scrape produced (so an alert is proven to fire on what the collector emits)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "rules" / "dr.rules.yml"
UNIT_TESTS = ROOT / "monitoring" / "tests" / "dr.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed (apt-get install -y prometheus; scripts/test-assets does it)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, check=False)


def alert_fires(alert: str, series: str, value: float, labels: dict[str, str], tmp_path: Path) -> bool:
    """Does `alert` fire, with `labels`, when `series` (one scraped sample) holds `value` for 10 minutes?"""
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": " ".join([repr(value)] * 11)}],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": alert, "exp_alerts": []},
                ],
            }
        ],
    }
    path = tmp_path / f"{alert}.test.json"  # promtool reads YAML, and JSON is YAML
    path.write_text(json.dumps(test))
    # Expect silence: promtool then fails listing what fired under `got:`, labels and all.
    done = promtool("test", "rules", str(path))
    if done.returncode == 0:
        return False
    got = (done.stdout + done.stderr).split("got:", 1)[-1]
    assert "Labels:" in got, done.stdout + done.stderr  # a failure other than "it fired"
    return f'alertname="{alert}"' in got and all(f'{k}="{v}"' in got for k, v in labels.items())
