"""The catalogue as rows: seeded from the site file, editable by operators through the API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Integer, String
from sqlmodel import Field, SQLModel

from controlplane.db.types import state_check, state_field, ts_field
from controlplane.db.types_json import JSONType


class CatalogueSource(StrEnum):
    SITE = "site"  # follows the site file on every start
    API = "api"  # edited by an operator: the site file no longer overwrites it


class RegionRow(SQLModel, table=True):
    __tablename__ = "regions"
    __table_args__ = (state_check("source", CatalogueSource, name="source_valid"),)

    code: str = Field(sa_column=Column(String(20), primary_key=True))
    primary: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    dr_site: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    spec: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    source: str = state_field(CatalogueSource, default=CatalogueSource.SITE, name="source")
    updated_at: datetime = ts_field()
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))


class CloudRow(SQLModel, table=True):
    __tablename__ = "themed_clouds"
    __table_args__ = (state_check("source", CatalogueSource, name="source_valid"),)

    code: str = Field(sa_column=Column(String(20), primary_key=True))
    spec: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    source: str = state_field(CatalogueSource, default=CatalogueSource.SITE, name="source")
    updated_at: datetime = ts_field()
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))


class FlavorRow(SQLModel, table=True):
    __tablename__ = "flavors"
    __table_args__ = (state_check("source", CatalogueSource, name="source_valid"),)

    name: str = Field(sa_column=Column(String(40), primary_key=True))
    vcpus: int = Field(sa_column=Column(Integer, nullable=False))
    ram_mb: int = Field(sa_column=Column(Integer, nullable=False))
    disk_gb: int = Field(sa_column=Column(Integer, nullable=False))
    source: str = state_field(CatalogueSource, default=CatalogueSource.SITE, name="source")
    updated_at: datetime = ts_field()


class ImageSource(StrEnum):
    SITE = "site"  # the site file's list, for regions without an OpenStack cloud
    GLANCE = "glance"  # read from the region's Glance by the catalogue sync


class ImageRow(SQLModel, table=True):
    """What a VM request may name as its image, per region (refused at submit otherwise)."""

    __tablename__ = "catalogue_images"
    __table_args__ = (state_check("source", ImageSource, name="source_valid"),)

    region: str = Field(sa_column=Column(String(20), primary_key=True))
    name: str = Field(sa_column=Column(String(200), primary_key=True))
    image_id: str | None = Field(default=None, sa_column=Column(String(64)))
    disk_format: str = Field(default="", sa_column=Column(String(20), nullable=False))
    min_disk_gb: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    min_ram_mb: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    size_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    source: str = state_field(ImageSource, default=ImageSource.SITE, name="source")
    seen_at: datetime = ts_field()
