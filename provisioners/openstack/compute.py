"""Servers found-or-created by a metadata tag, and the catalogue (flavors, public images)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from typing import Any

from provisioners.base import FlavorMismatch, FlavorReport, FlavorSpec, ImageRef, ProjectRef, ServerRef, ServerSpec
from provisioners.openstack.common import OpenStackBase, get_or_none
from provisioners.openstack.connection import Connection

METADATA_VALUE_MAX = 255
# States a server rests in: a found server in one of these is returned as it is (someone may
# have stopped it on purpose); a new one goes BUILD → ACTIVE.
SERVER_SETTLED = frozenset(
    {"ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED", "SHELVED", "SHELVED_OFFLOADED", "RESCUE", "VERIFY_RESIZE"}
)


# names Nova's regex filter takes literally (our tags and request names are of this form)
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")


def _server_tag(tag: str) -> bool:
    """Whether Nova takes ``tag`` as a server tag (at most 60 characters, no '/' or ',')."""
    return len(tag) <= 60 and "/" not in tag and "," not in tag


def _flavor_name(server: Any) -> str:
    flavor = server.flavor
    if isinstance(flavor, dict):
        return str(flavor.get("original_name") or flavor.get("name") or flavor.get("id") or "")
    return str(getattr(flavor, "name", None) or getattr(flavor, "id", None) or "")


def _addresses(server: Any) -> tuple[str, ...]:
    """Fixed IPv4 addresses first (what Ansible reaches from the management network)."""
    found: list[tuple[int, str]] = []
    for entries in (server.addresses or {}).values():
        for entry in entries or []:
            fixed = entry.get("OS-EXT-IPS:type", "fixed") == "fixed"
            found.append((0 if fixed and entry.get("version") == 4 else 1, str(entry.get("addr"))))
    return tuple(addr for _, addr in sorted(found, key=lambda item: item[0]))


def _fault(server: Any) -> str | None:
    if server.status != "ERROR":
        return None
    fault = server.fault or {}
    return str(fault.get("message") or "") if isinstance(fault, dict) else str(fault)


class ComputeOps(OpenStackBase):
    def _server_ref(self, server: Any, tag: str) -> ServerRef:
        return ServerRef(
            id=server.id,
            tag=tag,
            project_id=server.project_id,
            status=server.status,
            flavor=_flavor_name(server),
            addresses=_addresses(server),
        )

    def _find_server(
        self, conn: Connection, tag: str, *, project_id: str | None = None, name: str | None = None
    ) -> Any | None:
        """Oldest server carrying the tag (a duplicate can only come from a create racing a retry).

        Nova filters by server tag (we create servers with the tag as a Nova server tag as well
        as in metadata), so a find costs the same in a project of 1 or 1,000 servers; listing
        the project and filtering here made N one-VM requests O(N²) in Nova's API. A server
        made before server tags were set is still found by ``name`` (also filtered by Nova), or,
        without a plain one, by a full listing."""
        base: dict[str, Any] = {"details": True}
        if project_id is not None:
            base.update(all_projects=True, project_id=project_id)
        queries: list[dict[str, Any]] = [{**base, "tags": tag}] if _server_tag(tag) else []
        if name is not None and _PLAIN_NAME.match(name):
            queries.append({**base, "name": f"^{name}$"})
        else:
            queries.append(base)
        for query in queries:
            matches = [s for s in conn.compute.servers(**query) if (s.metadata or {}).get(self.settings.tag_key) == tag]
            if matches:
                return min(matches, key=lambda s: (s.created_at or "", s.id))
        return None

    def _wait_active(self, conn: Connection, server: Any, tag: str) -> Any:
        def fetch() -> Any:
            return conn.compute.get_server(server.id)

        return self.wait(
            f"server {tag!r} ({server.id})",
            fetch,
            status=lambda s: None if s is None else s.status,
            done=lambda s: s is not None and s.status in SERVER_SETTLED,
            failed=_fault,
            timeout_s=self.settings.server_timeout_s,
        )

    def ensure_server(self, project: ProjectRef, spec: ServerSpec) -> ServerRef:
        """Find-or-create by `chutian_tag` metadata, then wait until ACTIVE (or another resting state).

        A server found in ERROR is reported again (same error), not replaced: deleting it is a
        separate, deliberate step.
        """
        if not spec.tag or len(spec.tag) > METADATA_VALUE_MAX:
            raise self.invalid(f"server tag must be 1–{METADATA_VALUE_MAX} characters")
        with self.errors():
            conn = self.scoped(project)
            server = self._find_server(conn, spec.tag, name=spec.name or spec.tag)
            if server is None:
                flavor = conn.compute.find_flavor(spec.flavor, ignore_missing=True)
                if flavor is None:
                    raise self.invalid(f"unknown flavor {spec.flavor!r} in region {self.region}")
                image = conn.image.find_image(spec.image, ignore_missing=True)
                if image is None:
                    raise self.invalid(f"unknown image {spec.image!r} in region {self.region}")
                networks: str | list[dict[str, str]] = "none"
                if spec.networks:
                    networks = []
                    for name in spec.networks:
                        found = conn.network.find_network(name, ignore_missing=True)
                        if found is None:
                            raise self.invalid(f"unknown network {name!r} for project {project.name}")
                        networks.append({"uuid": found.id})
                server = conn.compute.create_server(
                    name=spec.name or spec.tag,
                    flavor_id=flavor.id,
                    image_id=image.id,
                    networks=networks,
                    metadata={**spec.metadata, self.settings.tag_key: spec.tag},
                    **({"tags": [spec.tag]} if _server_tag(spec.tag) else {}),
                )
            return self._server_ref(self._wait_active(conn, server, spec.tag), spec.tag)

    def find_server(self, project: ProjectRef, tag: str) -> ServerRef | None:
        with self.errors():
            server = self._find_server(self.scoped(project), tag)
            return None if server is None else self._server_ref(server, tag)

    def delete_server(self, project: ProjectRef, tag: str) -> bool:
        """Delete and wait until Nova no longer lists it; False when there was nothing to delete.

        Deletes go through the admin connection: a tenant's token may not be allowed to
        release what Nova bound on its behalf (the box refuses a member's port deletion).
        """
        with self.errors():
            server = self._find_server(self.conn, tag, project_id=project.id)
            if server is None:
                return False
            self._delete_servers(self.conn, [server])
            return True

    def _delete_servers(self, conn: Connection, servers: Sequence[Any]) -> None:
        for server in servers:
            conn.compute.delete_server(server, ignore_missing=True)
        for server in servers:
            self.wait(
                f"deletion of server {server.id}",
                partial(get_or_none, conn.compute.get_server, server.id),
                status=lambda s: None if s is None else s.status,
                done=lambda s: s is None,
                timeout_s=self.settings.delete_timeout_s,
            )

    # ---- catalogue ----

    def ensure_flavors(self, specs: Sequence[FlavorSpec]) -> FlavorReport:
        """Create missing flavors; an existing one that differs is reported, never changed."""
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise self.invalid(f"flavor names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
        created: list[str] = []
        unchanged: list[str] = []
        mismatches: list[FlavorMismatch] = []
        with self.errors():
            compute = self.conn.compute
            existing = {f.name: f for f in compute.flavors(details=True, is_public=None)}
            for spec in specs:
                flavor = existing.get(spec.name)
                if flavor is None:
                    compute.create_flavor(
                        name=spec.name, vcpus=spec.vcpus, ram=spec.ram_mb, disk=spec.disk_gb, is_public=spec.is_public
                    )
                    created.append(spec.name)
                    continue
                found = [
                    FlavorMismatch(spec.name, field, expected, actual)
                    for field, expected, actual in (
                        ("vcpus", spec.vcpus, flavor.vcpus),
                        ("ram_mb", spec.ram_mb, flavor.ram),
                        ("disk_gb", spec.disk_gb, flavor.disk),
                        ("is_public", spec.is_public, flavor.is_public),
                    )
                    if expected != actual
                ]
                if found:
                    mismatches.extend(found)
                else:
                    unchanged.append(spec.name)
        return FlavorReport(created=tuple(created), unchanged=tuple(unchanged), mismatches=tuple(mismatches))

    def public_images(self) -> list[ImageRef]:
        """Active public images, by name: what the catalogue offers in this region."""
        with self.errors():
            images = list(self.conn.image.images(visibility="public", status="active"))
        return sorted(
            (
                ImageRef(
                    id=image.id,
                    name=image.name or image.id,
                    disk_format=image.disk_format or "",
                    min_disk_gb=int(image.min_disk or 0),
                    min_ram_mb=int(image.min_ram or 0),
                    size_bytes=int(image.size or 0),
                )
                for image in images
            ),
            key=lambda ref: (ref.name, ref.id),
        )
