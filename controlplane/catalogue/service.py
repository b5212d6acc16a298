"""Catalogue use cases: seed from the site file, read, and operator edits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import select

from controlplane.audit.record import AuditRecord
from controlplane.catalogue.models import CatalogueSource, CloudRow, FlavorRow, ImageRow, ImageSource, RegionRow
from controlplane.catalogue.schemas import CloudPatch, RegionPatch, merged
from controlplane.db.uow import UnitOfWork
from controlplane.errors import NotFound, ValidationFailed
from controlplane.site_config import RESOURCES, Region, Site, ThemedCloud

T = TypeVar("T")


def sync_from_site(uow: UnitOfWork, site: Site) -> dict[str, int]:
    """Insert what is missing; follow the site file for rows it still owns (source=site).
    Rows an operator edited (source=api) are left alone, so a restart never undoes an edit."""
    now = uow.now()
    counts = {"inserted": 0, "updated": 0}
    for region in site.regions:
        spec = region.model_dump(mode="json")
        row = uow.session.get(RegionRow, region.code)
        if row is None:
            uow.session.add(
                RegionRow(
                    code=region.code,
                    primary=region.primary,
                    dr_site=region.dr_site,
                    spec=spec,
                    updated_at=now,
                )
            )
            counts["inserted"] += 1
        elif row.source == CatalogueSource.SITE and row.spec != spec:
            row.spec, row.primary, row.dr_site, row.updated_at = spec, region.primary, region.dr_site, now
            row.version += 1
            counts["updated"] += 1
    for cloud in site.clouds:
        spec = cloud.model_dump(mode="json", by_alias=True)
        crow = uow.session.get(CloudRow, cloud.code)
        if crow is None:
            uow.session.add(CloudRow(code=cloud.code, spec=spec, updated_at=now))
            counts["inserted"] += 1
        elif crow.source == CatalogueSource.SITE and crow.spec != spec:
            crow.spec, crow.updated_at = spec, now
            crow.version += 1
            counts["updated"] += 1
    for flavor in site.flavors:
        frow = uow.session.get(FlavorRow, flavor.name)
        if frow is None:
            uow.session.add(FlavorRow(**flavor.model_dump(), updated_at=now))
            counts["inserted"] += 1
    for region in site.regions:
        if not region.openstack_cloud:  # an OpenStack region's images are its Glance's
            changed = _replace_images(uow, region.code, {name: {} for name in site.images}, ImageSource.SITE)
            counts["inserted"] += len(changed["added"])
    uow.session.flush()
    return counts


def images(uow: UnitOfWork, region: str) -> Sequence[ImageRow]:
    return _cached(
        uow,
        f"catalogue.images.{region}",
        lambda: list(uow.session.scalars(select(ImageRow).where(ImageRow.region == region).order_by(ImageRow.name))),
    )


def _replace_images(
    uow: UnitOfWork, region: str, wanted: dict[str, dict[str, Any]], source: ImageSource
) -> dict[str, list[str]]:
    """Make the region's images exactly ``wanted`` (name -> details); returns what changed."""
    now = uow.now()
    current = {row.name: row for row in uow.session.scalars(select(ImageRow).where(ImageRow.region == region))}
    added = sorted(set(wanted) - set(current))
    removed = sorted(set(current) - set(wanted))
    for name in removed:
        uow.session.delete(current[name])
    for name, details in wanted.items():
        row = current.get(name)
        if row is None:
            uow.session.add(ImageRow(region=region, name=name, source=source, seen_at=now, **details))
        else:
            for field_name, value in {**details, "source": source.value, "seen_at": now}.items():
                setattr(row, field_name, value)
    uow.cache.pop(f"catalogue.images.{region}", None)
    return {"added": added, "removed": removed}


def sync_glance_images(uow: UnitOfWork, region: str, found: Sequence[Any]) -> dict[str, list[str]]:
    """The region's catalogue becomes its public, active Glance images (``ImageRef``s); the
    first of two images with one name wins (Glance allows duplicates; a request names one)."""
    wanted: dict[str, dict[str, Any]] = {}
    for ref in found:
        wanted.setdefault(
            ref.name,
            {
                "image_id": ref.id,
                "disk_format": ref.disk_format,
                "min_disk_gb": ref.min_disk_gb,
                "min_ram_mb": ref.min_ram_mb,
                "size_bytes": ref.size_bytes,
            },
        )
    changed = _replace_images(uow, region, wanted, ImageSource.GLANCE)
    if changed["added"] or changed["removed"]:
        uow.audit(AuditRecord("catalogue.images-sync", "region", region, extra=dict(changed)))
    return changed


