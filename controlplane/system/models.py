"""Liveness rows written by the worker and read at scrape time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Integer, String
from sqlmodel import Field, SQLModel

from controlplane.db.types import ts_field


class WorkerHeartbeat(SQLModel, table=True):
    __tablename__ = "worker_heartbeats"

    queue: str = Field(sa_column=Column(String(80), primary_key=True))
    hostname: str = Field(sa_column=Column(String(200), primary_key=True))
    pid: int = Field(sa_column=Column(Integer, nullable=False))
    last_seen: datetime = ts_field(index=True)
