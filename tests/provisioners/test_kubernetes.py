"""The Kubernetes provisioner against an emulated API server, over real HTTP, with the real client.

The server is kmock's `KubernetesEmulator` with our fixes (`kube_emulator.py`): it stores
objects in memory and validates every body against the real OpenAPI schemas of Kubernetes
1.37, object names, labels and quantities, answering 422 as a real server would. What it
does NOT do — admission (PodNodeSelector, quota enforcement, RBAC), controllers (quota
status, namespace phase), cascade delete, resourceVersion conflicts, strategic-merge list
semantics, defaulting — is listed in its docstring; `test_kubernetes_real_cluster.py` runs
the same checks against a real cluster when `CHUTIAN_TEST_KUBECONFIG` is set.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from provisioners.errors import (
    BackendAuthError,
    BackendMisconfigured,
    BackendNotFound,
    BackendTimeout,
    InvalidField,
    InvalidSpec,
    ProvisionerError,
    ResourceConflict,
    TransientBackendError,
)
from provisioners.kubernetes import (
    LABEL_TENANT_PATH,
    NODE_SELECTOR_ANNOTATION,
    KubernetesNamespaces,
    NamespaceAllocation,
    error_from_api_exception,
    namespace_name,
)
from tests.provisioners.kube_emulator import EmulatorServer, Fault, running_emulator

JIANGAN = NamespaceAllocation(
    tenant_path="hubei.wuhan.jiangan",
    tenant_code="jiangan",
    cloud="industry",
    mlps_level=2,
    k8s_cpu_m=4000,
    k8s_memory_mb=8192,
    groups=("jiangan-ops",),
    admin_groups=("jiangan-admins",),
)
NS = "cht-industry-hubei-wuhan-jiangan"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with running_emulator() as running:
        yield running


@pytest.fixture
def kubeconfig(server: EmulatorServer, tmp_path: Path) -> Path:
    return server.write_kubeconfig(tmp_path / "kubeconfig", context="wuhan")


@pytest.fixture
def kube(kubeconfig: Path) -> Iterator[KubernetesNamespaces]:
    backend = KubernetesNamespaces.from_kubeconfig(kubeconfig, context="wuhan", timeout_s=5)
    yield backend
    backend.close()


def read(kube: KubernetesNamespaces, kind: str, name: str, namespace: str = NS) -> dict[str, Any]:
    """Read an object back through the real client, as an operator's kubectl would."""
    core = k8s_client.CoreV1Api(kube.api_client)
    rbac = k8s_client.RbacAuthorizationV1Api(kube.api_client)
    net = k8s_client.NetworkingV1Api(kube.api_client)
    call = {
        "Namespace": lambda: core.read_namespace(name, _preload_content=False),
        "ResourceQuota": lambda: core.read_namespaced_resource_quota(name, namespace, _preload_content=False),
        "LimitRange": lambda: core.read_namespaced_limit_range(name, namespace, _preload_content=False),
        "RoleBinding": lambda: rbac.read_namespaced_role_binding(name, namespace, _preload_content=False),
        "NetworkPolicy": lambda: net.read_namespaced_network_policy(name, namespace, _preload_content=False),
    }[kind]
    return dict(json.loads(call().data))


def writes(server: EmulatorServer) -> list[str]:
    return server.call(
        lambda emulator: [
            f"{r.method.value} {r.url.path}"
            for r in emulator._requests
            if r.method.value in ("POST", "PATCH", "DELETE")
        ]
    )


def exists(kube: KubernetesNamespaces, kind: str, name: str) -> bool:
    try:
        read(kube, kind, name)
    except k8s_client.ApiException as exc:
        assert exc.status == 404
        return False
    return True


# --- the namespace set ---------------------------------------------------------------------


