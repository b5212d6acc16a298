"""The site file: regions, themed clouds and flavors, validated as a whole.

Every problem is collected with its path (``clouds[3].allowed_flavors[1]``) and reported at
once, so an operator fixes the file in one pass instead of one error per restart.
"""

from __future__ import annotations

from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from controlplane.errors import ConfigurationError

Code = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,19}$")]
MlpsLevel = Annotated[int, Field(ge=2, le=4)]

RESOURCES = (
    "vcpus",
    "ram_mb",
    "instances",
    "volume_gb",
    "volumes",
    "object_gb",
    "k8s_cpu_m",
    "k8s_memory_mb",
    "backup_gb",
)


class NetworkZone(StrEnum):
    EGOV_EXTRANET = "egov-extranet"  # 政务外网
    EGOV_INTRANET = "egov-intranet"  # 政务内网
    INTERNET = "internet"  # 互联网区


class CloudClass(StrEnum):
    GOVERNMENT = "government"  # 政务
    INDUSTRY = "industry"  # 产业
    LIVELIHOOD = "livelihood"  # 民生


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Flavor(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,39}$")]
    vcpus: Annotated[int, Field(ge=1, le=512)]
    ram_mb: Annotated[int, Field(ge=128)]
    disk_gb: Annotated[int, Field(ge=0)]


class Region(_Strict):
    code: Code
    name_zh: str
    name_en: str
    primary: bool = False
    dr_site: bool = False
    openstack_cloud: str | None = None
    kube_context: str | None = None
    baseline: bool = True
    capacity: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    overcommit: dict[str, Annotated[float, Field(gt=0, le=64)]] = Field(default_factory=dict)
    mlps_assessed: list[MlpsLevel] = Field(default_factory=lambda: [2])
    external_networks: dict[NetworkZone, str] = Field(default_factory=dict)

    @field_validator("capacity", "overcommit")
    @classmethod
    def _known_resources(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(RESOURCES))
        if unknown:
            raise ValueError(f"unknown resource(s) {unknown}; known: {list(RESOURCES)}")
        return value


class AutoApprovalRule(_Strict):
    """Requests at or under `max` for systems at or under `mlps_max` skip the human steps."""

    name: str
    max: dict[str, Annotated[int, Field(ge=0)]]
    mlps_max: MlpsLevel = 2
    kinds: list[str] = Field(default_factory=lambda: ["vm", "volume", "bucket", "k8s-namespace"])


class Approval(_Strict):
    operator_threshold: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    auto: list[AutoApprovalRule] = Field(default_factory=list)


class ThemedCloud(_Strict):
    code: Code
    name_zh: str
    name_en: str
    cloud_class: CloudClass = Field(alias="class")
    lead_department: Code
    allowed_flavors: list[str]
    allowed_storage: list[str] = Field(default_factory=lambda: ["ssd", "sata", "object"])
    regions: list[Code] = Field(default_factory=list)
    default_mlps: MlpsLevel = 2
    dr_default: bool = False
    data_sharing_default: str = "conditional"
    approval: Approval = Field(default_factory=Approval)


class Site(_Strict):
    name: str = "楚天云"
    regions: list[Region]
    clouds: list[ThemedCloud]
    flavors: list[Flavor]
    storage_classes: list[str] = Field(default_factory=lambda: ["ssd", "sata", "object"])
    # Images offered where no Glance is read (regions without `openstack_cloud`); an OpenStack
    # region's images are its public, active Glance images (the catalogue sync reads them).
    images: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")]] = Field(
        default_factory=lambda: ["kylin-v10", "uos-v20", "openeuler-22.03"]
    )

    def region(self, code: str) -> Region:
        return next(r for r in self.regions if r.code == code)


def _items(data: dict[str, Any], section: str) -> list[dict[str, Any]]:
    value = data.get(section)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _cross_checks(data: dict[str, Any]) -> list[str]:
    """Rules that span sections. Run on the raw document, so they are reported together with
    field errors instead of only after those are fixed."""
    problems: list[str] = []
    regions, clouds, flavors = _items(data, "regions"), _items(data, "clouds"), _items(data, "flavors")
    storage = data.get("storage_classes", ["ssd", "sata", "object"])
    flavor_names = {f.get("name") for f in flavors}
    region_codes = {r.get("code") for r in regions}
    for section, items, key in (
        ("regions", regions, "code"),
        ("clouds", clouds, "code"),
        ("flavors", flavors, "name"),
    ):
        seen: set[Any] = set()
        for i, item in enumerate(items):
            if item.get(key) in seen:
                problems.append(f"{section}[{i}].{key}: duplicate '{item.get(key)}'")
            seen.add(item.get(key))
    primaries = [r.get("code") for r in regions if r.get("primary")]
    if regions and len(primaries) != 1:
        problems.append(f"regions: exactly one region must be primary, found {primaries or 'none'}")
    if regions and not any(r.get("dr_site") for r in regions):
        problems.append("regions: at least one region must be a DR site (dr_site: true)")

    def unknown(values: Any, known: set[Any] | list[Any], path: str, what: str) -> None:
        for j, value in enumerate(values if isinstance(values, list) else []):
            if value not in known:
                problems.append(f"{path}[{j}]: unknown {what} '{value}'")

    for i, cloud in enumerate(clouds):
        unknown(cloud.get("allowed_flavors"), flavor_names, f"clouds[{i}].allowed_flavors", "flavor")
        unknown(cloud.get("allowed_storage"), storage, f"clouds[{i}].allowed_storage", "storage class")
        unknown(cloud.get("regions"), region_codes, f"clouds[{i}].regions", "region")
        raw_approval = cloud.get("approval")
        approval: dict[str, Any] = raw_approval if isinstance(raw_approval, dict) else {}
        for k, rule in enumerate(approval.get("auto") or []):
            for resource in (rule.get("max") or {}) if isinstance(rule, dict) else {}:
                if resource not in RESOURCES:
                    problems.append(f"clouds[{i}].approval.auto[{k}].max.{resource}: unknown resource")
        for resource in approval.get("operator_threshold") or {}:
            if resource not in RESOURCES:
                problems.append(f"clouds[{i}].approval.operator_threshold.{resource}: unknown resource")
    return problems


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def parse_site(data: Any, *, source: str = "site file") -> Site:
    """Validate a loaded YAML document; raise ConfigurationError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigurationError([f"{source}: top level must be a mapping"])
    problems: list[str] = []
    site: Site | None = None
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        problems += [f"{_loc(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
    problems += _cross_checks(data)
    if problems or site is None:
        raise ConfigurationError([f"{source}: {p}" for p in problems])
    return site


def default_site_text() -> str:
    return resources.files("controlplane.site").joinpath("default.yaml").read_text(encoding="utf-8")


def load_site(path: Path | None) -> Site:
    """Load the site file at `path`, or the shipped default."""
    if path is None:
        text, source = default_site_text(), "default site file"
    else:
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise ConfigurationError([f"site file {path}: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError([f"{source}: not valid YAML: {exc}"]) from None
    return parse_site(data, source=source)
