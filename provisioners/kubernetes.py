"""Kubernetes adapter: one fenced namespace per allocation, through the official client.

`KubernetesNamespaces.ensure(allocation)` creates or patches, idempotently, the namespace
set of a tenant's slice of a themed cloud and reports, per object, whether it changed:

- the Namespace `cht-<cloud>-<tenant path, . → ->` (≤ 63 characters; a longer name is cut
  and ends with 8 hex digits of its SHA-256), labelled with the tenant path, tenant code,
  cloud and MLPS level; for MLPS 3+ annotated `scheduler.alpha.kubernetes.io/node-selector`
  with the assessed pool (the cluster needs the PodNodeSelector admission plugin);
- ResourceQuota `chutian-quota`: `requests.*` and `limits.*` cpu/memory = the ledger limits;
- LimitRange `chutian-defaults`: container default requests and limits;
- RoleBindings `chutian-view` (all the tenant's groups) and, only with `direct_access`,
  `chutian-edit` (`groups`) and `chutian-admin` (`admin_groups`); bindings no longer wanted
  are deleted;
- NetworkPolicies `chutian-default-deny` (all ingress) and `chutian-allow-same-tenant`
  (ingress from namespaces carrying the same tenant-path label).

Everything is validated before the first call (DNS-1123 names, label keys and values,
quantities) and refused with `InvalidField` naming the input. Backend errors map through
`STATUS_ERRORS` into `provisioners.errors`. The client is built from a kubeconfig path and
context given to the constructor; no global configuration is loaded or changed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, Protocol

import urllib3.exceptions
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

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

BACKEND = "kubernetes"
LABEL_PREFIX = "chutian.hubei.gov.cn"
LABEL_TENANT_PATH = f"{LABEL_PREFIX}/tenant-path"
LABEL_TENANT = f"{LABEL_PREFIX}/tenant"
LABEL_CLOUD = f"{LABEL_PREFIX}/cloud"
LABEL_MLPS = f"{LABEL_PREFIX}/mlps"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "chutian"
NODE_SELECTOR_ANNOTATION = "scheduler.alpha.kubernetes.io/node-selector"
QUOTA_NAME = "chutian-quota"
LIMIT_RANGE_NAME = "chutian-defaults"
DENY_POLICY_NAME = "chutian-default-deny"
TENANT_POLICY_NAME = "chutian-allow-same-tenant"
BINDING_NAMES: Mapping[str, str] = {"view": "chutian-view", "edit": "chutian-edit", "admin": "chutian-admin"}
MLPS_LEVELS = frozenset({2, 3, 4})
MERGE_PATCH = "application/merge-patch+json"
RBAC_GROUP = "rbac.authorization.k8s.io"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(r"^(?P<num>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
_SUFFIX: Mapping[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    **{s: Decimal(2) ** (10 * (i + 1)) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}
MIB = Decimal(2) ** 20

# One table: HTTP status of an ApiException → the provisioner error the application acts on.
STATUS_ERRORS: Mapping[int, type[ProvisionerError]] = {
    400: InvalidSpec,
    401: BackendAuthError,
    403: BackendAuthError,
    404: BackendNotFound,
    409: TransientBackendError,  # Conflict (stale resourceVersion): re-read and retry
    410: TransientBackendError,  # Gone (expired resourceVersion)
    422: InvalidSpec,
    429: TransientBackendError,
    **{status: TransientBackendError for status in range(500, 600)},
}
# Refinements by the Status `reason` (or a cause's reason) where the status alone misleads.
REASON_ERRORS: Mapping[str, type[ProvisionerError]] = {
    "AlreadyExists": ResourceConflict,  # only if it survives our create-then-read
    "NamespaceTerminating": TransientBackendError,  # 403 while the namespace is being deleted
}


def error_from_api_exception(exc: ApiException, *, what: str) -> ProvisionerError:
    """Map an `ApiException` (by status, then by the Status body's reason) to our hierarchy."""
    status = int(exc.status or 0)
    reason, message = str(exc.reason or ""), ""
    causes: tuple[str, ...] = ()
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    if isinstance(body, dict):
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or "")
        raw_details = body.get("details")
        details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
        causes = tuple(str(c.get("reason", "")) for c in details.get("causes") or () if isinstance(c, dict))
    cls = STATUS_ERRORS.get(status, ProvisionerError)
    for key in (reason, *causes):
        cls = REASON_ERRORS.get(key, cls)
    detail = f": {message}" if message else ""
    return cls(f"{what}: HTTP {status} {reason}{detail}", backend=BACKEND)