def test_onboarding_produces_the_fenced_namespace_set(kube: KubernetesNamespaces) -> None:
    result = kube.ensure(JIANGAN)

    assert result.namespace == NS
    assert [(c.kind, c.name, c.action) for c in result.objects] == [
        ("Namespace", NS, "created"),
        ("ResourceQuota", "chutian-quota", "created"),
        ("LimitRange", "chutian-defaults", "created"),
        ("RoleBinding", "chutian-view", "created"),
        ("NetworkPolicy", "chutian-default-deny", "created"),
        ("NetworkPolicy", "chutian-allow-same-tenant", "created"),
    ]
    namespace = read(kube, "Namespace", NS)
    assert namespace["metadata"]["labels"] == {
        "chutian.hubei.gov.cn/tenant-path": "hubei.wuhan.jiangan",
        "chutian.hubei.gov.cn/tenant": "jiangan",
        "chutian.hubei.gov.cn/cloud": "industry",
        "chutian.hubei.gov.cn/mlps": "2",
        "app.kubernetes.io/managed-by": "chutian",
    }
    assert NODE_SELECTOR_ANNOTATION not in (namespace["metadata"].get("annotations") or {})
    assert read(kube, "ResourceQuota", "chutian-quota")["spec"]["hard"] == {
        "requests.cpu": "4",
        "limits.cpu": "4",
        "requests.memory": "8Gi",
        "limits.memory": "8Gi",
    }
    (limits,) = read(kube, "LimitRange", "chutian-defaults")["spec"]["limits"]
    assert limits["type"] == "Container"
    assert limits["default"] == {"cpu": "500m", "memory": "512Mi"}
    assert limits["defaultRequest"] == {"cpu": "100m", "memory": "128Mi"}
    view = read(kube, "RoleBinding", "chutian-view")
    assert view["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
    assert {s["name"] for s in view["subjects"]} == {"jiangan-ops", "jiangan-admins"}
    assert {s["kind"] for s in view["subjects"]} == {"Group"}
    assert not exists(kube, "RoleBinding", "chutian-edit")
    assert not exists(kube, "RoleBinding", "chutian-admin")
    deny = read(kube, "NetworkPolicy", "chutian-default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    same_tenant = read(kube, "NetworkPolicy", "chutian-allow-same-tenant")["spec"]
    assert same_tenant["ingress"] == [
        {"from": [{"namespaceSelector": {"matchLabels": {LABEL_TENANT_PATH: "hubei.wuhan.jiangan"}}}]}
    ]


def test_a_second_run_changes_nothing_and_writes_nothing(kube: KubernetesNamespaces, server: EmulatorServer) -> None:
    kube.ensure(dataclasses.replace(JIANGAN, mlps_level=3, direct_access=True))
    before = writes(server)

    again = kube.ensure(dataclasses.replace(JIANGAN, mlps_level=3, direct_access=True))

    assert not again.changed
    assert {c.action for c in again.objects} == {"unchanged"}
    assert len(again.objects) == 8
    assert writes(server) == before


def test_drift_is_patched_back_and_only_the_drifted_object_is_reported(
    kube: KubernetesNamespaces, server: EmulatorServer
) -> None:
    kube.ensure(JIANGAN)
    core = k8s_client.CoreV1Api(kube.api_client)
    core.patch_namespaced_resource_quota(
        "chutian-quota",
        NS,
        {"spec": {"hard": {"limits.cpu": "64"}}},
        _content_type="application/merge-patch+json",
        _preload_content=False,
    )

    result = kube.ensure(JIANGAN)

    assert [(c.kind, c.action) for c in result.objects if c.changed] == [("ResourceQuota", "patched")]
    assert read(kube, "ResourceQuota", "chutian-quota")["spec"]["hard"]["limits.cpu"] == "4"


def test_equal_quantities_in_another_spelling_are_not_a_change(kube: KubernetesNamespaces) -> None:
    """A real API server stores `4000m` as `4`: the comparison is by value, not by spelling."""
    kube.ensure(dataclasses.replace(JIANGAN, k8s_cpu_m="4000m", k8s_memory_mb="8192Mi"))

    assert not kube.ensure(JIANGAN).changed


def test_a_quota_change_patches_the_quota(kube: KubernetesNamespaces) -> None:
    kube.ensure(JIANGAN)

    result = kube.ensure(dataclasses.replace(JIANGAN, k8s_cpu_m=6500, k8s_memory_mb="12Gi"))

    assert [c.name for c in result.objects if c.changed] == ["chutian-quota"]
    hard = read(kube, "ResourceQuota", "chutian-quota")["spec"]["hard"]
    assert (hard["limits.cpu"], hard["limits.memory"]) == ("6500m", "12Gi")


# --- refused before any call -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"k8s_cpu_m": "2 cores"}, "k8s_cpu_m"),
        ({"k8s_memory_mb": "8 GB"}, "k8s_memory_mb"),
        ({"k8s_cpu_m": -1}, "k8s_cpu_m"),
        ({"tenant_code": "j" * 64}, "labels[chutian.hubei.gov.cn/tenant]"),
        ({"tenant_path": "hubei.wuhan." + "j" * 60}, "labels[chutian.hubei.gov.cn/tenant-path]"),
        ({"tenant_code": "江岸"}, "labels[chutian.hubei.gov.cn/tenant]"),
        ({"cloud": "Industry"}, "cloud"),
        ({"tenant_path": "hubei.wu_han"}, "tenant_path"),
        ({"mlps_level": 5}, "mlps_level"),
        ({"mlps_level": 3, "node_selector": "pool"}, "node_selector"),
        ({"groups": ("",)}, "groups[0]"),
    ],
)
def test_invalid_input_is_refused_naming_the_field_before_any_call(
    kube: KubernetesNamespaces, server: EmulatorServer, change: dict[str, Any], field: str
) -> None:
    requests_before = server.request_count()

    with pytest.raises(InvalidField) as refused:
        kube.ensure(dataclasses.replace(JIANGAN, **change))

    assert refused.value.field == field
    assert field in str(refused.value)
    assert isinstance(refused.value, InvalidSpec)
    assert server.request_count() == requests_before


