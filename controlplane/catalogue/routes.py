"""Catalogue endpoints: regions (and their images), themed clouds and flavors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from controlplane.api.deps import PrincipalDep, UnitOfWorkDep
from controlplane.auth.policy import authorize
from controlplane.catalogue import service
from controlplane.catalogue.models import CloudRow, FlavorRow, RegionRow
from controlplane.catalogue.schemas import (
    CloudPatch,
    CloudPublic,
    FlavorPublic,
    ImagePublic,
    RegionPatch,
    RegionPublic,
)

router = APIRouter(prefix="/v1", tags=["catalogue"])

Code = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,19}$")]
FlavorName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9.-]{0,39}$")]


def region_public(row: RegionRow) -> RegionPublic:
    return RegionPublic.model_validate(
        {**row.spec, "source": row.source, "updated_at": row.updated_at, "version": row.version}
    )


def cloud_public(row: CloudRow) -> CloudPublic:
    return CloudPublic.model_validate(
        {**row.spec, "source": row.source, "updated_at": row.updated_at, "version": row.version}
    )


def flavor_public(row: FlavorRow) -> FlavorPublic:
    return FlavorPublic.model_validate(row, from_attributes=True)


@router.get("/regions", response_model=list[RegionPublic])
def list_regions(uow: UnitOfWorkDep, who: PrincipalDep) -> list[RegionPublic]:
    return [region_public(r) for r in service.regions(uow)]


@router.get("/regions/{region}", response_model=RegionPublic)
def get_region(region: Code, uow: UnitOfWorkDep, who: PrincipalDep) -> RegionPublic:
    return region_public(service.region(uow, region))


@router.get("/regions/{region}/images", response_model=list[ImagePublic])
def list_images(region: Code, uow: UnitOfWorkDep, who: PrincipalDep) -> list[ImagePublic]:
    """What a VM request in this region may name (site file, or the region's Glance once synced)."""
    service.region(uow, region)  # 404 for an unknown region
    return [ImagePublic.model_validate(row, from_attributes=True) for row in service.images(uow, region)]


@router.patch("/regions/{region}", response_model=RegionPublic)
def patch_region(region: Code, body: RegionPatch, uow: UnitOfWorkDep, who: PrincipalDep) -> RegionPublic:
    authorize(who, "catalogue.write", None)
    return region_public(service.patch_region(uow, region, body))


@router.get("/clouds", response_model=list[CloudPublic])
def list_clouds(uow: UnitOfWorkDep, who: PrincipalDep) -> list[CloudPublic]:
    return [cloud_public(r) for r in service.clouds(uow)]


@router.get("/clouds/{cloud}", response_model=CloudPublic)
def get_cloud(cloud: Code, uow: UnitOfWorkDep, who: PrincipalDep) -> CloudPublic:
    return cloud_public(service.cloud(uow, cloud))


@router.patch("/clouds/{cloud}", response_model=CloudPublic)
def patch_cloud(cloud: Code, body: CloudPatch, uow: UnitOfWorkDep, who: PrincipalDep) -> CloudPublic:
    authorize(who, "catalogue.write", None)
    return cloud_public(service.patch_cloud(uow, cloud, body))


@router.get("/flavors", response_model=list[FlavorPublic])
def list_flavors(uow: UnitOfWorkDep, who: PrincipalDep) -> list[FlavorPublic]:
    return [flavor_public(r) for r in service.flavors(uow)]


@router.get("/flavors/{flavor}", response_model=FlavorPublic)
def get_flavor(flavor: FlavorName, uow: UnitOfWorkDep, who: PrincipalDep) -> FlavorPublic:
    return flavor_public(service.flavor(uow, flavor))
