"""The Grafana dashboards: generated (never hand-edited), bilingual, every panel a query, and
an empty answer allowed only where the panel says why."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

from tests.monitoring.tools import DASHBOARDS_DIR, ROOT

ISSUE_BOARDS = {"chutian-capacity", "chutian-tenants-quotas", "chutian-provisioning", "chutian-dr"}


def boards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def test_committed_dashboards_are_what_the_generator_writes() -> None:
    script = ROOT / "scripts" / "dashboards.py"
    out = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_the_four_dashboards_exist_with_unique_uids() -> None:
    found = boards()
    assert set(found) == ISSUE_BOARDS
    assert {b["uid"] for b in found.values()} == ISSUE_BOARDS


def test_every_panel_is_bilingual_and_queries_prometheus() -> None:
    for name, board in boards().items():
        assert board["panels"], name
        for panel in board["panels"]:
            title = panel["title"]
            zh, _, en = title.partition(" / ")
            assert re.search(r"[\u4e00-\u9fff]", zh) and re.search(r"[A-Za-z]{3}", en), f"{name}: {title}"
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), f"{name}: {title}"
            reason = panel.get("chutianMayBeEmpty")
            assert reason is None or len(reason) > 20, f"{name}: {title}: say why it may be empty"
