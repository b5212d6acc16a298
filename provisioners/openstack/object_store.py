"""Buckets: Swift containers in the tenant project's account (`AUTH_<project_id>`).

A container is named by the request (its tag when the request gives no name) and carries the
tag in `X-Container-Meta-Chutian-Tag`: a retried step finds the container the first attempt
made and converges its quota, and a container of that name that is not ours (another tag, or
none) is never adopted. The byte quota is Swift's `container_quotas` middleware
(`X-Container-Meta-Quota-Bytes`), which the region's proxy pipeline must include.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import openstack.exceptions as sdk

from provisioners.base import BucketRef, ProjectRef
from provisioners.errors import ResourceConflict
from provisioners.openstack.common import OpenStackBase
from provisioners.openstack.connection import Connection

OBJECT_STORE = "object-store"
TAG_HEADER = "X-Container-Meta-Chutian-Tag"
QUOTA_HEADER = "X-Container-Meta-Quota-Bytes"
GIB = 1024**3  # the ledger's object_gb are GiB, like Cinder's "GB"
MAX_CONTAINER_NAME = 256


def quota_bytes(object_gb: int) -> int:
    """The ledger's `object_gb` as the container's byte quota."""
    return object_gb * GIB


def _path(*parts: str) -> str:
    return "/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)


def _checked(response: Any, *ok: int) -> Any:
    """Swift answers through the raw proxy: errors become the SDK's exceptions (then the table)."""
    if response.status_code not in ok:
        sdk.raise_from_response(response)
        raise sdk.HttpException(  # a 1xx/3xx nobody expects
            message=f"unexpected HTTP {response.status_code}", response=response
        )
    return response


class ObjectStoreOps(OpenStackBase):
    def _swift(self, project: ProjectRef) -> Any:
        """The object-store proxy of a connection scoped to `project`: its endpoint is the project's account."""
        return self.scoped(project).object_store

    def _head_container(self, swift: Any, name: str) -> Any | None:
        response = swift.head(_path(name), raise_exc=False)
        if response.status_code == 404:
            return None
        return _checked(response, 200, 204)

    def _bucket_ref(self, project: ProjectRef, name: str, tag: str, headers: Any) -> BucketRef:
        return BucketRef(
            name=name,
            tag=tag,
            project_id=project.id,
            quota_bytes=int(headers.get(QUOTA_HEADER) or 0) or None,
            bytes_used=int(headers.get("X-Container-Bytes-Used") or 0),
            object_count=int(headers.get("X-Container-Object-Count") or 0),
        )

    def _container_name(self, tag: str, name: str | None) -> str:
        chosen = name or tag
        if not chosen or "/" in chosen or len(chosen.encode()) > MAX_CONTAINER_NAME:
            raise self.invalid(f"bucket name {chosen!r} must be 1–{MAX_CONTAINER_NAME} bytes without '/'")
        return chosen

    def ensure_bucket(self, project: ProjectRef, tag: str, quota_bytes: int, *, name: str | None = None) -> BucketRef:
        """Find-or-create the container `name or tag` tagged `tag`, with its byte quota set to `quota_bytes`."""
        if quota_bytes < 1:
            raise self.invalid(f"a bucket's quota must be ≥ 1 byte, got {quota_bytes}")
        container = self._container_name(tag, name)
        with self.errors():
            swift = self._swift(project)
            found = self._head_container(swift, container)
            if found is not None and found.headers.get(TAG_HEADER) != tag:
                raise ResourceConflict(
                    f"container {container!r} in project {project.name} exists and is not this request's "
                    f"(tag {found.headers.get(TAG_HEADER)!r})",
                    backend=self.backend,
                )
            if found is None or found.headers.get(QUOTA_HEADER) != str(quota_bytes):
                # PUT creates or (same tag: a retry) converges the metadata; Swift answers 201 or 202
                headers = {TAG_HEADER: tag, QUOTA_HEADER: str(quota_bytes)}
                _checked(swift.put(_path(container), headers=headers, raise_exc=False), 201, 202)
                found = self._head_container(swift, container)
                if found is None:  # pragma: no cover - Swift lost a container it just acknowledged
                    raise ResourceConflict(f"container {container!r} vanished after creation", backend=self.backend)
            return self._bucket_ref(project, container, tag, found.headers)

    def find_bucket(self, project: ProjectRef, tag: str, *, name: str | None = None) -> BucketRef | None:
        """Ours (carrying `tag`) or None; usage figures are Swift's, eventually consistent."""
        container = self._container_name(tag, name)
        with self.errors():
            found = self._head_container(self._swift(project), container)
            if found is None or found.headers.get(TAG_HEADER) != tag:
                return None
            return self._bucket_ref(project, container, tag, found.headers)

    def delete_bucket(self, project: ProjectRef, tag: str, *, name: str | None = None) -> bool:
        """Objects first, then the container; False when there is nothing of ours to delete."""
        container = self._container_name(tag, name)
        with self.errors():
            swift = self._swift(project)
            found = self._head_container(swift, container)
            if found is None or found.headers.get(TAG_HEADER) != tag:
                return False
            self._empty_and_delete(swift, container)
            return True

    def _empty_and_delete(self, swift: Any, container: str) -> None:
        """Swift refuses (409) to delete a container its listing still shows objects in: re-list
        and retry until `delete_timeout_s`, then the 409 goes out as transient."""
        deadline = self._monotonic() + self.settings.delete_timeout_s
        while True:
            for obj in list(swift.objects(container)):
                _checked(swift.delete(_path(container, obj.name), raise_exc=False), 204, 404)
            response = swift.delete(_path(container), raise_exc=False)
            if response.status_code != 409 or self._monotonic() >= deadline:
                _checked(response, 204, 404)
                return
            self._sleep(self.settings.poll_interval_s)

    def _delete_project_buckets(self, project: ProjectRef) -> int:
        """Every container in the project's account (retirement: ours or not, nothing stays behind)."""
        conn: Connection = self.scoped(project)
        if not conn.has_service(OBJECT_STORE):
            return 0  # the region runs no Swift (none in the catalog)
        swift = conn.object_store
        names = [c.name for c in swift.containers()]
        for container in names:
            self._empty_and_delete(swift, container)
        return len(names)
