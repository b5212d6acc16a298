#!/usr/bin/env python3
"""Write the Grafana dashboards (helm/chutian/dashboards/*.json) from the panel lists below.

Hand-written JSON drifts; this keeps every panel one line of intent: bilingual title, query,
unit, and — when a panel may legitimately show nothing — the reason, stored in the panel as
`chutianMayBeEmpty` (and in its description) so the end-to-end test accepts an empty answer
only where one is declared. `tests/monitoring/test_dashboards.py` fails if the committed JSON
differs from what this writes. Usage: scripts/dashboards.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "helm" / "chutian" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Panel:
    title: str  # "中文 / English"
    exprs: tuple[str, ...]
    kind: str = "timeseries"  # timeseries | table | stat | bargauge
    unit: str = "short"
    legend: str = ""
    may_be_empty: str | None = None
    width: int = 12


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    tags: tuple[str, ...]
    panels: tuple[Panel, ...]


DASHBOARDS = (
    Dashboard(
        "chutian-capacity",
        "楚天云 容量 / Chutian capacity",
        ("chutian", "capacity"),
        (
            Panel(
                "已分配与总量 / Allocated vs total by region",
                ("chutian_capacity_allocated", "chutian_capacity_total"),
                legend="{{region}} {{resource}}",
            ),
            Panel(
                "余量 / Headroom by region",
                ("chutian:capacity_headroom:ratio",),
                kind="bargauge",
                unit="percentunit",
                legend="{{region}} {{resource}}",
            ),
            Panel(
                "按专题云分配 / Allocated by region and themed cloud",
                ("chutian:capacity_allocated_by_cloud:sum",),
                kind="table",
            ),
            Panel(
                "预计耗尽天数 / Days to exhaustion (linear trend, 6 h)",
                ("chutian:capacity_days_to_exhaustion",),
                kind="table",
                unit="d",
            ),
            Panel(
                "已批准未交付需求 / Approved, not yet provisioned demand",
                ("sum by (region, cloud, resource) (chutian_capacity_demand)",),
                kind="table",
                may_be_empty="only while approved requests wait for provisioning; none waiting is the healthy case",
            ),
            Panel(
                "后端实测已用 / Backend-measured usage",
                ("chutian_capacity_used",),
                legend="{{region}} {{resource}}",
                may_be_empty=(
                    "measured by the capacity sync of OpenStack regions only; a site with only "
                    "simulated regions (the embedded demo) has no measurement"
                ),
            ),
        ),
    ),
    Dashboard(
        "chutian-tenants-quotas",
        "楚天云 租户与配额 / Chutian tenants and quotas",
        ("chutian", "quotas"),
        (
            Panel(
                "用量前十 / Top consumers (vCPUs, used + reserved)",
                (
                    'topk(10, chutian_quota_used{tenant_level!="region",resource="vcpus"}'
                    ' + chutian_quota_reserved{tenant_level!="region",resource="vcpus"})',
                ),
                kind="table",
            ),
            Panel(
                "接近上限的租户 / Tenants nearest their limits",
                ('topk(15, chutian:quota_utilisation:ratio{tenant_level!="region"})',),
                kind="table",
                unit="percentunit",
            ),
            Panel(
                "切片与共享节点 / Slices vs shared nodes",
                ("sum by (tenant_level, mode) (chutian_quota_nodes)",),
                kind="bargauge",
                legend="{{tenant_level}} {{mode}}",
            ),
            Panel(
                "按专题云预留 / Reserved by themed cloud",
                ('sum by (cloud, resource) (chutian_quota_reserved{tenant_level="province"})',),
                kind="table",
            ),
            Panel(
                "配额上限 / Limits by tenant",
                ('chutian_quota_limit{tenant_level!="region"}',),
                kind="table",
                width=24,
            ),
        ),
    ),
    Dashboard(
        "chutian-provisioning",
        "楚天云 交付 / Chutian provisioning",
        ("chutian", "provisioning"),
        (
            Panel("各状态申请 / Requests by state", ("sum by (state) (chutian_requests)",), legend="{{state}}"),
            Panel(
                "状态流转 / Transitions per hour",
                ("sum by (to_state) (increase(chutian_request_transitions_total[1h]))",),
                legend="{{to_state}}",
            ),
            Panel(
                "审批耗时 P50/P90 / Approval latency p50, p90",
                (
                    "histogram_quantile(0.5, sum by (le, kind) (chutian_request_approval_seconds_bucket))",
                    "histogram_quantile(0.9, sum by (le, kind) (chutian_request_approval_seconds_bucket))",
                ),
                unit="s",
                legend="{{kind}}",
                may_be_empty="no request was approved in the last 24 h",
            ),
            Panel(
                "操作耗时 P95 / Operation duration p95 (24 h)",
                ("histogram_quantile(0.95, sum by (le, kind) (chutian_operation_duration_seconds_bucket))",),
                unit="s",
                legend="{{kind}}",
            ),
            Panel(
                "操作失败率 / Operation failure ratio (24 h)",
                ("chutian:operation_failures:ratio24h",),
                unit="percentunit",
                legend="{{kind}}",
            ),
            Panel(
                "失败与异常操作 / Failed and errored operations",
                ('sum by (kind, state) (chutian_operations{state=~"failed|errored"})',),
                kind="table",
                may_be_empty="no operation has failed or errored",
            ),
            Panel(
                "最久运行中的操作 / Oldest running operation",
                ("max by (kind) (chutian_operation_oldest_running_seconds)",),
                kind="stat",
                unit="s",
            ),
            Panel(
                "后端错误 / Backend errors per hour",
                ("sum by (backend, kind) (increase(chutian_backend_errors_total[1h]))",),
                legend="{{backend}} {{kind}}",
                may_be_empty="no backend has raised an error yet",
            ),
            Panel(
                "接口延迟 P95 / API latency p95",
                ("chutian:api_request_duration_seconds:p95_5m",),
                unit="s",
                legend="{{route}}",
            ),
            Panel(
                "工作进程心跳 / Worker heartbeat age",
                ("chutian:worker_heartbeat_age:seconds",),
                unit="s",
                legend="{{queue}}",
            ),
            Panel(
                "审计链 / Audit chain verified, head sequence",
                ("chutian_audit_chain_verified", "chutian_audit_head_sequence"),
                kind="stat",
            ),
        ),
    ),
    Dashboard(
        "chutian-dr",
        "楚天云 远程灾备 / Chutian disaster recovery",
        ("chutian", "dr"),
        (
            Panel(
                "RPO 合规 (市州/县区) / RPO compliance by city and county",
                ("chutian_dr_compliant",),
                kind="table",
                width=24,
            ),
            Panel(
                "RPO 合规率 / Compliant policies",
                ("sum(chutian_dr_compliant) / count(chutian_dr_compliant)",),
                kind="stat",
                unit="percentunit",
            ),
            Panel(
                "实际与目标 RPO / Achieved vs target RPO",
                ("chutian_dr_rpo_achieved_seconds", "chutian_dr_rpo_target_seconds"),
                unit="s",
            ),
            Panel(
                "最新恢复点时长 / Age of the newest verified recovery point",
                ("time() - chutian_dr_last_recovery_point_timestamp_seconds",),
                kind="table",
                unit="s",
            ),
            Panel(
                "演练 RTO / Drill RTO",
                ("chutian_dr_drill_rto_seconds",),
                kind="table",
                unit="s",
            ),
            Panel(
                "距上次成功演练 / Since the last successful drill",
                ("time() - chutian_dr_drill_last_success_timestamp_seconds",),
                kind="table",
                unit="s",
            ),
            Panel(
                "备份次数 (按结果) / Backup runs by result (24 h)",
                ("sum by (result) (increase(chutian_dr_runs_total[24h]))",),
                legend="{{result}}",
            ),
            Panel(
                "错过的备份 / Missed runs (24 h)",
                ('sum by (tenant, policy) (increase(chutian_dr_runs_total{result="missed"}[24h]))',),
                kind="table",
                may_be_empty="no scheduled run was missed in the last 24 h",
            ),
            Panel(
                "上传速率 / Bytes uploaded to the DR site",
                ("sum by (tenant) (rate(chutian_dr_bytes_uploaded_total[1h]))",),
                unit="Bps",
                legend="{{tenant}}",
            ),
        ),
    ),
)


def panel_json(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": panel.legend,
                "instant": panel.kind in {"table", "stat", "bargauge"},
                "range": panel.kind == "timeseries",
            }
            for i, expr in enumerate(panel.exprs)
        ],
    }
    if panel.may_be_empty:
        out["description"] = f"May be empty: {panel.may_be_empty}."
        out["chutianMayBeEmpty"] = panel.may_be_empty
    return out


def dashboard_json(board: Dashboard) -> dict[str, Any]:
    panels, x, y = [], 0, 0
    for pid, panel in enumerate(board.panels, start=1):
        if x + panel.width > 24:
            x, y = 0, y + 8
        panels.append(panel_json(panel, pid, x, y))
        x += panel.width
    return {
        "uid": board.uid,
        "title": board.title,
        "tags": list(board.tags),
        "timezone": "Asia/Shanghai",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "数据源 / Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> dict[str, str]:
    return {
        f"{board.uid}.json": json.dumps(dashboard_json(board), ensure_ascii=False, indent=2) + "\n"
        for board in DASHBOARDS
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files differ")
    args = parser.parse_args()
    stale = []
    for name, text in render().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        sys.stderr.write(f"stale dashboards (run scripts/dashboards.py): {', '.join(stale)}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
