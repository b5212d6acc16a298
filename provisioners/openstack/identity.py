"""Tenant onboarding in Keystone (domains, projects, groups, roles) and per-project quotas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import openstack.exceptions as sdk

from provisioners.base import DomainRef, GroupRef, ProjectRef, ProjectTags, QuotaSet
from provisioners.errors import BackendMisconfigured, ResourceConflict
from provisioners.openstack.common import MANAGED, OpenStackBase, identity

KEYSTONE_NAME_MAX = 64
COMPUTE_QUOTAS = ("cores", "ram", "instances", "key_pairs", "server_groups", "server_group_members", "metadata_items")
VOLUME_QUOTAS = ("gigabytes", "volumes", "snapshots", "backups", "backup_gigabytes", "per_volume_gigabytes")
# Neutron's API names → openstacksdk's attribute names.
NETWORK_QUOTAS: Mapping[str, str] = {
    "network": "networks",
    "subnet": "subnets",
    "router": "routers",
    "port": "ports",
    "security_group": "security_groups",
    "security_group_rule": "security_group_rules",
    "floatingip": "floating_ips",
}


def describe(tags: Sequence[str]) -> str:
    """Domains carry no Keystone tags (the API drops them), so ours live in the description."""
    return " ".join((f"{MANAGED}:", *tags)) if tags else f"{MANAGED}:"


class IdentityOps(OpenStackBase):
    def _role_id(self, name: str) -> str:
        if name not in self._role_ids:
            found = next(iter(identity(self.conn).roles(name=name)), None)
            if found is None:
                raise BackendMisconfigured(f"role {name!r} does not exist in Keystone", backend=self.backend)
            self._role_ids[name] = found.id
        return self._role_ids[name]

    def _keystone(self, method: str, path: str) -> None:
        """Role (un)assignment by hand: openstacksdk's helpers return False on a 404 instead of raising."""
        response = self.conn.identity.request(path, method)
        sdk.raise_from_response(response)

    def _check_name(self, kind: str, name: str) -> None:
        if not name or len(name) > KEYSTONE_NAME_MAX:
            raise self.invalid(f"{kind} name {name!r} must be 1–{KEYSTONE_NAME_MAX} characters")

    def ensure_domain(self, name: str, tags: Sequence[str] = ()) -> DomainRef:
        """One domain per prefecture-level city or provincial department."""
        self._check_name("domain", name)
        wanted = describe(tags)
        with self.errors():
            idn = identity(self.conn)
            found = next(iter(idn.domains(name=name)), None)
            if found is None:
                found = idn.create_domain(name=name, description=wanted, is_enabled=True)
            else:
                if not (found.description or "").startswith(f"{MANAGED}:"):
                    raise ResourceConflict(f"domain {name!r} exists but was not made by Chutian", backend=self.backend)
                if found.description != wanted or not found.is_enabled:
                    found = idn.update_domain(found, description=wanted, is_enabled=True)
            return DomainRef(id=found.id, name=found.name)

    def ensure_project(self, domain: DomainRef, name: str, tags: ProjectTags) -> ProjectRef:
        """Find-or-create by name in the domain (Keystone names are unique per domain); tags converge.

        The provisioner's own user gets `operator_role` on the project, because servers and
        volumes are created with a token scoped to it.
        """
        self._check_name("project", name)
        wanted_tags = sorted({MANAGED, *tags.as_tags()})
        description = f"Chutian Cloud: tenant {tags.tenant}, cloud {tags.cloud}, MLPS ceiling {tags.mlps_ceiling}"
        with self.errors():
            idn = identity(self.conn)
            found = next(iter(idn.projects(domain_id=domain.id, name=name)), None)
            created = found is None
            if found is None:
                found = idn.create_project(
                    name=name, domain_id=domain.id, description=description, tags=wanted_tags, is_enabled=True
                )
            else:
                if MANAGED not in (found.tags or []):
                    raise ResourceConflict(
                        f"project {name!r} exists in domain {domain.name!r} but was not made by Chutian",
                        backend=self.backend,
                    )
                if sorted(found.tags or []) != wanted_tags or found.description != description:
                    found = idn.update_project(found, tags=wanted_tags, description=description)
            project = ProjectRef(id=found.id, name=found.name, domain_id=found.domain_id)
            role = self._role_id(self.settings.operator_role)
            user = self.user_id()
            if created or not idn.validate_user_has_project_role(project.id, user, role):
                self._keystone("PUT", f"/projects/{project.id}/users/{user}/roles/{role}")
            return project

    def find_project(self, domain_name: str, name: str) -> ProjectRef | None:
        """For a retry that lost the ref: look the project up by the names it was made with."""
        with self.errors():
            domain = next(iter(identity(self.conn).domains(name=domain_name)), None)
            if domain is None:
                return None
            found = next(iter(identity(self.conn).projects(domain_id=domain.id, name=name)), None)
            return None if found is None else ProjectRef(id=found.id, name=found.name, domain_id=found.domain_id)

    def ensure_group(self, domain: DomainRef, name: str) -> GroupRef:
        self._check_name("group", name)
        with self.errors():
            idn = identity(self.conn)
            found = next(iter(idn.groups(domain_id=domain.id, name=name)), None)
            if found is None:
                found = idn.create_group(name=name, domain_id=domain.id, description=describe(()))
            return GroupRef(id=found.id, name=found.name, domain_id=found.domain_id)

    def ensure_group_access(
        self, project: ProjectRef, group: GroupRef, *, direct_access: bool = False, manager: bool = False
    ) -> frozenset[str]:
        """`reader` always; `member` (and `manager` on request) only for direct-access allocations.

        Converges: roles among these three that are no longer wanted are revoked.
        """
        if manager and not direct_access:
            raise self.invalid("the manager role needs direct_access")
        s = self.settings
        wanted = {s.reader_role}
        if direct_access:
            wanted.add(s.member_role)
        if manager:
            wanted.add(s.manager_role)
        with self.errors():
            idn = identity(self.conn)
            managed = {name: self._role_id(name) for name in (s.reader_role, s.member_role, s.manager_role)}
            held = {a.role["id"] for a in idn.role_assignments(scope_project_id=project.id, group_id=group.id)}
            for name, role_id in managed.items():
                if name in wanted and role_id not in held:
                    self._keystone("PUT", f"/projects/{project.id}/groups/{group.id}/roles/{role_id}")
                elif name not in wanted and role_id in held:
                    self._keystone("DELETE", f"/projects/{project.id}/groups/{group.id}/roles/{role_id}")
        return frozenset(wanted)

    def delete_group(self, domain: DomainRef, name: str) -> bool:
        with self.errors():
            found = next(iter(identity(self.conn).groups(domain_id=domain.id, name=name)), None)
            if found is None:
                return False
            identity(self.conn).delete_group(found, ignore_missing=True)
            return True

    def set_quotas(
        self,
        project: ProjectRef,
        *,
        compute: Mapping[str, int] | None = None,
        volume: Mapping[str, int] | None = None,
        network: Mapping[str, int] | None = None,
    ) -> QuotaSet:
        """Backend-native names (Nova `cores`/`ram`/`instances`, Cinder `gigabytes`/`volumes`, Neutron
        `network`/`subnet`/…); -1 is unlimited. Returns what the services answered."""
        for service, given, known in (
            ("compute", compute, COMPUTE_QUOTAS),
            ("volume", volume, VOLUME_QUOTAS),
            ("network", network, tuple(NETWORK_QUOTAS)),
        ):
            unknown = sorted(set(given or {}) - set(known))
            if unknown:
                raise self.invalid(f"unknown {service} quota(s) {unknown}; known: {list(known)}")
            bad = sorted(k for k, v in (given or {}).items() if not isinstance(v, int) or v < -1)
            if bad:
                raise self.invalid(f"{service} quota(s) {bad} must be integers ≥ -1")
        with self.errors():
            conn = self.conn
            return _quota_set(
                conn.compute.update_quota_set(project.id, **cast(dict[str, Any], dict(compute)))
                if compute
                else conn.compute.get_quota_set(project.id),
                conn.block_storage.update_quota_set(project.id, **dict(volume))
                if volume
                else conn.block_storage.get_quota_set(project.id),
                conn.network.update_quota(project.id, **{NETWORK_QUOTAS[k]: v for k, v in network.items()})
                if network
                else conn.network.get_quota(project.id),
            )

    def read_quotas(self, project: ProjectRef) -> QuotaSet:
        with self.errors():
            return _quota_set(
                self.conn.compute.get_quota_set(project.id),
                self.conn.block_storage.get_quota_set(project.id),
                self.conn.network.get_quota(project.id),
            )


def _quota_set(compute: Any, volume: Any, network: Any) -> QuotaSet:
    """Each service answers an update with its whole quota set, so no read-back is needed."""
    return QuotaSet(
        compute=_ints(compute, {k: k for k in COMPUTE_QUOTAS}),
        volume=_ints(volume, {k: k for k in VOLUME_QUOTAS}),
        network=_ints(network, NETWORK_QUOTAS),
    )


def _ints(resource: Any, names: Mapping[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, attr in names.items():
        value = getattr(resource, attr, None)
        if isinstance(value, int):
            out[name] = value
    return out
