"""The portal lists and shows the API-only kinds (volume backup, deletion, allocation
retirement) and the `retired` state with their labels, and offers no form for them."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from controlplane.settings import Settings
from controlplane.site_config import Site
from tests.controlplane.requests.conftest import COUNTY, make_world
from tests.controlplane.requests.test_removals import VOLUME, acting_on, fulfilled
from tests.portal.conftest import PortalUser


def test_list_and_detail_pages_show_the_removal_kinds(
    api_as: Callable[..., TestClient],
    engine: Engine,
    settings: Settings,
    site: Site,
    portal_as: Callable[..., PortalUser],
) -> None:
    world = make_world(api_as, engine, settings, site)
    volume = fulfilled(world, VOLUME)
    backup = fulfilled(world, {"kind": "volume-backup", "volume": volume["id"], "name": "p1"}, system=None)
    deletion = fulfilled(world, {"kind": "deletion", "target": backup["id"]}, system=None, declaration=None)
    retirement = world.create({"kind": "allocation-retirement"}, system=volume["system"], declaration=None)
    pending = acting_on(world, "deletion", volume["id"])
    world.verb(world.requester, pending["id"], "submit")

    clerk = portal_as("tenant-member", COUNTY)
    listed = clerk.get("/requests?tab=all")
    assert listed.status_code == 200
    for label in ("云硬盘备份", "资源删除", "资源分配退出", "已删除"):
        assert label in listed.text, label
    assert clerk.get("/requests?tab=all&kind=deletion").status_code == 200
    for req, heading in (
        (backup, '云硬盘备份 <span class="badge">已删除</span>'),
        (deletion, '资源删除 <span class="badge">已完成</span>'),
        (retirement, '资源分配退出 <span class="badge">草稿</span>'),
        (pending, '资源删除 <span class="badge">审批中</span>'),
    ):
        page = clerk.get(f"/requests/{req['id']}")
        assert page.status_code == 200 and heading in page.text, (heading, page.text[:600])
    admin = portal_as("tenant-admin", COUNTY)
    assert "资源删除" in admin.get("/").text, "the deletion waits in the county admin's inbox"
    assert admin.get(f"/requests/{pending['id']}").status_code == 200
    catalogue = clerk.get("/catalogue").text
    assert "/requests/new/deletion" not in catalogue and "/requests/new/volume" in catalogue
    assert clerk.get("/requests/new/deletion").status_code == 404
    assert clerk.get(f"/requests/{retirement['id']}/edit").status_code == 200
