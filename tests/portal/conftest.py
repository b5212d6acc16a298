"""Portal users: a TestClient logged in through /login (session cookie, CSRF from the page).

The world is the requests tests' one (education cloud, 江岸区 under 武汉市, 省教育厅 as the
lead department), plus a data owner (武汉市's approver) for conditional sharing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.engine import Engine

from tests.conftest import CREATED_SECRETS, grant_token
from tests.controlplane.ledger.helpers import allocate
from tests.controlplane.requests.conftest import CITY, CLOUD, COUNTY, REGION, SIBLING

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class PortalUser:
    client: TestClient
    subject: str
    token: str

    def get(self, url: str, **kwargs: Any) -> Response:
        return self.client.get(url, **kwargs)

    def csrf(self, url: str = "/") -> str:
        found = CSRF.search(self.client.get(url).text)
        assert found, f"no CSRF token on {url}"
        return found.group(1)

    def post(self, url: str, data: dict[str, str] | None = None, *, page: str = "/") -> Response:
        """POST a form as the browser would: with the CSRF token of a page it was shown."""
        return self.client.post(url, data={"csrf": self.csrf(page), **(data or {})}, follow_redirects=False)


def login(app: FastAPI, token: str, subject: str) -> PortalUser:
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    response = client.post("/login", data={"token": token, "next": "/"}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return PortalUser(client=client, subject=subject, token=token)


@pytest.fixture
def portal_as(app: FastAPI, engine: Engine) -> Iterator[Callable[..., PortalUser]]:
    users: list[PortalUser] = []

    def make(role: str, path: str, *more: tuple[str, str], subject: str | None = None) -> PortalUser:
        name = subject or f"{role}.{path}.{uuid.uuid4().hex[:6]}"
        token = grant_token(engine, name, [(role, path), *more])
        CREATED_SECRETS.append(token)
        user = login(app, token, name)
        users.append(user)
        return user

    yield make
    for user in users:
        user.client.__exit__(None, None, None)


@dataclass
class PortalWorld:
    clerk: PortalUser  # tenant-member of 江岸区
    county_admin: PortalUser
    lead_approver: PortalUser  # 省教育厅
    owner_approver: PortalUser  # 武汉市: the data owner for conditional sharing
    operator: PortalUser
    city_admin: PortalUser


@pytest.fixture
def portal_world(portal_as: Callable[..., PortalUser], engine: Engine) -> PortalWorld:
    allocate(engine, CITY, "shared", {"vcpus": 40, "ram_mb": 81920, "instances": 20}, cloud=CLOUD, region=REGION)
    allocate(engine, COUNTY, "shared", {"vcpus": 16}, cloud=CLOUD, region=REGION)
    allocate(engine, SIBLING, "shared", {}, cloud=CLOUD, region=REGION)
    return PortalWorld(
        clerk=portal_as("tenant-member", COUNTY, subject="clerk"),
        county_admin=portal_as("tenant-admin", COUNTY, subject="county-admin"),
        lead_approver=portal_as("approver", "hubei.jyt", subject="jyt-approver"),
        owner_approver=portal_as("approver", CITY, subject="wuhan-approver"),
        operator=portal_as("operator", "hubei", subject="ops"),
        city_admin=portal_as("tenant-admin", CITY, subject="city-admin"),
    )


def vm_form(count: int = 2, flavor: str = "c2.medium", **extra: str) -> dict[str, str]:
    return {
        "tenant": COUNTY,
        "cloud": CLOUD,
        "region": REGION,
        "new_system.name": f"sys-{uuid.uuid4().hex[:6]}",
        "new_system.mlps_level": "2",
        "spec.flavor": flavor,
        "spec.image": "kylin-v10",
        "spec.count": str(count),
        "decl.name": "学籍数据",
        "decl.sharing": "unconditional",
        "decl.catalogue_ref": "HB-EDU-0001",
        **extra,
    }
