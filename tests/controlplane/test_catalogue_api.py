"""Catalogue reads and operator edits; edits survive a restart's re-sync from the site file."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from controlplane.catalogue.service import sync_from_site
from controlplane.db.uow import unit_of_work
from controlplane.site_config import Site
from tests.controlplane.helpers import assert_problem


def test_regions_clouds_and_flavors_come_from_the_site_file(client: TestClient) -> None:
    regions = client.get("/v1/regions").json()
    assert [r["code"] for r in regions] == ["wuhan", "xiangyang", "yichang"]
    wuhan = client.get("/v1/regions/wuhan").json()
    assert wuhan["primary"] is True and wuhan["mlps_assessed"] == [2, 3, 4]
    assert wuhan["external_networks"]["egov-extranet"] == "ext-egov"
    assert client.get("/v1/regions/yichang").json()["dr_site"] is True
    clouds = client.get("/v1/clouds").json()
    assert len(clouds) == 10
    industry = client.get("/v1/clouds/industry").json()
    assert industry["name_zh"] == "工业云" and industry["class"] == "industry"
    assert industry["lead_department"] == "jxw"
    assert client.get("/v1/clouds/sunshine").json()["name_zh"] == "阳光权力云"
    flavors = client.get("/v1/flavors").json()
    assert {"name": "c2.medium", "vcpus": 2, "ram_mb": 4096, "disk_gb": 40}.items() <= next(
        f for f in flavors if f["name"] == "c2.medium"
    ).items()


def test_unknown_catalogue_items_are_404(client: TestClient) -> None:
    assert_problem(client.get("/v1/regions/beijing"), 404)
    assert_problem(client.get("/v1/clouds/space"), 404)
    assert_problem(client.get("/v1/flavors/x99.huge"), 404)
    assert_problem(client.get("/v1/clouds/NOT_A_CODE"), 422)


def test_operator_edit_persists_and_survives_resync(client: TestClient, engine: Engine, site: Site) -> None:
    response = client.patch("/v1/clouds/education", json={"allowed_flavors": ["c1.small"], "default_mlps": 3})
    assert response.status_code == 200, response.text
    assert response.json()["source"] == "api" and response.json()["version"] == 2
    with unit_of_work(engine) as uow:
        sync_from_site(uow, site)  # what every start does
    education = client.get("/v1/clouds/education").json()
    assert education["allowed_flavors"] == ["c1.small"] and education["default_mlps"] == 3


def test_edit_with_unknown_flavor_or_region_is_422_and_changes_nothing(client: TestClient) -> None:
    before = client.get("/v1/clouds/industry").json()
    problem = assert_problem(client.patch("/v1/clouds/industry", json={"allowed_flavors": ["c1.small", "zz.9"]}), 422)
    assert problem["field"] == "allowed_flavors[1]"
    assert assert_problem(client.patch("/v1/clouds/industry", json={"regions": ["mars"]}), 422)["field"] == "regions[0]"
    assert assert_problem(client.patch("/v1/clouds/industry", json={"default_mlps": 7}), 422)["field"] == "default_mlps"
    assert client.get("/v1/clouds/industry").json() == before


def test_region_capacity_edit_validates_resources(client: TestClient) -> None:
    problem = assert_problem(client.patch("/v1/regions/xiangyang", json={"capacity": {"gpus": 8}}), 422)
    assert problem["field"] == "capacity.gpus"
    ok = client.patch("/v1/regions/xiangyang", json={"capacity": {"vcpus": 9000}})
    assert ok.status_code == 200 and ok.json()["capacity"]["vcpus"] == 9000


def test_a_region_lists_its_images_and_a_vm_naming_another_is_refused(client: TestClient) -> None:
    images = client.get("/v1/regions/wuhan/images")
    assert images.status_code == 200
    assert [(i["name"], i["source"]) for i in images.json()] == [
        ("kylin-v10", "site"),
        ("openeuler-22.03", "site"),
        ("uos-v20", "site"),
    ]
    assert client.get("/v1/regions/nowhere/images").status_code == 404

    body = {
        "tenant": "hubei.wuhan",
        "cloud": "egov",
        "region": "wuhan",
        "new_system": {"name": "image-check", "mlps_level": 2},
        "declaration": {"items": [{"name": "x", "sharing": "unconditional", "catalogue_ref": "HB-1"}]},
        "spec": {"kind": "vm", "flavor": "c2.medium", "image": "windows-xp", "count": 1},
    }
    refused = client.post("/v1/requests", json=body)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["field"] == "spec.image"
    assert "windows-xp" in problem["detail"] and "kylin-v10" in problem["detail"]


def test_glance_sync_replaces_a_regions_images_and_is_audited(engine: Engine) -> None:
    from controlplane.audit.chain import append_hook
    from controlplane.catalogue import service
    from controlplane.db.uow import unit_of_work
    from provisioners.base import ImageRef

    found = [
        ImageRef("id-1", "kylin-v10-sp3", "qcow2", 20, 1024, 10**9),
        ImageRef("id-2", "kylin-v10-sp3", "raw", 20, 1024, 10**9),  # a duplicate name: the first wins
        ImageRef("id-3", "uos-v20", "qcow2", 20, 1024, 10**9),
    ]
    with unit_of_work(engine, before_commit=[append_hook]) as uow:
        changed = service.sync_glance_images(uow, "xiangyang", found)
    assert changed == {"added": ["kylin-v10-sp3"], "removed": ["kylin-v10", "openeuler-22.03"]}
    with unit_of_work(engine, readonly=True) as uow:
        rows = {r.name: (r.image_id, r.source) for r in service.images(uow, "xiangyang")}
        other = [r.name for r in service.images(uow, "wuhan")]
        event = uow.session.execute(
            text("SELECT target, action FROM audit_events WHERE action = 'catalogue.images-sync'")
        ).one()
    assert rows == {"kylin-v10-sp3": ("id-1", "glance"), "uos-v20": ("id-3", "glance")}
    assert other == ["kylin-v10", "openeuler-22.03", "uos-v20"], "other regions are untouched"
    assert tuple(event) == ("xiangyang", "catalogue.images-sync")
