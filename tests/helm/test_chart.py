"""The Helm chart: lints strictly, renders with default and production values, every core
manifest passes kubernetes-validate (strict), the ServiceMonitor and PrometheusRule pass the
vendored CRD schemas, the PrometheusRule's groups pass `promtool check rules`, and the chart
holds references to Secrets only. Nothing is skipped: a missing helm or promtool fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.monitoring.tools import CHART_DIR, DASHBOARDS_DIR, RULES_DIR, binary

K8S_VERSION = "1.32.0"
CRDS = Path(__file__).parent / "crds"
CRD_KINDS = {"ServiceMonitor": "servicemonitor", "PrometheusRule": "prometheusrule"}
VALUES = {"default": [], "production": ["-f", str(CHART_DIR / "values-production.yaml")]}


def helm() -> str:
    """scripts/test-assets links helm (from a PyPI wheel) next to the venv's python."""
    for candidate in (os.environ.get("CHUTIAN_HELM"), str(Path(sys.executable).parent / "helm"), shutil.which("helm")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("helm not found: scripts/test-assets installs it into .venv/bin (or set CHUTIAN_HELM)")


def run_helm(*args: str) -> str:
    out = subprocess.run([helm(), *args], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def render(values: str, *extra: str, chart: str | None = None) -> list[dict[str, Any]]:
    text = run_helm("template", "rel", chart or str(CHART_DIR), "--namespace", "chutian", *VALUES[values], *extra)
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.mark.parametrize("values", VALUES)
def test_lint_strict(values: str) -> None:
    run_helm("lint", "--strict", str(CHART_DIR), *VALUES[values])


@pytest.mark.parametrize("values", VALUES)
def test_core_manifests_pass_kubernetes_validate(values: str) -> None:
    docs = render(values)
    core = [d for d in docs if d["kind"] not in CRD_KINDS]
    assert len(core) >= 14
    for doc in core:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize("values", VALUES)
def test_custom_resources_pass_their_crd_schemas(values: str) -> None:
    docs = render(values)
    seen = set()
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            schema = json.loads((CRDS / f"{CRD_KINDS[doc['kind']]}.schema.json").read_text())
            jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
            seen.add(doc["kind"])
    assert seen == set(CRD_KINDS), "both custom resources must render"


def test_the_crd_schemas_refuse_what_the_api_would_refuse_or_prune() -> None:
    rule = next(d for d in render("default") if d["kind"] == "PrometheusRule")
    schema = json.loads((CRDS / "prometheusrule.schema.json").read_text())
    rule["spec"]["groups"][0]["rules"][0]["fro"] = "5m"  # a misspelt `for`
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rule, schema, cls=jsonschema.Draft202012Validator)
    monitor = next(d for d in render("default") if d["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            monitor, json.loads((CRDS / "servicemonitor.schema.json").read_text()), cls=jsonschema.Draft202012Validator
        )


def test_prometheus_rule_carries_every_rules_file_and_passes_promtool(tmp_path: Path) -> None:
    rule = next(d for d in render("default") if d["kind"] == "PrometheusRule")
    expected = [g for p in sorted(RULES_DIR.glob("*.rules.yml")) for g in yaml.safe_load(p.read_text())["groups"]]
    assert rule["spec"]["groups"] == expected
    path = tmp_path / "rendered.rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, allow_unicode=True))
    out = subprocess.run([binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dashboards_ship_as_configmaps_with_the_sidecar_label() -> None:
    maps = [d for d in render("default") if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]]
    shipped = {name: json.loads(text) for m in maps for name, text in m["data"].items()}
    assert set(shipped) == {p.name for p in DASHBOARDS_DIR.glob("*.json")}
    assert all(m["metadata"]["labels"]["grafana_dashboard"] == "1" for m in maps)
    assert shipped["chutian-dr.json"]["uid"] == "chutian-dr"


def test_the_packaged_chart_renders_the_same(tmp_path: Path) -> None:
    """The chart's rules/ is a link to monitoring/rules: `helm package` must carry the files."""
    run_helm("package", str(CHART_DIR), "--destination", str(tmp_path))
    packaged = next(tmp_path.glob("chutian-*.tgz"))
    assert render("production", chart=str(packaged)) == render("production")


@pytest.mark.parametrize("values", VALUES)
def test_workloads_are_hardened_and_shaped_as_the_issue_asks(values: str) -> None:
    docs = render(values)
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    api, worker = by[("Deployment", "rel-chutian-api")], by[("Deployment", "rel-chutian-worker")]
    scheduler = by[("Deployment", "rel-chutian-scheduler")]
    if values == "default":
        assert api["spec"]["replicas"] == 2 and worker["spec"]["replicas"] == 2
    assert scheduler["spec"]["replicas"] == 1
    assert ("PodDisruptionBudget", "rel-chutian-api") in by and ("PodDisruptionBudget", "rel-chutian-worker") in by
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    job = by[("Job", "rel-chutian-migrate")]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert any(d["kind"] == "NetworkPolicy" for d in docs)
    for pod in (d["spec"]["template"]["spec"] for d in docs if d["kind"] in {"Deployment", "Job"}):
        assert pod["securityContext"]["runAsNonRoot"] is True
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["resources"]["requests"] and c["resources"]["limits"]
            assert any(m["mountPath"] == "/tmp" and m["name"] in tmp_volumes for m in c["volumeMounts"])


@pytest.mark.parametrize("values", VALUES)
def test_secrets_only_by_reference(values: str) -> None:
    docs = render(values)
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart must not create Secrets"
    for doc in docs:
        if doc["kind"] not in {"Deployment", "Job"}:
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in c["env"]}
            for name in ("CHUTIAN_DATABASE_URL", "CHUTIAN_BROKER_URL"):
                assert "secretKeyRef" in env[name]["valueFrom"] and "value" not in env[name], name
            plain = " ".join(str(e.get("value", "")) for e in c["env"])
            assert "postgresql" not in plain and "redis://" not in plain and "amqp://" not in plain


def test_missing_secret_reference_is_refused() -> None:
    out = subprocess.run(
        [helm(), "template", "rel", str(CHART_DIR), "--set", "database.existingSecret="],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0 and "database.existingSecret is required" in out.stderr


def test_the_service_monitor_selects_the_metrics_service_over_api_and_scheduler_pods() -> None:
    docs = render("default")
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "rel-chutian-metrics")
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    pods = {
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "Deployment"
        and service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    }
    assert pods == {"rel-chutian-api", "rel-chutian-scheduler"}, "workers serve no metrics; API and exporter do"
