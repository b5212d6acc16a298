"""A department-and-city world in the education cloud (lead department 省教育厅, hubei.jyt)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from controlplane.db.uow import RecordingDispatcher
from controlplane.operations import engine as ops
from controlplane.settings import Settings
from controlplane.site_config import Site
from controlplane.worker.runtime import WorkerContext
from tests.controlplane.ledger.helpers import allocate

CLOUD, REGION = "education", "wuhan"
CITY, COUNTY, SIBLING = "hubei.wuhan", "hubei.wuhan.jiangan", "hubei.wuhan.jianghan"

DECLARATION = {"items": [{"name": "学籍数据", "sharing": "unconditional", "catalogue_ref": "HB-EDU-0001"}]}


@dataclass
class World:
    requester: TestClient  # tenant-member of the county
    county_admin: TestClient
    lead_approver: TestClient  # approver at 省教育厅
    operator: TestClient
    security: TestClient
    engine: Engine
    worker: WorkerContext

    def create(
        self,
        spec: dict[str, Any] | None = None,
        *,
        client: TestClient | None = None,
        new_system: dict[str, Any] | None = None,
        declaration: dict[str, Any] | None = DECLARATION,
        **extra: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "tenant": COUNTY,
            "cloud": CLOUD,
            "region": REGION,
            "spec": spec or {"kind": "vm", "flavor": "c2.medium", "image": "kylin-v10", "count": 2},
            **extra,
        }
        if "system" not in extra:
            body["new_system"] = new_system or {"name": f"sys-{len(self.requester.cookies) + _n()}", "mlps_level": 2}
        if declaration is not None:
            body["declaration"] = declaration
        response = (client or self.requester).post("/v1/requests", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def verb(self, client: TestClient, request_id: str, verb: str, reason: str | None = None) -> Any:
        return client.post(f"/v1/requests/{request_id}:{verb}", json={"reason": reason} if reason else {})

    def approve_all(self, request_id: str) -> dict[str, Any]:
        for approver in (self.county_admin, self.lead_approver, self.operator, self.security):
            current = self.requester.get(f"/v1/requests/{request_id}").json()
            if current["state"] != "pending_approval":
                break
            self.verb(approver, request_id, "approve")
        return self.requester.get(f"/v1/requests/{request_id}").json()

    def run_operation(self, op_id: str) -> str:
        import uuid

        return ops.run(self.worker, uuid.UUID(op_id))


_counter = iter(range(1_000_000))


def _n() -> int:
    return next(_counter)


@pytest.fixture
def world(api_as: Callable[..., TestClient], engine: Engine, settings: Settings, site: Site) -> World:
    return make_world(api_as, engine, settings, site)


def make_world(api_as: Callable[..., TestClient], engine: Engine, settings: Settings, site: Site) -> World:
    """The world without the fixture (other folders' tests build it too)."""
    allocate(engine, CITY, "shared", {"vcpus": 40, "ram_mb": 81920, "instances": 20}, cloud=CLOUD, region=REGION)
    allocate(engine, COUNTY, "shared", {"vcpus": 16}, cloud=CLOUD, region=REGION)
    allocate(engine, SIBLING, "shared", {}, cloud=CLOUD, region=REGION)
    return World(
        requester=api_as("tenant-member", COUNTY),
        county_admin=api_as("tenant-admin", COUNTY),
        lead_approver=api_as("approver", "hubei.jyt"),
        operator=api_as("operator", "hubei"),
        security=api_as("security-officer", "hubei"),
        engine=engine,
        worker=WorkerContext(settings=settings, engine=engine, site=site, dispatcher=RecordingDispatcher()),
    )
