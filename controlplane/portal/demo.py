"""Demo requests for `chutian serve` on embedded defaults, so the portal's first screen has
something to decide: 江岸区 in the education cloud with a draft and a submitted request.

Made through the same services as a user would (allocations, requests, submit), as the
system principal; idempotent: does nothing once any request exists.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.engine import Engine

from controlplane.audit.chain import append_hook
from controlplane.auth.principal import system_principal
from controlplane.db.uow import unit_of_work
from controlplane.errors import DomainError
from controlplane.ledger.allocations import create_allocation
from controlplane.ledger.models import AllocationMode
from controlplane.requests import service, workflow
from controlplane.requests.models import Request
from controlplane.requests.schemas import RequestCreate

log = logging.getLogger(__name__)
CITY, COUNTY, CLOUD, REGION = "hubei.wuhan", "hubei.wuhan.jiangan", "education", "wuhan"
DECLARATION = {"items": [{"name": "学籍数据", "sharing": "unconditional", "catalogue_ref": "HB-EDU-0001"}]}


def seed_portal_demo(engine: Engine) -> int:
    """Returns how many demo requests it made (0 when the database already has requests)."""
    who = system_principal("demo")
    try:
        with unit_of_work(engine, principal=who, before_commit=[append_hook]) as uow:
            if uow.session.scalars(select(Request.id).limit(1)).first() is not None:
                return 0
            create_allocation(uow, CITY, CLOUD, REGION, AllocationMode.SHARED, {"vcpus": 64, "ram_mb": 131072})
            create_allocation(uow, COUNTY, CLOUD, REGION, AllocationMode.SLICE, {"vcpus": 16, "ram_mb": 32768})
            made = 0
            for title, count, submit in (("教学平台（草稿）", 1, False), ("学籍系统扩容", 2, True)):
                body = RequestCreate.model_validate(
                    {
                        "tenant": COUNTY,
                        "cloud": CLOUD,
                        "region": REGION,
                        "new_system": {"name": title, "mlps_level": 2},
                        "spec": {"kind": "vm", "flavor": "c2.medium", "image": "kylin-v10", "count": count},
                        "declaration": DECLARATION,
                        "title": title,
                    }
                )
                row, _ = service.create_request(uow, who, body)
                if submit:
                    workflow.submit(uow, who, row.id)
                made += 1
            return made
    except DomainError as exc:  # a site file without the education cloud or 江岸区: no demo, no failure
        log.info("portal demo requests skipped: %s", exc.detail)
        return 0
