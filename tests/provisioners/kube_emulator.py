"""An in-memory Kubernetes API served over real HTTP, for the Kubernetes provisioner's tests.

No Kubernetes API server can be installed on these machines, so this FAKE stands in for
one. It is kmock's `KubernetesEmulator` (an aiohttp server that stores objects by
resource/namespace/name) with a few fixes, run on a loopback port in a background thread
so that the real, synchronous `kubernetes` client talks to it through a real kubeconfig.

What it adds to kmock 0.8:
- the namespace fix: kmock 0.8 parses `/api/v1/namespaces[/{name}]` as a namespace
  *prefix* (and crashes with HTTP 500 on `create_namespace`); here those paths are the
  cluster-scoped `namespaces` resource;
- bearer-token authentication (a wrong token is a real 401);
- validation as a real server does it, before anything is stored, answering 422
  `Invalid` with the offending field: the body (or, for a PATCH, the merged result)
  against the real OpenAPI schemas of Kubernetes 1.37 (`kubernetes-validate`, strict:
  unknown fields are refused, as with `fieldValidation=Strict`), object names (DNS-1123
  label for namespaces, subdomain otherwise), label keys and values, and resource
  quantities (`"2 cores"` is refused as the API server refuses it);
- a 400 when a namespaced body names another namespace than the URL, and the server-set
  `metadata.namespace`, `uid` and `creationTimestamp` on create;
- PATCH only as JSON merge patch or strategic merge patch (both applied as a JSON merge
  patch, RFC 7386: `null` deletes a key, lists are replaced whole); any other patch type
  is a 415.

What it does NOT do (a real cluster does; `test_kubernetes_real_cluster.py` covers them):
- no admission: no PodNodeSelector, no ResourceQuota/LimitRange enforcement, no
  NetworkPolicy enforcement, no RBAC authorisation (any valid token may do anything);
- no controllers: ResourceQuota `status` stays empty unless a test writes it (as the
  quota controller would) through the `/status` subresource; namespaces get no
  `status.phase`, no `spec.finalizers`;
- no cascade delete and no Terminating phase: deleting a namespace removes it at once
  and leaves the objects that were in it; creating objects in a missing namespace works;
- no resourceVersion bumps or optimistic-concurrency conflicts, no generation, no
  managedFields, no PUT (replace) and no server-side apply;
- no strategic-merge semantics (list merge keys), no defaulting (e.g. a NetworkPolicy's
  `policyTypes`, quantity canonicalisation `2000m` → `2`);
- label selectors on LIST are ignored (every object of the resource is returned).
"""

from __future__ import annotations

import asyncio
import copy
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock
import kubernetes_validate
import yaml
from kmock._internal import dicts, enums, k8s, parsing, rendering

KUBERNETES_VERSION = "1.37"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
# The API server's quantity grammar (k8s.io/apimachinery/pkg/api/resource), as a regex.
_QUANTITY = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$")
_NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?/?$")
_MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")

T = TypeVar("T")


def _invalid(kind: str, name: str | None, causes: list[tuple[str, str]]) -> k8s.KubernetesError:
    field_list = "; ".join(f"{field}: {message}" for field, message in causes)
    return k8s.KubernetesError(
        status=422,
        reason="Invalid",
        message=f'{kind} "{name}" is invalid: {field_list}',
        details={
            "name": name,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "field": f, "message": m} for f, m in causes],
        },
    )