def _cached(uow: UnitOfWork, key: str, load: Callable[[], T]) -> T:
    """Catalogue rows are read several times per request; read them once per unit of work."""
    if key not in uow.cache:
        uow.cache[key] = load()
    value: T = uow.cache[key]
    return value


def regions(uow: UnitOfWork) -> Sequence[RegionRow]:
    return _cached(
        uow, "catalogue.regions", lambda: list(uow.session.scalars(select(RegionRow).order_by(RegionRow.code)))
    )


def region(uow: UnitOfWork, code: str, *, for_update: bool = False) -> RegionRow:
    if not for_update:
        found = next((r for r in regions(uow) if r.code == code), None)
        if found is None:
            raise NotFound(f"region '{code}' not found", region=code)
        return found
    stmt = select(RegionRow).where(RegionRow.code == code)
    row = uow.session.scalars(stmt.with_for_update() if for_update else stmt).first()
    if row is None:
        raise NotFound(f"region '{code}' not found", region=code)
    return row


def clouds(uow: UnitOfWork) -> Sequence[CloudRow]:
    return list(uow.session.scalars(select(CloudRow).order_by(CloudRow.code)))


def cloud(uow: UnitOfWork, code: str, *, for_update: bool = False) -> CloudRow:
    if not for_update:
        found = _cached(
            uow,
            f"catalogue.cloud.{code}",
            lambda: uow.session.scalars(select(CloudRow).where(CloudRow.code == code)).first(),
        )
        if found is None:
            raise NotFound(f"themed cloud '{code}' not found", cloud=code)
        return found
    stmt = select(CloudRow).where(CloudRow.code == code)
    row = uow.session.scalars(stmt.with_for_update() if for_update else stmt).first()
    if row is None:
        raise NotFound(f"themed cloud '{code}' not found", cloud=code)
    return row


def flavors(uow: UnitOfWork) -> Sequence[FlavorRow]:
    return _cached(
        uow,
        "catalogue.flavors",
        lambda: list(
            uow.session.scalars(select(FlavorRow).order_by(FlavorRow.vcpus, FlavorRow.ram_mb, FlavorRow.name))
        ),
    )


def flavor(uow: UnitOfWork, name: str) -> FlavorRow:
    row = uow.session.get(FlavorRow, name)
    if row is None:
        raise NotFound(f"flavor '{name}' not found", flavor=name)
    return row


def _validated(model: type[Region] | type[ThemedCloud], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ValidationFailed(f"{field}: {first['msg']}", field=field) from None


def patch_region(uow: UnitOfWork, code: str, patch: RegionPatch) -> RegionRow:
    row = region(uow, code, for_update=True)
    for resource in list((patch.capacity or {}).keys()) + list((patch.overcommit or {}).keys()):
        if resource not in RESOURCES:
            raise ValidationFailed(f"unknown resource '{resource}'", field=f"capacity.{resource}")
    before = dict(row.spec)
    spec = _validated(Region, merged(row.spec, patch)).model_dump(mode="json")
    row.spec, row.source, row.updated_at = spec, CatalogueSource.API.value, uow.now()
    row.version += 1
    uow.session.flush()
    uow.audit(AuditRecord("region.update", "region", code, before=before, after=spec))
    return row


def patch_cloud(uow: UnitOfWork, code: str, patch: CloudPatch) -> CloudRow:
    row = cloud(uow, code, for_update=True)
    known_flavors = {f.name for f in flavors(uow)}
    for i, name in enumerate(patch.allowed_flavors or []):
        if name not in known_flavors:
            raise ValidationFailed(f"unknown flavor '{name}'", field=f"allowed_flavors[{i}]")
    known_regions = {r.code for r in regions(uow)}
    for i, name in enumerate(patch.regions or []):
        if name not in known_regions:
            raise ValidationFailed(f"unknown region '{name}'", field=f"regions[{i}]")
    before = dict(row.spec)
    spec = _validated(ThemedCloud, merged(row.spec, patch)).model_dump(mode="json", by_alias=True)
    row.spec, row.source, row.updated_at = spec, CatalogueSource.API.value, uow.now()
    row.version += 1
    uow.session.flush()
    uow.audit(AuditRecord("cloud.update", "themed_cloud", code, before=before, after=spec))
    return row
