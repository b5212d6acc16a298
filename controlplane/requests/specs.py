"""Per-kind request specs: validated shapes, the resource delta each asks for, and the
checks against the themed cloud's catalogue and the tenant's network zone."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backup.errors import InvalidSchedule
from backup.schedule import validate as validate_schedule
from controlplane.errors import ValidationFailed
from controlplane.site_config import RESOURCES, NetworkZone

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Path_ = Annotated[str, Field(pattern=r"^[a-z0-9-]+(\.[a-z0-9-]+)*$", max_length=400)]


class RequestKind(StrEnum):
    VM = "vm"
    VOLUME = "volume"
    BUCKET = "bucket"
    K8S_NAMESPACE = "k8s-namespace"
    BACKUP_ENROLMENT = "backup-enrolment"
    QUOTA_CHANGE = "quota-change"
    TENANT_ONBOARDING = "tenant-onboarding"
    VOLUME_BACKUP = "volume-backup"
    DELETION = "deletion"
    ALLOCATION_RETIREMENT = "allocation-retirement"


# What a `deletion` may name: the kinds whose request made something in a backend.
DELETABLE_KINDS = frozenset({"vm", "volume", "volume-backup", "bucket", "k8s-namespace"})
# Kinds that name another request of the same tenant, and the spec field that does.
TARGET_FIELDS: dict[str, str] = {"volume-backup": "volume", "deletion": "target"}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VmSpec(_Spec):
    kind: Literal["vm"] = "vm"
    flavor: Annotated[str, Field(min_length=1, max_length=40)]
    image: Annotated[str, Field(min_length=1, max_length=200)]
    count: Annotated[int, Field(ge=1, le=100)] = 1
    network_zone: NetworkZone | None = None
    name: Name | None = None
    # opened by the MLPS baseline's default-deny firewall (SSH stays reachable for the baseline)
    tcp_ports: Annotated[list[Annotated[int, Field(ge=1, le=65535)]], Field(max_length=20)] = Field(
        default_factory=lambda: [22]
    )


class VolumeSpec(_Spec):
    kind: Literal["volume"] = "volume"
    size_gb: Annotated[int, Field(ge=1, le=65536)]
    storage: Annotated[str, Field(min_length=1, max_length=20)] = "ssd"
    name: Name | None = None


class BucketSpec(_Spec):
    kind: Literal["bucket"] = "bucket"
    size_gb: Annotated[int, Field(ge=1, le=1_048_576)]
    name: Name | None = None


class NamespaceSpec(_Spec):
    kind: Literal["k8s-namespace"] = "k8s-namespace"
    cpu_m: Annotated[int, Field(ge=100, le=1_000_000)]
    memory_mb: Annotated[int, Field(ge=128, le=4_194_304)]
    name: Name | None = None


class Retention(_Spec):
    """GFS counts, restic's --keep-last/-daily/-weekly/-monthly."""

    last: Annotated[int, Field(ge=0, le=1000)] = 7
    daily: Annotated[int, Field(ge=0, le=1000)] = 7
    weekly: Annotated[int, Field(ge=0, le=1000)] = 4
    monthly: Annotated[int, Field(ge=0, le=1000)] = 12


