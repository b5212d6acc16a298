"""Nothing a user sends produces a 500 or half-made state: odd forms and URLs on every page."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import Engine

from controlplane.portal.forms import FORM_KINDS
from tests.portal.conftest import PortalUser, PortalWorld, vm_form

ODD = ["", "x" * 5000, "a/b", "../..", "0", "-1", "١٢", "²", "null", "<script>alert(1)</script>", "' OR 1=1 --"]


def test_every_form_kind_renders_and_survives_odd_values(portal_world: PortalWorld, engine: Engine) -> None:
    clerk = portal_world.clerk
    for kind in FORM_KINDS:  # the API-only kinds have no form (tests/portal/test_removal_kinds.py)
        assert clerk.get(f"/requests/new/{kind}").status_code == 200, kind
        for value in ODD:
            fields = {**vm_form(), "spec.size_gb": value, "spec.count": value, "tenant": value, "region": value}
            fields |= {"new_system.mlps_level": value, "spec.target_region": value, "decl.sharing": value}
            response = clerk.post(f"/requests/new/{kind}", {**fields, "action": "submit"})
            assert response.status_code < 500, (kind, value, response.text[-500:])
            assert "<script>alert(1)</script>" not in response.text, "escaped"
            odd_url = clerk.get(f"/requests/new/{kind}", params={"tenant": value, "cloud": value, "region": value})
            assert odd_url.status_code < 500, (kind, value)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM requests")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM information_systems")).scalar() == 0, "no half-made system"


def test_odd_ids_and_queries_are_not_errors(portal_world: PortalWorld, portal_as: Callable[..., PortalUser]) -> None:
    admin = portal_as("platform-admin", "hubei")
    for value in ODD:
        for url in (f"/requests/{value}", f"/requests/{value}/progress", f"/requests/{value}/edit", "/requests/new/x"):
            assert admin.get(url).status_code in (404, 200), url
        assert admin.post(f"/requests/{value or 'x'}/approve", {"reason": value}).status_code == 404
        assert (
            admin.get("/requests", params={"tab": value, "state": value, "kind": value, "sort": value}).status_code
            == 200
        )
        assert admin.get("/ops", params={"lookup": value, "state": value}).status_code == 200
        assert admin.get("/audit", params={"actor": value, "action": value}).status_code == 200
        assert admin.get("/quotas", params={"region": value, "cloud": value}).status_code == 200
        limits = {"tenant": value, "cloud": value, "region": value, "resource": value, "limit": value}
        assert admin.post("/quotas/limits", limits, page="/quotas").status_code in (404, 409, 422)