def test_the_emulator_refuses_an_invalid_manifest_as_a_real_server_does(kube: KubernetesNamespaces) -> None:
    """What our validation stops would otherwise come back as a 422, mapped to InvalidSpec."""
    kube.ensure(JIANGAN)
    core = k8s_client.CoreV1Api(kube.api_client)
    bad_quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "by-hand"},
        "spec": {"hard": {"limits.cpu": "2 cores"}},
    }
    long_label = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "labels": {"t": "j" * 64}}}

    for call in (
        lambda: core.create_namespaced_resource_quota(NS, bad_quota, _preload_content=False),
        lambda: core.create_namespace(long_label, _preload_content=False),
    ):
        with pytest.raises(k8s_client.ApiException) as refused:
            call()
        assert refused.value.status == 422
        assert isinstance(error_from_api_exception(refused.value, what="create"), InvalidSpec)


def test_a_long_tenant_path_gives_a_hashed_dns_label() -> None:
    path_a = "hubei.xiangyang.gucheng.chengguan-town.community-service-centre"
    path_b = "hubei.xiangyang.gucheng.chengguan-town.community-service-office"

    name_a, name_b = namespace_name("transport", path_a), namespace_name("transport", path_b)

    assert len(name_a) == 63 and len(name_b) == 63
    assert name_a != name_b
    assert name_a == namespace_name("transport", path_a)
    assert name_a.startswith("cht-transport-hubei-xiangyang-gucheng-")
    assert namespace_name("transport", "hubei.wuhan") == "cht-transport-hubei-wuhan"


# --- MLPS, access, retirement, usage ---------------------------------------------------------


def test_mlps3_gets_the_assessed_pool_node_selector_and_loses_it_when_lowered(kube: KubernetesNamespaces) -> None:
    kube.ensure(dataclasses.replace(JIANGAN, mlps_level=3))
    annotations = read(kube, "Namespace", NS)["metadata"]["annotations"]
    assert annotations[NODE_SELECTOR_ANNOTATION] == "chutian.hubei.gov.cn/mlps=3"

    kube.ensure(dataclasses.replace(JIANGAN, mlps_level=4, node_selector="pool.chutian.hubei.gov.cn/mlps4=true"))
    assert (
        read(kube, "Namespace", NS)["metadata"]["annotations"][NODE_SELECTOR_ANNOTATION]
        == "pool.chutian.hubei.gov.cn/mlps4=true"
    )

    lowered = kube.ensure(JIANGAN)
    assert [c.kind for c in lowered.objects if c.changed] == ["Namespace"]
    assert NODE_SELECTOR_ANNOTATION not in (read(kube, "Namespace", NS)["metadata"].get("annotations") or {})


def test_direct_access_adds_edit_and_admin_bindings_and_revoking_removes_them(kube: KubernetesNamespaces) -> None:
    kube.ensure(JIANGAN)

    granted = kube.ensure(dataclasses.replace(JIANGAN, direct_access=True))

    assert [(c.name, c.action) for c in granted.objects if c.changed] == [
        ("chutian-edit", "created"),
        ("chutian-admin", "created"),
    ]
    edit = read(kube, "RoleBinding", "chutian-edit")
    assert edit["roleRef"]["name"] == "edit"
    assert [s["name"] for s in edit["subjects"]] == ["jiangan-ops"]
    admin = read(kube, "RoleBinding", "chutian-admin")
    assert admin["roleRef"]["name"] == "admin"
    assert [s["name"] for s in admin["subjects"]] == ["jiangan-admins"]

    revoked = kube.ensure(JIANGAN)

    assert [(c.name, c.action) for c in revoked.objects if c.changed] == [
        ("chutian-edit", "deleted"),
        ("chutian-admin", "deleted"),
    ]
    assert not exists(kube, "RoleBinding", "chutian-edit")
    assert exists(kube, "RoleBinding", "chutian-view")


def test_retirement_deletes_the_namespace(kube: KubernetesNamespaces) -> None:
    kube.ensure(JIANGAN)

    assert kube.retire(JIANGAN) is True
    assert not exists(kube, "Namespace", NS)
    assert kube.retire(JIANGAN) is False  # already gone: nothing to do, not an error


