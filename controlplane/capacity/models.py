"""What each region's backend measured last: capacity after overcommit and what it has allocated."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, String
from sqlmodel import Field, SQLModel

from controlplane.db.types import ts_field


class CapacitySample(SQLModel, table=True):
    __tablename__ = "capacity_samples"

    region: str = Field(sa_column=Column(String(20), primary_key=True))
    resource: str = Field(sa_column=Column(String(40), primary_key=True))
    total: int = Field(sa_column=Column(BigInteger, nullable=False))
    allocated: int = Field(sa_column=Column(BigInteger, nullable=False))
    source: str = Field(sa_column=Column(String(40), nullable=False))
    measured_at: datetime = ts_field()