def _metadata_problems(obj: dict[str, Any], *, cluster_scoped_label_name: bool) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    pattern, limit = (_DNS1123_LABEL, 63) if cluster_scoped_label_name else (_DNS1123_SUBDOMAIN, 253)
    if not isinstance(name, str) or not name:
        problems.append(("metadata.name", "Required value: name is required"))
    elif len(name) > limit or not pattern.match(name):
        problems.append(("metadata.name", f"Invalid value: {name!r}: a lowercase RFC 1123 name"))
    for field in ("labels", "annotations"):
        for key, value in (meta.get(field) or {}).items():
            prefix, _, label = key.rpartition("/")
            if (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix))) or (
                len(label) > 63 or not _LABEL_NAME.match(label)
            ):
                problems.append((f"metadata.{field}", f"Invalid value: {key!r}: name part must be valid"))
            if field == "labels" and (
                not isinstance(value, str) or len(value) > 63 or (value and not _LABEL_NAME.match(value))
            ):
                problems.append(("metadata.labels", f"Invalid value: {value!r}: a valid label must be ≤ 63"))
    return problems


def _quantity_problems(obj: dict[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    spec = obj.get("spec") or {}

    def check(path: str, values: Any) -> None:
        for key, value in (values or {}).items():
            if not isinstance(value, str | int | float) or not _QUANTITY.match(str(value)):
                problems.append((f"{path}[{key}]", f"Invalid value: {value!r}: quantities must match the regex"))

    if obj.get("kind") == "ResourceQuota":
        check("spec.hard", spec.get("hard"))
        check("status.used", (obj.get("status") or {}).get("used"))
    if obj.get("kind") == "LimitRange":
        for index, item in enumerate(spec.get("limits") or []):
            for part in ("default", "defaultRequest", "max", "min", "maxLimitRequestRatio"):
                check(f"spec.limits[{index}].{part}", item.get(part))
    return problems


@attrs.frozen
class Fault:
    """An injected answer: the next `times` requests (-1: all) matching `method` and the `path`
    regex get this status and Status body instead of being served, after `delay_s`."""

    method: str
    path: str
    status: int
    reason: str
    message: str = "injected by the test"
    causes: tuple[str, ...] = ()
    times: int = 1
    delay_s: float = 0.0


@attrs.define(kw_only=True)
class ChutianKubeEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the fixes and validation listed in the module docstring."""

    token: str = "test-token"
    faults: list[Fault] = attrs.field(factory=list)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        match = _NAMESPACE_PATH.match(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)
        # kmock 0.8's parse_path() reads `/api/v1/namespaces` as a namespace prefix; build the
        # request for the cluster-scoped `namespaces` resource here and serve it the same way.
        try:
            request = await self._parse_namespace_request(raw_request, match)
            self._requests.append(request)
            return await self._handle(request)
        except Exception as exc:
            if self._errors:
                self._errors[-1].append(exc)
            return await self._render_error(exc)

    async def _parse_namespace_request(self, raw_request: aiohttp.web.BaseRequest, match: re.Match[str]) -> Any:
        body = await raw_request.read()
        try:
            data = await raw_request.json() if body else None
        except ValueError:
            data = None
        method = enums.method(raw_request.method)
        path = parsing.ParsedPath(group="", version="v1", plural="namespaces", name=match["name"])
        action = parsing.guess_k8s(path, method, dict(raw_request.query))
        return rendering.Request(
            id=len(self._requests),
            raw_request=raw_request,
            url=raw_request.url,
            method=raw_request.method,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies),
            data=data,
            body=body,
            text=body.decode("utf-8", "replace"),
            action=action,
            resource=kmock.resource(group="", version="v1", plural="namespaces"),
            namespace=None,
            name=match["name"],
            subresource=match["sub"],
        )

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            raise k8s.KubernetesError(status=401, reason="Unauthorized", message="Unauthorized")
        await self._inject_fault(request)
        if request.resource is not None and request.action in (enums.action.CREATE, enums.action.UPDATE):
            await self._admit(request)
        what = f'{request.resource.plural if request.resource else "object"} "{request.name or ""}"'
        try:
            return await super()._handle(request)
        except k8s.KubernetesObjectConflictError:  # kmock's reasons → the API server's
            raise k8s.KubernetesError(status=409, reason="AlreadyExists", message=f"{what} already exists") from None
        except k8s.KubernetesObjectNotFoundError:
            raise k8s.KubernetesError(status=404, reason="NotFound", message=f"{what} not found") from None

    async def _inject_fault(self, request: rendering.Request) -> None:
        for index, fault in enumerate(self.faults):
            if fault.method.upper() == str(request.method.value).upper() and re.fullmatch(fault.path, request.url.path):
                if fault.times > 0:
                    self.faults[index] = attrs.evolve(fault, times=fault.times - 1)
                if self.faults[index].times == 0:
                    del self.faults[index]
                if fault.delay_s:
                    await asyncio.sleep(fault.delay_s)
                raise k8s.KubernetesError(
                    status=fault.status,
                    reason=fault.reason,
                    message=fault.message,
                    details={"causes": [{"reason": cause} for cause in fault.causes]},
                )

    async def _admit(self, request: rendering.Request) -> None:
        """Refuse what a real API server refuses, before kmock stores anything."""
        assert request.resource is not None
        if request.action == enums.action.UPDATE:
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type not in _MERGE_TYPES:
                raise k8s.KubernetesError(
                    status=415, reason="UnsupportedMediaType", message=f"the emulator does not serve {content_type!r}"
                )
        if not isinstance(request.data, dict):
            raise k8s.KubernetesError(status=400, reason="BadRequest", message="the body must be a JSON object")
        if request.action == enums.action.CREATE:
            result = request.data
            meta = result.setdefault("metadata", {})
            body_namespace = meta.get("namespace")
            if request.namespace is not None:
                if body_namespace not in (None, request.namespace):
                    raise k8s.KubernetesError(
                        status=400,
                        reason="BadRequest",
                        message="the namespace of the provided object does not match the namespace sent on the request",
                    )
                meta["namespace"] = request.namespace
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        else:
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                if key not in self.objects or self.objects[key].deleted:
                    raise k8s.KubernetesObjectNotFoundError()
                current = copy.deepcopy(self.objects[key].raw)
            result = dict(dicts.patch_dict(current, request.data))
        name = (result.get("metadata") or {}).get("name")
        kind = str(result.get("kind", request.resource.plural))
        try:
            kubernetes_validate.validate(result, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.absolute_path) or "<root>"
            raise _invalid(kind, name, [(path, exc.message)]) from None
        except kubernetes_validate.SchemaNotFoundError as exc:
            raise k8s.KubernetesError(status=400, reason="BadRequest", message=exc.message) from None
        problems = _metadata_problems(result, cluster_scoped_label_name=request.resource.plural == "namespaces")
        problems += _quantity_problems(result)
        if problems:
            raise _invalid(kind, name, problems)


class EmulatorServer:
    """Runs a `ChutianKubeEmulator` on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self, *, token: str = "test-token") -> None:  # noqa: S107 - the fake server's token
        self.token = token
        self.emulator = ChutianKubeEmulator(token=token)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self.url = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._failure = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = f"http://{server.host}:{server.port}"
            self._ready.set()
            await self._stop.wait()

    def start(self) -> EmulatorServer:
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._failure is not None or not self.url:
            raise RuntimeError(f"the Kubernetes emulator did not start: {self._failure!r}")
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def call(self, fn: Callable[[ChutianKubeEmulator], T]) -> T:
        """Run `fn(emulator)` on the emulator's loop (its state is not thread-safe)."""

        async def run() -> T:
            return fn(self.emulator)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def request_count(self) -> int:
        return self.call(lambda emulator: len(list(emulator._requests)))

    def write_kubeconfig(self, path: Path, *, context: str = "emulator", token: str | None = None) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "chutian", "user": {"token": token if token is not None else self.token}}],
            "contexts": [{"name": context, "context": {"cluster": "emulator", "user": "chutian"}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path


@contextmanager
def running_emulator(*, token: str = "test-token") -> Iterator[EmulatorServer]:  # noqa: S107
    server = EmulatorServer(token=token).start()
    try:
        yield server
    finally:
        server.stop()