# --- values -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LimitDefaults:
    """The LimitRange's per-container defaults (Kubernetes quantities)."""

    cpu_request: str = "100m"
    cpu_limit: str = "500m"
    memory_request: str = "128Mi"
    memory_limit: str = "512Mi"


@dataclass(frozen=True)
class NamespaceAllocation:
    """A tenant's slice of a themed cloud on one cluster.

    `k8s_cpu_m` / `k8s_memory_mb`: an int is millicores / MiB (the ledger's units); a string
    is a Kubernetes quantity carrying its own unit (`"2"` = 2 cores, `"500m"`, `"4Gi"`).
    `node_selector`: the assessed pool for MLPS 3+ (default `chutian.hubei.gov.cn/mlps=<level>`).
    """

    tenant_path: str
    tenant_code: str
    cloud: str
    mlps_level: int
    k8s_cpu_m: int | str
    k8s_memory_mb: int | str
    groups: Sequence[str] = ()
    admin_groups: Sequence[str] = ()
    direct_access: bool = False
    node_selector: str | None = None


ChangeAction = Literal["created", "patched", "deleted", "unchanged"]


@dataclass(frozen=True)
class ObjectChange:
    kind: str
    name: str
    action: ChangeAction

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"


@dataclass(frozen=True)
class NamespaceResult:
    namespace: str
    objects: tuple[ObjectChange, ...]

    @property
    def changed(self) -> bool:
        return any(change.changed for change in self.objects)


@dataclass(frozen=True)
class Manifest:
    kind: str
    name: str
    body: dict[str, Any]
    remove_annotations: tuple[str, ...] = ()  # keys we own that must be absent


@dataclass(frozen=True)
class NamespacePlan:
    namespace: str
    manifests: tuple[Manifest, ...]
    absent: tuple[tuple[str, str], ...] = field(default=())  # (kind, name) we own but no longer want


class NamespaceBackend(Protocol):
    def ensure(self, allocation: NamespaceAllocation) -> NamespaceResult: ...
    def retire(self, allocation: NamespaceAllocation) -> bool: ...
    def usage(self, namespace: str) -> dict[str, int]: ...


# --- validation (pure) -----------------------------------------------------------------


def check_dns1123_label(value: str, field_name: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 63 or not _DNS1123_LABEL.match(value):
        raise InvalidField(
            field_name, f"{value!r} is not a DNS-1123 label (a-z, 0-9, '-', ≤ 63 characters)", backend=BACKEND
        )
    return value


def check_label(key: str, value: str, field_name: str) -> None:
    """A label key (optional DNS-1123 subdomain prefix ≤ 253 + '/' + name ≤ 63) and value (≤ 63)."""
    prefix, _, name = key.rpartition("/")
    if (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix))) or not (
        0 < len(name) <= 63 and _LABEL_VALUE.match(name)
    ):
        raise InvalidField(field_name, f"{key!r} is not a valid label key", backend=BACKEND)
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
        raise InvalidField(
            field_name,
            f"{value!r} is not a valid label value (≤ 63 characters: A-Z a-z 0-9 - _ ., alphanumeric at both ends)",
            backend=BACKEND,
        )


def parse_quantity(value: str, field_name: str) -> Decimal:
    """A non-negative Kubernetes quantity (`"2"`, `"500m"`, `"4Gi"`, `"1e3"`) as a Decimal."""
    match = _QUANTITY.match(value.strip()) if isinstance(value, str) and value == value.strip() else None
    if match is None:
        raise InvalidField(field_name, f"{value!r} is not a Kubernetes quantity (e.g. 2, 500m, 4Gi)", backend=BACKEND)
    suffix = match["suffix"] or ""
    try:
        number = Decimal(match["num"])
        if suffix[:1] in ("e", "E"):
            return number * Decimal(10) ** int(suffix[1:])
        return number * _SUFFIX[suffix]
    except (InvalidOperation, ValueError, OverflowError) as exc:
        raise InvalidField(field_name, f"{value!r} is not a Kubernetes quantity", backend=BACKEND) from exc


