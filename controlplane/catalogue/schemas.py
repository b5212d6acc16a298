"""Catalogue API shapes: the site file's models plus where each row came from."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from controlplane.site_config import Approval, CloudClass, NetworkZone, Region, ThemedCloud

MlpsLevel = Annotated[int, Field(ge=2, le=4)]
Amounts = dict[str, Annotated[int, Field(ge=0)]]


class RegionPublic(Region):
    model_config = ConfigDict(extra="ignore", frozen=True)
    source: str
    updated_at: datetime
    version: int


class CloudPublic(ThemedCloud):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, serialize_by_alias=True)
    source: str
    updated_at: datetime
    version: int


class FlavorPublic(BaseModel):
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    source: str
    updated_at: datetime


class ImagePublic(BaseModel):
    region: str
    name: str
    image_id: str | None
    disk_format: str
    min_disk_gb: int
    min_ram_mb: int
    size_bytes: int
    source: str
    seen_at: datetime


class _Patch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class RegionPatch(_Patch):
    name_zh: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    name_en: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    capacity: Amounts | None = None
    overcommit: dict[str, Annotated[float, Field(gt=0, le=64)]] | None = None
    mlps_assessed: list[MlpsLevel] | None = None
    external_networks: dict[NetworkZone, str] | None = None
    baseline: bool | None = None


class CloudPatch(_Patch):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name_zh: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    name_en: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    cloud_class: CloudClass | None = Field(default=None, alias="class")
    lead_department: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,19}$")] | None = None
    allowed_flavors: list[str] | None = None
    allowed_storage: list[str] | None = None
    regions: list[str] | None = None
    default_mlps: MlpsLevel | None = None
    dr_default: bool | None = None
    approval: Approval | None = None


def merged(current: dict[str, Any], patch: BaseModel) -> dict[str, Any]:
    out = dict(current)
    out.update(patch.model_dump(mode="json", exclude_unset=True, by_alias=True))
    return out