def test_usage_is_read_from_the_quota_status(kube: KubernetesNamespaces) -> None:
    kube.ensure(JIANGAN)
    assert kube.usage(NS) == {"k8s_cpu_m": 0, "k8s_memory_mb": 0}  # nothing counted yet
    # The quota controller's job on a real cluster: write status.used through the status subresource.
    k8s_client.CoreV1Api(kube.api_client).patch_namespaced_resource_quota_status(
        "chutian-quota",
        NS,
        {"status": {"used": {"limits.cpu": "1500m", "limits.memory": "3Gi", "requests.cpu": "700m"}}},
        _content_type="application/merge-patch+json",
        _preload_content=False,
    )

    assert kube.usage(NS) == {"k8s_cpu_m": 1500, "k8s_memory_mb": 3072}


def test_usage_of_a_namespace_that_is_not_there_is_not_found(kube: KubernetesNamespaces) -> None:
    with pytest.raises(BackendNotFound):
        kube.usage("cht-industry-hubei-nowhere")


# --- errors ----------------------------------------------------------------------------------

READ_NS = rf"/api/v1/namespaces/{NS}"


@pytest.mark.parametrize(
    ("status", "reason", "causes", "expected"),
    [
        (400, "BadRequest", (), InvalidSpec),
        (403, "Forbidden", (), BackendAuthError),
        (403, "Forbidden", ("NamespaceTerminating",), TransientBackendError),
        (409, "Conflict", (), TransientBackendError),
        (409, "AlreadyExists", (), ResourceConflict),
        (410, "Gone", (), TransientBackendError),
        (422, "Invalid", (), InvalidSpec),
        (429, "TooManyRequests", (), TransientBackendError),
        (500, "InternalError", (), TransientBackendError),
        (503, "ServiceUnavailable", (), TransientBackendError),
        (418, "Teapot", (), ProvisionerError),
    ],
)
def test_each_api_status_class_maps_into_the_provisioner_errors(
    kube: KubernetesNamespaces,
    server: EmulatorServer,
    status: int,
    reason: str,
    causes: tuple[str, ...],
    expected: type[ProvisionerError],
) -> None:
    server.call(lambda emulator: emulator.faults.append(Fault("GET", READ_NS, status, reason, causes=causes, times=-1)))

    with pytest.raises(ProvisionerError) as raised:
        kube.ensure(JIANGAN)

    assert type(raised.value) is expected
    assert raised.value.backend == "kubernetes"
    assert f"HTTP {status} {reason}" in str(raised.value)


def test_a_missing_object_is_created_not_an_error(kube: KubernetesNamespaces) -> None:
    """404 maps to BackendNotFound (see usage); inside ensure it means: create it."""
    assert kube.ensure(JIANGAN).objects[0].action == "created"


def test_a_refused_token_is_an_auth_error(server: EmulatorServer, tmp_path: Path) -> None:
    config = server.write_kubeconfig(tmp_path / "kubeconfig", token="revoked")
    backend = KubernetesNamespaces.from_kubeconfig(config)

    with pytest.raises(BackendAuthError, match="HTTP 401"):
        backend.ensure(JIANGAN)


def test_a_create_race_is_settled_by_reading_the_winner(kube: KubernetesNamespaces, server: EmulatorServer) -> None:
    """Another run created the quota between our read (404) and our create (409 AlreadyExists)."""
    kube.ensure(JIANGAN)
    quota = rf"/api/v1/namespaces/{NS}/resourcequotas/chutian-quota"
    server.call(lambda emulator: emulator.faults.append(Fault("GET", quota, 404, "NotFound", times=1)))

    result = kube.ensure(dataclasses.replace(JIANGAN, k8s_cpu_m=5000))

    assert [(c.name, c.action) for c in result.objects if c.changed] == [("chutian-quota", "patched")]
    assert read(kube, "ResourceQuota", "chutian-quota")["spec"]["hard"]["limits.cpu"] == "5"


def test_an_unreachable_server_is_transient(tmp_path: Path, server: EmulatorServer) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = server.write_kubeconfig(tmp_path / "kubeconfig")
    config.write_text(config.read_text().replace(server.url, f"http://127.0.0.1:{port}"))
    backend = KubernetesNamespaces.from_kubeconfig(config, timeout_s=2)

    with pytest.raises(TransientBackendError, match="unreachable"):
        backend.ensure(JIANGAN)


def test_a_slow_server_is_a_timeout(kubeconfig: Path, server: EmulatorServer) -> None:
    backend = KubernetesNamespaces.from_kubeconfig(kubeconfig, timeout_s=0.2)
    server.call(lambda emulator: emulator.faults.append(Fault("GET", READ_NS, 503, "Slow", times=-1, delay_s=1.0)))

    with pytest.raises(BackendTimeout):
        backend.ensure(JIANGAN)


def test_an_unusable_kubeconfig_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(BackendMisconfigured):
        KubernetesNamespaces.from_kubeconfig(tmp_path / "missing", context="wuhan")
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    with pytest.raises(BackendMisconfigured):
        KubernetesNamespaces.from_kubeconfig(tmp_path / "kubeconfig", context="wuhan")
