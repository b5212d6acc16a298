"""`uvicorn --factory tests.portal.served_app:build`: the real app for browser tests, from
CHUTIAN_* variables, with jobs recorded instead of sent (the test runs operations itself)."""

from __future__ import annotations

from fastapi import FastAPI

from controlplane.api.app import create_app
from controlplane.db.uow import NullDispatcher
from controlplane.settings import Settings


def build() -> FastAPI:
    return create_app(Settings(), dispatcher=NullDispatcher())