class BackupEnrolmentSpec(_Spec):
    kind: Literal["backup-enrolment"] = "backup-enrolment"
    name: Name
    paths: Annotated[list[Annotated[str, Field(min_length=1, max_length=400)]], Field(min_length=1, max_length=50)]
    schedule: Annotated[str, Field(min_length=9, max_length=100)] = "0 2 * * *"
    rpo_target_s: Annotated[int, Field(ge=300, le=30 * 86400)] = 86400
    target_region: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,19}$")]
    size_gb: Annotated[int, Field(ge=1, le=1_048_576)]
    daily_change_pct: Annotated[float, Field(ge=0, le=100)] = 10.0
    vm: Annotated[str | None, Field(min_length=1, max_length=200, description="Back up this VM's paths")] = None
    retention: Retention = Field(default_factory=Retention)
    drill_schedule: Annotated[str, Field(min_length=9, max_length=100)] = "0 4 * * 0"

    @field_validator("schedule", "drill_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            return validate_schedule(value)
        except InvalidSchedule as exc:
            raise ValueError(str(exc)) from None

    @field_validator("paths")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/") or "/../" in f"{path}/" or "\x00" in path:
                raise ValueError(f"{path!r}: give absolute paths without '..'")
        return value


class QuotaChangeSpec(_Spec):
    kind: Literal["quota-change"] = "quota-change"
    limits: dict[str, Annotated[int, Field(ge=0, le=10**12)] | None]


class OnboardingSpec(_Spec):
    kind: Literal["tenant-onboarding"] = "tenant-onboarding"
    tenant: Path_ | None = Field(default=None, description="Who joins; defaults to the requesting tenant")
    mode: Literal["slice", "shared"] = "shared"
    limits: dict[str, Annotated[int, Field(ge=0, le=10**12)] | None] = Field(default_factory=dict)
    direct_access: bool = False


class VolumeBackupSpec(_Spec):
    """A Cinder backup of the volume a fulfilled `volume` request of the same tenant made."""

    kind: Literal["volume-backup"] = "volume-backup"
    volume: uuid.UUID = Field(description="The fulfilled volume request whose volume is backed up")
    name: Name


class DeletionSpec(_Spec):
    """Delete exactly what a fulfilled request of the same tenant made, and give its quota back."""

    kind: Literal["deletion"] = "deletion"
    target: uuid.UUID = Field(description="The fulfilled vm/volume/volume-backup/bucket/k8s-namespace request")


class AllocationRetirementSpec(_Spec):
    """Retire the request's (tenant, cloud, region) allocation: its project, namespace and ledger node."""

    kind: Literal["allocation-retirement"] = "allocation-retirement"


Spec = Annotated[
    VmSpec
    | VolumeSpec
    | BucketSpec
    | NamespaceSpec
    | BackupEnrolmentSpec
    | QuotaChangeSpec
    | OnboardingSpec
    | VolumeBackupSpec
    | DeletionSpec
    | AllocationRetirementSpec,
    Field(discriminator="kind"),
]


def delta_of(spec: Any, flavors: dict[str, dict[str, int]]) -> dict[str, int]:
    """The resource vector a request asks the ledger for (zero for quota changes/onboarding and
    removals; a volume backup's size is its volume's, which the service looks up)."""
    if isinstance(spec, VmSpec):
        flavor = flavors[spec.flavor]
        return {"vcpus": flavor["vcpus"] * spec.count, "ram_mb": flavor["ram_mb"] * spec.count, "instances": spec.count}
    if isinstance(spec, VolumeSpec):
        return {"volume_gb": spec.size_gb, "volumes": 1}
    if isinstance(spec, BucketSpec):
        return {"object_gb": spec.size_gb}
    if isinstance(spec, NamespaceSpec):
        return {"k8s_cpu_m": spec.cpu_m, "k8s_memory_mb": spec.memory_mb}
    if isinstance(spec, BackupEnrolmentSpec):
        return {"backup_gb": spec.size_gb}
    return {}


def check_against_catalogue(  # noqa: PLR0912 - one branch per rule reads best
    spec: Any,
    *,
    cloud: dict[str, Any],
    flavors: dict[str, dict[str, int]],
    tenant_zone: str,
    regions: dict[str, dict[str, Any]],
    region: str,
    images: Sequence[str] = (),
) -> None:
    """422 naming the field when the spec asks for what the themed cloud does not offer."""
    if isinstance(spec, VmSpec):
        if spec.flavor not in flavors:
            raise ValidationFailed(f"unknown flavor '{spec.flavor}'", field="spec.flavor")
        if spec.flavor not in cloud["allowed_flavors"]:
            raise ValidationFailed(
                f"{cloud['code']} offers flavors {cloud['allowed_flavors']}, not '{spec.flavor}'", field="spec.flavor"
            )
        if spec.network_zone is not None and spec.network_zone.value != tenant_zone:
            raise ValidationFailed(
                f"the tenant sits in network zone '{tenant_zone}', not '{spec.network_zone}'", field="spec.network_zone"
            )
        if spec.image not in images:
            offered = f"it offers {sorted(images)}" if images else "its catalogue lists no images yet (not synced)"
            raise ValidationFailed(f"unknown image '{spec.image}' in region {region}: {offered}", field="spec.image")
    if isinstance(spec, VolumeSpec) and spec.storage not in cloud["allowed_storage"]:
        raise ValidationFailed(
            f"{cloud['code']} offers storage {cloud['allowed_storage']}, not '{spec.storage}'", field="spec.storage"
        )
    if isinstance(spec, BucketSpec) and "object" not in cloud["allowed_storage"]:
        raise ValidationFailed(f"{cloud['code']} offers no object storage", field="spec.kind")
    if isinstance(spec, BackupEnrolmentSpec):
        target = regions.get(spec.target_region)
        if target is None:
            raise ValidationFailed(f"unknown region '{spec.target_region}'", field="spec.target_region")
        if spec.target_region == region:
            raise ValidationFailed(
                "remote backup must go to another region than the source", field="spec.target_region"
            )
        if not target.get("dr_site"):
            raise ValidationFailed(f"'{spec.target_region}' is not a DR site", field="spec.target_region")
    if isinstance(spec, QuotaChangeSpec | OnboardingSpec):
        for resource in spec.limits:
            if resource not in RESOURCES:
                raise ValidationFailed(f"unknown resource '{resource}'", field=f"spec.limits.{resource}")
