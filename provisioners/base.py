"""The small Protocols the application depends on, and the frozen values they exchange.

Tasks get a backend from a registry and call these; nothing here knows which cloud answers.
Every `ensure_*` is find-or-create by name or tag, so a retried step never makes a second
object, and every wait inside one is bounded (a timeout raises `BackendTimeout`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class DomainRef:
    id: str
    name: str


@dataclass(frozen=True)
class ProjectRef:
    id: str
    name: str
    domain_id: str


@dataclass(frozen=True)
class GroupRef:
    id: str
    name: str
    domain_id: str


@dataclass(frozen=True)
class ProjectTags:
    """What a project is for: kept on the project so an operator can tell from the backend alone."""

    tenant: str
    cloud: str
    mlps_ceiling: int

    def as_tags(self) -> tuple[str, ...]:
        return (f"tenant:{self.tenant}", f"cloud:{self.cloud}", f"mlps:{self.mlps_ceiling}")


@dataclass(frozen=True)
class QuotaSet:
    """Backend-native quota names per service (Nova `cores`, Cinder `gigabytes`, Neutron `network`…); -1 = unlimited."""

    compute: Mapping[str, int] = field(default_factory=dict)
    volume: Mapping[str, int] = field(default_factory=dict)
    network: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TenantNetworkRef:
    network_id: str
    subnet_id: str
    router_id: str
    security_group_id: str
    external_network_id: str


@dataclass(frozen=True)
class ServerSpec:
    """`tag` names the logical server for ever: it is what makes creation idempotent.

    No `networks` means no NIC at all (`networks='none'`), not "whatever the cloud picks".
    """

    tag: str
    flavor: str
    image: str
    networks: tuple[str, ...] = ()
    name: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerRef:
    id: str
    tag: str
    project_id: str
    status: str
    flavor: str
    addresses: tuple[str, ...] = ()  # fixed IPv4 first, then the rest, as Nova lists them


@dataclass(frozen=True)
class VolumeSpec:
    tag: str
    size_gb: int
    volume_type: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class VolumeRef:
    id: str
    tag: str
    project_id: str
    status: str
    size_gb: int


@dataclass(frozen=True)
class BackupRef:
    id: str
    tag: str
    volume_id: str
    project_id: str
    status: str
    size_gb: int


@dataclass(frozen=True)
class BucketRef:
    """A Swift container in a project's account; usage figures are Swift's (eventually consistent)."""

    name: str
    tag: str
    project_id: str
    quota_bytes: int | None
    bytes_used: int
    object_count: int


@dataclass(frozen=True)
class FlavorSpec:
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    is_public: bool = True


@dataclass(frozen=True)
class FlavorMismatch:
    """An existing flavor differs from the site file: reported, never changed behind anyone's back."""

    name: str
    field: str
    expected: int | bool
    actual: int | bool


@dataclass(frozen=True)
class FlavorReport:
    created: tuple[str, ...]
    unchanged: tuple[str, ...]
    mismatches: tuple[FlavorMismatch, ...]


@dataclass(frozen=True)
class ImageRef:
    id: str
    name: str
    disk_format: str
    min_disk_gb: int
    min_ram_mb: int
    size_bytes: int


@dataclass(frozen=True)
class RegionCapacity:
    """`total` is what can be allocated after overcommit; `allocated` what is allocated now."""

    total: Mapping[str, int]
    allocated: Mapping[str, int]


@dataclass(frozen=True)
class RetirementReport:
    """What one retirement pass deleted, per kind; all zeros on a repeat."""

    deleted: Mapping[str, int]
    project_deleted: bool
    domain_deleted: bool


@runtime_checkable
class IdentityBackend(Protocol):
    def ensure_domain(self, name: str, tags: Sequence[str] = ()) -> DomainRef: ...

    def ensure_project(self, domain: DomainRef, name: str, tags: ProjectTags) -> ProjectRef: ...

    def ensure_group(self, domain: DomainRef, name: str) -> GroupRef: ...

    def ensure_group_access(
        self, project: ProjectRef, group: GroupRef, *, direct_access: bool = False, manager: bool = False
    ) -> frozenset[str]: ...

    def set_quotas(
        self,
        project: ProjectRef,
        *,
        compute: Mapping[str, int] | None = None,
        volume: Mapping[str, int] | None = None,
        network: Mapping[str, int] | None = None,
    ) -> QuotaSet: ...

    def read_quotas(self, project: ProjectRef) -> QuotaSet: ...


@runtime_checkable
class NetworkBackend(Protocol):
    def ensure_tenant_network(self, project: ProjectRef, zone: str, external_network: str) -> TenantNetworkRef: ...


@runtime_checkable
class ComputeBackend(Protocol):
    def ensure_server(self, project: ProjectRef, spec: ServerSpec) -> ServerRef: ...

    def find_server(self, project: ProjectRef, tag: str) -> ServerRef | None: ...

    def delete_server(self, project: ProjectRef, tag: str) -> bool: ...


@runtime_checkable
class VolumeBackend(Protocol):
    def ensure_volume(self, project: ProjectRef, spec: VolumeSpec) -> VolumeRef: ...

    def delete_volume(self, project: ProjectRef, tag: str) -> bool: ...

    def ensure_volume_backup(self, project: ProjectRef, volume_tag: str, backup_tag: str) -> BackupRef: ...

    def delete_volume_backup(self, project: ProjectRef, backup_tag: str) -> bool: ...


@runtime_checkable
class ObjectStoreBackend(Protocol):
    def ensure_bucket(
        self, project: ProjectRef, tag: str, quota_bytes: int, *, name: str | None = None
    ) -> BucketRef: ...

    def find_bucket(self, project: ProjectRef, tag: str, *, name: str | None = None) -> BucketRef | None: ...

    def delete_bucket(self, project: ProjectRef, tag: str, *, name: str | None = None) -> bool: ...


@runtime_checkable
class CatalogueBackend(Protocol):
    def ensure_flavors(self, specs: Sequence[FlavorSpec]) -> FlavorReport: ...

    def public_images(self) -> list[ImageRef]: ...


@runtime_checkable
class UsageReader(Protocol):
    def project_usage(self, project: ProjectRef) -> dict[str, int]: ...


@runtime_checkable
class CapacityReader(Protocol):
    def region_capacity(self) -> RegionCapacity: ...


@runtime_checkable
class RetirementBackend(Protocol):
    def retire_project(self, project: ProjectRef, *, drop_empty_domain: bool = True) -> RetirementReport: ...
