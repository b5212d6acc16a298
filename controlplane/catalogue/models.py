"""The catalogue as rows: seeded from the site file, editable by operators through the API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, Column, Integer, String
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
