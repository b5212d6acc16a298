"""Building connections: one admin `Connection` per region, and project-scoped ones from it.

Nothing is read from the environment or from clouds.yaml files the caller did not name, so
two regions (or two tests) in one process never see each other's settings.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import openstack
import openstack.connection
from openstack.config import loader

from provisioners.base import ProjectRef
from provisioners.errors import BackendMisconfigured

Connection = openstack.connection.Connection


@dataclass(frozen=True)
class CloudConfig:
    """Where a region's admin credentials come from: a clouds.yaml entry or an explicit auth dict."""

    region: str
    clouds_yaml: Path | None = None
    cloud: str | None = None
    auth: Mapping[str, str] | None = field(default=None, repr=False)
    auth_type: str = "password"
    interface: str = "public"
    api_timeout_s: float = 60.0
    verify: bool | str = True

    def problems(self) -> list[str]:
        if (self.auth is None) == (self.clouds_yaml is None):
            return ["give exactly one of clouds_yaml (+ cloud) or auth"]
        if self.clouds_yaml is not None and not self.cloud:
            return ["clouds_yaml needs a cloud name"]
        return []


def build_connection(config: CloudConfig) -> Connection:
    """The region's admin connection; authenticates lazily, on first use."""
    if problems := config.problems():
        raise BackendMisconfigured("; ".join(problems), backend=f"openstack:{config.region}")
    if config.auth is not None:
        return openstack.connect(
            auth=dict(config.auth),
            auth_type=config.auth_type,
            region_name=config.region,
            interface=config.interface,
            api_timeout=config.api_timeout_s,
            verify=config.verify,
            load_yaml_config=False,
            load_envvars=False,
        )
    assert config.clouds_yaml is not None
    openstack_config = loader.OpenStackConfig(
        config_files=[str(config.clouds_yaml)],
        vendor_files=[],
        secure_files=[],
        load_envvars=False,
    )
    region = openstack_config.get_one(
        cloud=config.cloud,
        region_name=config.region,
        api_timeout=config.api_timeout_s,
    )
    return openstack.connection.Connection(config=region)


class ProjectConnections:
    """Project-scoped connections made from the admin one, cached (LRU) because each costs a token.

    Resources must be created *in* the tenant's project and most services take the project
    from the token's scope, so the admin user holds a role on every project we manage.
    """

    def __init__(self, admin: Connection, *, max_cached: int = 32) -> None:
        self._admin = admin
        self._max = max_cached
        self._cache: OrderedDict[str, Connection] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, project: ProjectRef) -> Connection:
        with self._lock:
            conn = self._cache.get(project.id)
            if conn is not None:
                self._cache.move_to_end(project.id)
                return conn
        conn = self._admin.connect_as_project({"id": project.id, "domain_id": project.domain_id})
        with self._lock:
            self._cache[project.id] = conn
            while len(self._cache) > self._max:
                _, old = self._cache.popitem(last=False)
                old.close()
        return conn

    def forget(self, project_id: str) -> None:
        with self._lock:
            conn = self._cache.pop(project_id, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            conns = list(self._cache.values())
            self._cache.clear()
        for conn in conns:
            conn.close()
