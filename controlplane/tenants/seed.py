"""Seeds the real organisation tree on first start (only when the tenant table is empty)."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

import yaml
from sqlalchemy import func, select

from controlplane.db.uow import UnitOfWork
from controlplane.tenants.credit_code import ALPHABET, make_credit_code
from controlplane.tenants.models import Tenant, TenantKind, TenantStatus


def synthetic_org_code(path: str) -> str:
    """A stable 9-character organisation code derived from the path (seed data only)."""
    digest = hashlib.sha256(path.encode()).digest()
    return "MB" + "".join(ALPHABET[b % 31] for b in digest[:7])


def _row(parent: Tenant | None, item: dict[str, Any], kind: TenantKind, division: str, uow: UnitOfWork) -> Tenant:
    path = f"{parent.path}.{item['code']}" if parent else item["code"]
    authority = "11"  # 机构编制 / 机关
    return Tenant(
        parent_id=parent.id if parent else None,
        code=item["code"],
        path=path,
        depth=path.count("."),
        name_zh=item["name_zh"],
        name_en=item["name_en"],
        kind=kind.value,
        credit_code=make_credit_code(authority, division, synthetic_org_code(path)),
        mlps_ceiling=min(item.get("mlps", parent.mlps_ceiling if parent else 4), parent.mlps_ceiling if parent else 4),
        network_zone=item.get("zone", parent.network_zone if parent else item.get("network_zone", "egov-extranet")),
        dr_link_mbps=item.get("dr", 100),
        status=TenantStatus.ACTIVE.value,
        created_at=uow.now(),
        updated_at=uow.now(),
    )


def seed_org_tree(uow: UnitOfWork) -> int:
    """Insert the tree if no tenant exists yet; returns how many rows were added."""
    if uow.session.scalar(select(func.count()).select_from(Tenant)):
        return 0
    data = yaml.safe_load(resources.files("controlplane.demo").joinpath("org_tree.yaml").read_text("utf-8"))
    province = _row(None, data["province"], TenantKind.PROVINCE, data["province"]["division"], uow)
    province.mlps_ceiling = data["province"]["mlps_ceiling"]
    rows = [province]
    for dept in data["departments"]:
        rows.append(_row(province, dept, TenantKind.DEPARTMENT, "420000", uow))
    for city in data["cities"]:
        city_row = _row(province, {"mlps": 3, **city}, TenantKind.CITY, city["division"], uow)
        rows.append(city_row)
        for child in city.get("below", []):
            rows.append(_row(city_row, child, TenantKind(child["kind"]), child["division"], uow))
    uow.session.add_all(rows)
    uow.session.flush()
    return len(rows)
