"""State shared by the provisioner's parts: the admin connection, project scoping, waits, settings."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar, cast

import openstack.exceptions as sdk

from provisioners.base import ProjectRef
from provisioners.errors import InvalidSpec
from provisioners.openstack.connection import Connection, ProjectConnections
from provisioners.openstack.errors import ResourceFailed, WaitTimedOut, translated

if TYPE_CHECKING:
    from openstack.identity.v3._proxy import Proxy as IdentityProxy
    from openstack.image.v2._proxy import Proxy as ImageProxy

T = TypeVar("T")


def identity(conn: Connection) -> IdentityProxy:
    """openstacksdk types `conn.identity` as v2 | v3; every region we drive is Keystone v3."""
    return cast("IdentityProxy", conn.identity)


def image(conn: Connection) -> ImageProxy:
    return cast("ImageProxy", conn.image)


@dataclass(frozen=True)
class IngressRule:
    protocol: str  # "tcp", "udp", "icmp"
    remote_ip_prefix: str
    port_min: int | None = None
    port_max: int | None = None


@dataclass(frozen=True)
class ZoneProfile:
    """The default network of a project in one network zone (政务外网 / 政务内网 / 互联网区)."""

    cidr: str
    ingress: tuple[IngressRule, ...]
    dns_nameservers: tuple[str, ...] = ()


_EGOV = "10.0.0.0/8"  # the e-government network's address space
DEFAULT_ZONES: Mapping[str, ZoneProfile] = {
    "egov-extranet": ZoneProfile(
        cidr="10.80.0.0/24",
        ingress=(IngressRule("icmp", _EGOV), IngressRule("tcp", _EGOV, 22, 22), IngressRule("tcp", _EGOV, 443, 443)),
    ),
    "egov-intranet": ZoneProfile(
        cidr="10.90.0.0/24",
        ingress=(IngressRule("icmp", _EGOV), IngressRule("tcp", _EGOV, 22, 22)),
    ),
    "internet": ZoneProfile(
        cidr="10.100.0.0/24",
        ingress=(
            IngressRule("icmp", "0.0.0.0/0"),
            IngressRule("tcp", "0.0.0.0/0", 80, 80),
            IngressRule("tcp", "0.0.0.0/0", 443, 443),
            IngressRule("tcp", _EGOV, 22, 22),
        ),
    ),
}


FIRST_POLL_S = 0.25


@dataclass(frozen=True)
class OpenStackSettings:
    """Timeouts and names; the defaults suit the box and a production region alike."""

    server_timeout_s: float = 300.0
    volume_timeout_s: float = 300.0
    backup_timeout_s: float = 900.0
    delete_timeout_s: float = 300.0
    poll_interval_s: float = 1.0
    tag_key: str = "chutian_tag"
    operator_role: str = "member"  # what the provisioner's own user holds on each project it manages
    reader_role: str = "reader"
    member_role: str = "member"
    manager_role: str = "manager"
    zones: Mapping[str, ZoneProfile] = field(default_factory=lambda: dict(DEFAULT_ZONES))
    max_project_connections: int = 32


def get_or_none(getter: Callable[[str], T], resource_id: str) -> T | None:
    """A GET that treats 404 as "gone" (what every wait for a deletion needs)."""
    try:
        return getter(resource_id)
    except sdk.NotFoundException:
        return None


MANAGED = "chutian"  # a Keystone tag / description prefix: "we made this"


class OpenStackBase:
    """Holds the region's admin connection; parts mix this in and share it."""

    def __init__(
        self,
        connection: Connection,
        *,
        region: str,
        settings: OpenStackSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = connection
        self.region = region
        self.settings = settings or OpenStackSettings()
        self.backend = f"openstack:{region}"
        self._projects = ProjectConnections(connection, max_cached=self.settings.max_project_connections)
        self._sleep = sleep
        self._monotonic = monotonic
        self._role_ids: dict[str, str] = {}

    def close(self) -> None:
        self._projects.close()
        self.conn.close()

    @contextmanager
    def errors(self) -> Iterator[None]:
        with translated(self.backend):
            yield

    def scoped(self, project: ProjectRef) -> Connection:
        """A connection whose token is scoped to `project`: what it creates belongs there."""
        return self._projects.get(project)

    def user_id(self) -> str:
        user = self.conn.current_user_id
        if user is None:  # pragma: no cover - a password or token auth always has one
            raise self.invalid("the admin connection has no user")
        return user

    def invalid(self, message: str) -> InvalidSpec:
        return InvalidSpec(message, backend=self.backend)

    def wait(
        self,
        what: str,
        fetch: Callable[[], T | None],
        *,
        status: Callable[[T | None], str | None],
        done: Callable[[T | None], bool],
        failed: Callable[[T], str | None] | None = None,
        timeout_s: float,
    ) -> T | None:
        """Poll `fetch` until `done`; `failed` returns a fault text when the object is broken for good."""
        deadline = self._monotonic() + timeout_s
        # Short first intervals, backing off to poll_interval_s: a fake or idle host settles a
        # server in about a second, and a fixed 1 s poll added up to a second to every wait.
        interval = min(FIRST_POLL_S, self.settings.poll_interval_s)
        while True:
            current = fetch()
            if done(current):
                return current
            if current is not None and failed is not None:
                fault = failed(current)
                if fault is not None:
                    raise ResourceFailed(what, status(current) or "error", fault)
            if self._monotonic() >= deadline:
                raise WaitTimedOut(what, status(current), timeout_s)
            self._sleep(interval)
            interval = min(interval * 2, self.settings.poll_interval_s)
