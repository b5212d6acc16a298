"""The Kubernetes provisioner against a real cluster — only when one is given.

Set `CHUTIAN_TEST_KUBECONFIG` (and optionally `CHUTIAN_TEST_KUBE_CONTEXT`) to a kubeconfig
whose user may create and delete namespaces, quotas, limit ranges, role bindings (to the
`view`/`edit`/`admin` ClusterRoles) and network policies. The test makes one namespace
named after a random tenant code, checks what the emulator cannot (the server's own
defaulting and quantity canonicalisation must not look like drift; the quota controller
fills `status.used`), and deletes it again. Without the variable it is skipped, saying why:
no API server can run on the project's machines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client

from provisioners.errors import ProvisionerError
from provisioners.kubernetes import NODE_SELECTOR_ANNOTATION, KubernetesNamespaces, NamespaceAllocation

KUBECONFIG = os.environ.get("CHUTIAN_TEST_KUBECONFIG", "")

pytestmark = pytest.mark.skipif(
    not KUBECONFIG,
    reason="CHUTIAN_TEST_KUBECONFIG is not set: no real Kubernetes cluster to test against "
    "(the emulator-backed tests in test_kubernetes.py cover the provisioner here)",
)


@pytest.fixture
def kube() -> Iterator[KubernetesNamespaces]:
    backend = KubernetesNamespaces.from_kubeconfig(
        KUBECONFIG, context=os.environ.get("CHUTIAN_TEST_KUBE_CONTEXT") or None, timeout_s=30
    )
    yield backend
    backend.close()


@pytest.fixture
def allocation(kube: KubernetesNamespaces) -> Iterator[NamespaceAllocation]:
    code = f"ci{uuid.uuid4().hex[:8]}"
    allocation = NamespaceAllocation(
        tenant_path=f"hubei.{code}",
        tenant_code=code,
        cloud="test",
        mlps_level=3,
        k8s_cpu_m=2000,
        k8s_memory_mb=4096,
        groups=(f"{code}-ops",),
        admin_groups=(f"{code}-admins",),
    )
    yield allocation
    with contextlib.suppress(ProvisionerError):  # already retired by the test, or being deleted
        kube.retire(allocation)


def test_the_namespace_set_on_a_real_cluster(kube: KubernetesNamespaces, allocation: NamespaceAllocation) -> None:
    created = kube.ensure(allocation)
    assert {c.action for c in created.objects} == {"created"}

    again = kube.ensure(allocation)
    assert not again.changed, [c for c in again.objects if c.changed]  # server defaults are not drift

    granted = kube.ensure(dataclasses.replace(allocation, direct_access=True))
    assert {c.name for c in granted.objects if c.changed} == {"chutian-edit", "chutian-admin"}

    core = k8s_client.CoreV1Api(kube.api_client)
    namespace = json.loads(core.read_namespace(created.namespace, _preload_content=False).data)
    assert namespace["metadata"]["annotations"][NODE_SELECTOR_ANNOTATION] == "chutian.hubei.gov.cn/mlps=3"

    deadline = time.monotonic() + 60
    quota: dict[str, Any] = {}
    while time.monotonic() < deadline:  # the quota controller fills status.used asynchronously
        quota = json.loads(
            core.read_namespaced_resource_quota("chutian-quota", created.namespace, _preload_content=False).data
        )
        if (quota.get("status") or {}).get("used"):
            break
        time.sleep(1)
    assert kube.usage(created.namespace) == {"k8s_cpu_m": 0, "k8s_memory_mb": 0}

    assert kube.retire(allocation) is True
    try:
        phase = json.loads(core.read_namespace(created.namespace, _preload_content=False).data)["status"]["phase"]
        assert phase == "Terminating"
    except k8s_client.ApiException as exc:
        assert exc.status == 404
