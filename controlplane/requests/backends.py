"""Which backend serves a region, built once per worker process and only when needed.

A region whose site-file entry names an `openstack_cloud` is provisioned through the
OpenStack adapter (credentials from `CHUTIAN_CLOUDS_YAML`); every other region uses the
`simulated` backend. The provider SDK is imported only here, on first use, so embedded mode
never imports it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from controlplane.operations.engine import OperatorError, PermanentFailure, TransientError
from controlplane.worker.runtime import WorkerContext
from provisioners.errors import (
    BackendQuotaExceeded,
    InvalidSpec,
    ProvisionerError,
    TransientBackendError,
)
from provisioners.simulated import SimulatedCloud

log = logging.getLogger(__name__)


def simulated(ctx: WorkerContext) -> SimulatedCloud:
    cloud = ctx.extras.get("simulated")
    if cloud is None:
        cloud = SimulatedCloud(
            ctx.settings.data_dir / "simulated-cloud.sqlite3",
            fault=os.environ.get("CHUTIAN_FAULT"),
            boot_s=ctx.settings.simulated_boot_s,
        )
        ctx.extras["simulated"] = cloud
    return cloud


def openstack(ctx: WorkerContext, region: str) -> Any | None:
    """The region's OpenStackProvisioner, or None when the region is not an OpenStack one."""
    cloud_name = next((r.openstack_cloud for r in ctx.site.regions if r.code == region), None)
    if not cloud_name:
        return None
    cache: dict[str, Any] = ctx.extras.setdefault("openstack", {})
    if region not in cache:
        from provisioners.openstack import CloudConfig, OpenStackProvisioner

        if ctx.settings.clouds_yaml is None:
            raise OperatorError(f"region {region} uses OpenStack cloud '{cloud_name}' but CHUTIAN_CLOUDS_YAML is unset")
        cache[region] = OpenStackProvisioner.from_config(
            CloudConfig(region=region, clouds_yaml=ctx.settings.clouds_yaml, cloud=cloud_name)
        )
    return cache[region]


def kubernetes(ctx: WorkerContext, region: str) -> Any | None:
    """The region's KubernetesNamespaces, or None when the region has no cluster."""
    context = next((r.kube_context for r in ctx.site.regions if r.code == region), None)
    if not context:
        return None
    cache: dict[str, Any] = ctx.extras.setdefault("kubernetes", {})
    if region not in cache:
        from provisioners.kubernetes import KubernetesNamespaces

        if ctx.settings.kubeconfig is None:
            raise OperatorError(f"region {region} uses kube context '{context}' but CHUTIAN_KUBECONFIG is unset")
        cache[region] = KubernetesNamespaces.from_kubeconfig(ctx.settings.kubeconfig, context=context)
    return cache[region]


def ansible(ctx: WorkerContext) -> Any:
    """The worker's AnsibleRunner (ansible-runner is imported on first use only)."""
    runner = ctx.extras.get("ansible")
    if runner is None:
        from provisioners.ansible import AnsibleRunner

        runner = ctx.extras["ansible"] = AnsibleRunner()
    return runner


def ssh_private_key(ctx: WorkerContext) -> str | None:
    """The baseline's SSH key, read at use so a rotated file is picked up; never logged."""
    path = ctx.settings.ansible_ssh_key_file
    if path is None:
        return None
    try:
        if path.stat().st_mode & 0o077:
            raise OperatorError(f"{path} must be readable by its owner only (chmod 600)")
        return path.read_text()
    except OSError as exc:
        raise OperatorError(f"cannot read the Ansible SSH key {path}: {exc.strerror}") from None


def each_region(ctx: WorkerContext, sync: Any, what: str) -> list[dict[str, Any]]:
    """``sync(ctx, region)`` for every region; one region's outage must not stop the others."""
    results = []
    for region in ctx.site.regions:
        try:
            results.append(sync(ctx, region.code))
        except Exception as exc:
            log.warning("%s of region %s failed: %s", what, region.code, exc)
            results.append({"region": region.code, "error": str(exc)})
    return results


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Provisioner errors → the engine's classes: retry, failed (tenant acts) or errored (operator)."""
    try:
        return fn(*args, **kwargs)
    except TransientBackendError as exc:
        raise TransientError(str(exc)) from exc
    except (BackendQuotaExceeded, InvalidSpec) as exc:
        raise PermanentFailure(str(exc)) from exc
    except ProvisionerError as exc:
        raise OperatorError(str(exc)) from exc