def _whole(value: int | str, field_name: str, *, int_unit: Decimal, per: Decimal) -> int:
    """An int in the ledger's unit, or a quantity string converted to it (rounded up)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidField(field_name, f"{value!r} is neither an integer nor a quantity string", backend=BACKEND)
    if isinstance(value, int):
        if value < 0:
            raise InvalidField(field_name, f"{value} is negative", backend=BACKEND)
        return value
    return math.ceil(parse_quantity(value, field_name) * int_unit / per)


def cpu_millicores(value: int | str, field_name: str = "k8s_cpu_m") -> int:
    return _whole(value, field_name, int_unit=Decimal(1000), per=Decimal(1))


def memory_mib(value: int | str, field_name: str = "k8s_memory_mb") -> int:
    return _whole(value, field_name, int_unit=Decimal(1), per=MIB)


def cpu_quantity(millicores: int) -> str:
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def memory_quantity(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib and mib % 1024 == 0 else f"{mib}Mi"


def namespace_name(cloud: str, tenant_path: str) -> str:
    """`cht-<cloud>-<path with . → ->`, cut to 54 characters + `-` + 8 hex of its SHA-256 if longer than 63."""
    check_dns1123_label(cloud, "cloud")
    segments = tenant_path.split(".") if isinstance(tenant_path, str) else [""]
    for segment in segments:
        if not segment or not _DNS1123_LABEL.match(segment):
            raise InvalidField(
                "tenant_path", f"{tenant_path!r}: each code must be a DNS-1123 label (a-z, 0-9, '-')", backend=BACKEND
            )
    full = f"cht-{cloud}-{'-'.join(segments)}"
    if len(full) <= 63:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[:54].rstrip('-')}-{digest}"


def _check_node_selector(selector: str) -> None:
    pairs = [part.strip() for part in selector.split(",")]
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidField("node_selector", f"{pair!r} is not key=value", backend=BACKEND)
        check_label(key, value, "node_selector")


def _check_groups(groups: Sequence[str], field_name: str) -> tuple[str, ...]:
    if isinstance(groups, str):
        raise InvalidField(field_name, "must be a list of group names, not a string", backend=BACKEND)
    for index, group in enumerate(groups):
        if not isinstance(group, str) or not group or len(group) > 253 or not group.isprintable():
            raise InvalidField(f"{field_name}[{index}]", f"{group!r} is not a group name", backend=BACKEND)
    return tuple(dict.fromkeys(groups))


# --- manifests (pure) ------------------------------------------------------------------


def plan(allocation: NamespaceAllocation, limits: LimitDefaults = LimitDefaults()) -> NamespacePlan:
    """Validate `allocation` and build every manifest; raises `InvalidField` before any call."""
    name = namespace_name(allocation.cloud, allocation.tenant_path)
    check_label(LABEL_TENANT, allocation.tenant_code, f"labels[{LABEL_TENANT}]")
    check_label(LABEL_TENANT_PATH, allocation.tenant_path, f"labels[{LABEL_TENANT_PATH}]")
    check_label(LABEL_CLOUD, allocation.cloud, f"labels[{LABEL_CLOUD}]")
    if isinstance(allocation.mlps_level, bool) or allocation.mlps_level not in MLPS_LEVELS:
        raise InvalidField("mlps_level", f"{allocation.mlps_level!r} is not one of 2, 3, 4", backend=BACKEND)
    cpu_m = cpu_millicores(allocation.k8s_cpu_m)
    memory = memory_mib(allocation.k8s_memory_mb)
    defaults = {
        "cpu_request": cpu_millicores(limits.cpu_request, "limit_defaults.cpu_request"),
        "cpu_limit": cpu_millicores(limits.cpu_limit, "limit_defaults.cpu_limit"),
        "memory_request": memory_mib(limits.memory_request, "limit_defaults.memory_request"),
        "memory_limit": memory_mib(limits.memory_limit, "limit_defaults.memory_limit"),
    }
    groups = _check_groups(allocation.groups, "groups")
    admin_groups = _check_groups(allocation.admin_groups, "admin_groups")

    labels = {
        LABEL_TENANT_PATH: allocation.tenant_path,
        LABEL_TENANT: allocation.tenant_code,
        LABEL_CLOUD: allocation.cloud,
        LABEL_MLPS: str(allocation.mlps_level),
        LABEL_MANAGED_BY: MANAGED_BY,
    }
    owned = {LABEL_TENANT_PATH: allocation.tenant_path, LABEL_MANAGED_BY: MANAGED_BY}
    annotations: dict[str, str] = {}
    remove: tuple[str, ...] = (NODE_SELECTOR_ANNOTATION,)
    if allocation.mlps_level >= 3:
        selector = allocation.node_selector or f"{LABEL_MLPS}={allocation.mlps_level}"
        _check_node_selector(selector)
        annotations[NODE_SELECTOR_ANNOTATION] = selector
        remove = ()

    def meta(object_name: str, object_labels: Mapping[str, str], **extra: Any) -> dict[str, Any]:
        return {"name": object_name, "labels": dict(object_labels), **extra}

    namespaced = {"namespace": name}
    quota_hard = {
        "requests.cpu": cpu_quantity(cpu_m),
        "limits.cpu": cpu_quantity(cpu_m),
        "requests.memory": memory_quantity(memory),
        "limits.memory": memory_quantity(memory),
    }
    manifests = [
        Manifest(
            "Namespace",
            name,
            {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(name, labels, annotations=annotations)},
            remove_annotations=remove,
        ),
        Manifest(
            "ResourceQuota",
            QUOTA_NAME,
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": meta(QUOTA_NAME, owned, **namespaced),
                "spec": {"hard": quota_hard},
            },
        ),
        Manifest(
            "LimitRange",
            LIMIT_RANGE_NAME,
            {
                "apiVersion": "v1",
                "kind": "LimitRange",
                "metadata": meta(LIMIT_RANGE_NAME, owned, **namespaced),
                "spec": {
                    "limits": [
                        {
                            "type": "Container",
                            "default": {
                                "cpu": cpu_quantity(defaults["cpu_limit"]),
                                "memory": memory_quantity(defaults["memory_limit"]),
                            },
                            "defaultRequest": {
                                "cpu": cpu_quantity(defaults["cpu_request"]),
                                "memory": memory_quantity(defaults["memory_request"]),
                            },
                        }
                    ]
                },
            },
        ),
    ]
    wanted_bindings: dict[str, tuple[str, ...]] = {"view": tuple(dict.fromkeys(groups + admin_groups))}
    if allocation.direct_access:
        wanted_bindings |= {"edit": groups, "admin": admin_groups}
    absent: list[tuple[str, str]] = []
    for role, binding in BINDING_NAMES.items():
        subjects = wanted_bindings.get(role, ())
        if not subjects:
            absent.append(("RoleBinding", binding))
            continue
        manifests.append(
            Manifest(
                "RoleBinding",
                binding,
                {
                    "apiVersion": f"{RBAC_GROUP}/v1",
                    "kind": "RoleBinding",
                    "metadata": meta(binding, owned, **namespaced),
                    "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
                    "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": group} for group in subjects],
                },
            )
        )
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}
    manifests += [
        Manifest(
            "NetworkPolicy",
            DENY_POLICY_NAME,
            {
                **policy,
                "metadata": meta(DENY_POLICY_NAME, owned, **namespaced),
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
            },
        ),
        Manifest(
            "NetworkPolicy",
            TENANT_POLICY_NAME,
            {
                **policy,
                "metadata": meta(TENANT_POLICY_NAME, owned, **namespaced),
                "spec": {
                    "podSelector": {},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {"from": [{"namespaceSelector": {"matchLabels": {LABEL_TENANT_PATH: allocation.tenant_path}}}]}
                    ],
                },
            },
        ),
    ]
    return NamespacePlan(name, tuple(manifests), tuple(absent))


def _same_quantity(actual: Any, desired: Any) -> bool:
    try:
        return parse_quantity(str(actual), "") == parse_quantity(str(desired), "")
    except InvalidSpec:
        return False


def covers(actual: Any, desired: Any, *, quantities: bool = False) -> bool:
    """Does the live value already hold everything `desired` says? (dicts: subset; lists: same length, in order)."""
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(
            covers(actual.get(key), value, quantities=quantities) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(covers(a, d, quantities=quantities) for a, d in zip(actual, desired, strict=True))
        )
    if quantities and isinstance(desired, str) and actual != desired:
        return _same_quantity(actual, desired)
    return bool(actual == desired)


def merge_patch(live: Mapping[str, Any], manifest: Manifest) -> dict[str, Any]:
    """The JSON merge patch that brings `live` to `manifest`; empty when nothing differs."""
    desired = manifest.body
    patch: dict[str, Any] = {}
    live_meta = live.get("metadata") or {}
    for part in ("labels", "annotations"):
        want = dict(desired["metadata"].get(part) or {})
        have = live_meta.get(part) or {}
        changes: dict[str, Any] = {k: v for k, v in want.items() if have.get(k) != v}
        if part == "annotations":
            changes |= {k: None for k in manifest.remove_annotations if k in have}
        if changes:
            patch.setdefault("metadata", {})[part] = changes
    quantities = manifest.kind in ("ResourceQuota", "LimitRange")
    for top in ("spec", "subjects"):
        if top in desired and not covers(live.get(top), desired[top], quantities=quantities):
            patch[top] = desired[top]
    return patch


# --- the adapter -----------------------------------------------------------------------

_new_client_from_config: Callable[..., k8s_client.ApiClient] = k8s_config.new_client_from_config


@dataclass(frozen=True)
class _Ops:
    read: Callable[..., Any]
    create: Callable[..., Any]
    patch: Callable[..., Any]
    delete: Callable[..., Any]
    namespaced: bool = True


class KubernetesNamespaces:
    """`NamespaceBackend` over one cluster; `api_client` comes from `from_kubeconfig` or the caller."""

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        *,
        timeout_s: float = 30.0,
        limit_defaults: LimitDefaults = LimitDefaults(),
        field_manager: str = "chutian",
    ) -> None:
        self.api_client = api_client
        self._timeout_s = timeout_s
        self._limits = limit_defaults
        self._field_manager = field_manager
        core = k8s_client.CoreV1Api(api_client)
        rbac = k8s_client.RbacAuthorizationV1Api(api_client)
        net = k8s_client.NetworkingV1Api(api_client)
        self._ops: dict[str, _Ops] = {
            "Namespace": _Ops(
                core.read_namespace, core.create_namespace, core.patch_namespace, core.delete_namespace, False
            ),
            "ResourceQuota": _Ops(
                core.read_namespaced_resource_quota,
                core.create_namespaced_resource_quota,
                core.patch_namespaced_resource_quota,
                core.delete_namespaced_resource_quota,
            ),
            "LimitRange": _Ops(
                core.read_namespaced_limit_range,
                core.create_namespaced_limit_range,
                core.patch_namespaced_limit_range,
                core.delete_namespaced_limit_range,
            ),
            "RoleBinding": _Ops(
                rbac.read_namespaced_role_binding,
                rbac.create_namespaced_role_binding,
                rbac.patch_namespaced_role_binding,
                rbac.delete_namespaced_role_binding,
            ),
            "NetworkPolicy": _Ops(
                net.read_namespaced_network_policy,
                net.create_namespaced_network_policy,
                net.patch_namespaced_network_policy,
                net.delete_namespaced_network_policy,
            ),
        }

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | Path,
        *,
        context: str | None = None,
        timeout_s: float = 30.0,
        limit_defaults: LimitDefaults = LimitDefaults(),
    ) -> KubernetesNamespaces:
        """Build a private `ApiClient` from one kubeconfig file and context (no global config)."""
        try:
            api_client = _new_client_from_config(config_file=str(path), context=context, persist_config=False)
        except (k8s_config.ConfigException, OSError, ValueError, KeyError) as exc:
            raise BackendMisconfigured(
                f"kubeconfig {path} (context {context or 'current'}) is unusable: {exc}", backend=BACKEND
            ) from exc
        return cls(api_client, timeout_s=timeout_s, limit_defaults=limit_defaults)

    def close(self) -> None:
        close: Callable[[], None] = self.api_client.close
        close()

    # -- the protocol --

    def ensure(self, allocation: NamespaceAllocation) -> NamespaceResult:
        """Create or patch the namespace set; a second run with the same allocation changes nothing."""
        desired = plan(allocation, self._limits)
        changes = [self._ensure_object(desired.namespace, manifest) for manifest in desired.manifests]
        for kind, name in desired.absent:  # reported only when there was something to delete
            deleted = self._delete_owned(desired.namespace, kind, name)
            if deleted is not None:
                changes.append(deleted)
        return NamespaceResult(desired.namespace, tuple(changes))

    def retire(self, allocation: NamespaceAllocation) -> bool:
        """Delete the allocation's namespace (the cluster deletes what is in it); False if already gone."""
        name = namespace_name(allocation.cloud, allocation.tenant_path)
        try:
            with self._mapped(f"delete Namespace {name}"):
                self._ops["Namespace"].delete(name, **self._opts())
        except BackendNotFound:
            return False
        return True

    def usage(self, namespace: str) -> dict[str, int]:
        """What the quota controller counts against `chutian-quota` (`status.used`, `limits.*`)."""
        check_dns1123_label(namespace, "namespace")
        with self._mapped(f"read ResourceQuota {namespace}/{QUOTA_NAME}"):
            live = self._read("ResourceQuota", namespace, QUOTA_NAME)
        used = (live.get("status") or {}).get("used") or {}
        return {
            "k8s_cpu_m": cpu_millicores(str(used.get("limits.cpu", "0")), "status.used[limits.cpu]"),
            "k8s_memory_mb": memory_mib(str(used.get("limits.memory", "0")), "status.used[limits.memory]"),
        }

    # -- helpers --

    def _opts(self) -> dict[str, Any]:
        return {"_request_timeout": self._timeout_s, "_preload_content": False}

    def _write_opts(self) -> dict[str, Any]:
        return {**self._opts(), "field_manager": self._field_manager, "field_validation": "Strict"}

    def _args(self, kind: str, namespace: str, name: str) -> tuple[str, ...]:
        return (name, namespace) if self._ops[kind].namespaced else (name,)

    def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        response = self._ops[kind].read(*self._args(kind, namespace, name), **self._opts())
        data = json.loads(response.data)
        return data if isinstance(data, dict) else {}

    def _ensure_object(self, namespace: str, manifest: Manifest) -> ObjectChange:
        ops = self._ops[manifest.kind]
        what = f"{manifest.kind} {namespace}/{manifest.name}" if ops.namespaced else f"{manifest.kind} {namespace}"
        args = self._args(manifest.kind, namespace, manifest.name)
        try:
            with self._mapped(f"read {what}"):
                live = self._read(manifest.kind, namespace, manifest.name)
        except BackendNotFound:
            try:
                with self._mapped(f"create {what}"):
                    create_args = (namespace,) if ops.namespaced else ()
                    ops.create(*create_args, manifest.body, **self._write_opts())
                return ObjectChange(manifest.kind, manifest.name, "created")
            except ResourceConflict:  # created meanwhile by a concurrent run: patch it like any other
                with self._mapped(f"read {what}"):
                    live = self._read(manifest.kind, namespace, manifest.name)
        patch = merge_patch(live, manifest)
        if not patch:
            return ObjectChange(manifest.kind, manifest.name, "unchanged")
        with self._mapped(f"patch {what}"):
            ops.patch(*args, patch, _content_type=MERGE_PATCH, **self._write_opts())
        return ObjectChange(manifest.kind, manifest.name, "patched")

    def _delete_owned(self, namespace: str, kind: str, name: str) -> ObjectChange | None:
        what = f"{kind} {namespace}/{name}"
        try:
            with self._mapped(f"read {what}"):
                live = self._read(kind, namespace, name)
            if ((live.get("metadata") or {}).get("labels") or {}).get(LABEL_MANAGED_BY) != MANAGED_BY:
                return None  # not ours: leave it
            with self._mapped(f"delete {what}"):
                self._ops[kind].delete(*self._args(kind, namespace, name), **self._opts())
        except BackendNotFound:
            return None
        return ObjectChange(kind, name, "deleted")

    @contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        try:
            yield
        except ApiException as exc:
            raise error_from_api_exception(exc, what=what) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
            refused = isinstance(cause, urllib3.exceptions.NewConnectionError)  # a ConnectTimeoutError subclass
            if not refused and isinstance(cause, urllib3.exceptions.TimeoutError | TimeoutError):
                raise BackendTimeout(f"{what}: timed out after {self._timeout_s}s", backend=BACKEND) from exc
            raise TransientBackendError(f"{what}: unreachable: {type(cause).__name__}", backend=BACKEND) from exc
