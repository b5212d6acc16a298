"""A control plane on a fresh PostgreSQL database whose Wuhan region is the local OpenStack box,
for the benchmarks that compare it with plain openstacksdk and the `openstack` CLI.

Requests go through the HTTP API in-process (authentication, validation, approvals) and their
operations are run by a pool of worker threads calling the same task function a Celery worker
runs (``operations.engine.run``), as a ``celery worker --pool=threads -c N`` would. The box
must be running (``scripts/openstack-box start``).
"""

from __future__ import annotations

import io
import os
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import openstack.connection
import yaml
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from openstack.config import loader
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine, make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controlplane.api.app import create_app
from controlplane.audit.chain import append_hook
from controlplane.auth import tokens
from controlplane.auth.models import PrincipalKind, RoleBinding
from controlplane.auth.principal import system_principal
from controlplane.bootstrap import seed_database
from controlplane.catalogue.tasks import sync_region
from controlplane.db.engine import make_engine
from controlplane.db.migrate import upgrade
from controlplane.db.uow import RecordingDispatcher, unit_of_work
from controlplane.ledger.allocations import create_allocation
from controlplane.ledger.models import AllocationMode
from controlplane.operations import engine as ops
from controlplane.requests import provisioning as _steps  # noqa: F401  (registers the steps)
from controlplane.settings import Settings
from controlplane.site_config import default_site_text, load_site
from controlplane.tenants.models import Tenant
from controlplane.worker.runtime import WorkerContext

REQUIRES_OPENSTACK_BOX = True  # scripts/test runs these in the box phase, not with the others
BOX_DIR = Path(os.environ.get("OPENSTACK_BOX_DIR", "/var/tmp/chutian-openstack-box"))  # noqa: S108 (the box's)
BOX_CLOUD, CLOUD, REGION, CITY = "chutian-box", "education", "wuhan", "hubei.wuhan"
DECLARATION = {"items": [{"name": "bench", "sharing": "unconditional", "catalogue_ref": "HB-BENCH-1"}]}


def box_admin() -> openstack.connection.Connection:
    config = loader.OpenStackConfig(
        config_files=[str(BOX_DIR / "clouds.yaml")], vendor_files=[], secure_files=[], load_envvars=False
    )
    return openstack.connection.Connection(config=config.get_one(cloud=BOX_CLOUD, api_timeout=60))


@dataclass
class ControlPlane:
    api: TestClient
    worker: WorkerContext
    engine: Engine
    image: str
    admin: openstack.connection.Connection

    def approved(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create, submit and approve (a platform admin decides every step); the request."""
        created = self.api.post("/v1/requests", json=body)
        assert created.status_code == 201, created.text
        current = self.api.post(f"/v1/requests/{created.json()['id']}:submit").json()
        while current["state"] == "pending_approval":
            current = self.api.post(f"/v1/requests/{current['id']}:approve").json()
        assert current["state"] == "provisioning", current
        return dict(current)

    def run_all(self, operations: list[str], workers: int) -> None:
        with ThreadPoolExecutor(workers) as pool:
            states = list(pool.map(lambda op: ops.run(self.worker, uuid.UUID(op)), operations))
        failed = [s for s in states if s != "succeeded"]
        assert not failed, failed

    def tenant(self, code: str) -> str:
        """A county below the city (not timed: it is not part of onboarding)."""
        body = {
            "parent": CITY,
            "code": code,
            "name_zh": f"基准县{code}",
            "name_en": f"Bench county {code}",
            "kind": "county",
            "credit_code": _credit_code(code),
        }
        created = self.api.post("/v1/tenants", json=body)
        assert created.status_code == 201, created.text
        return f"{CITY}.{code}"


def _credit_code(code: str) -> str:
    from controlplane.tenants.credit_code import make_credit_code

    return make_credit_code("11", "420100", f"BX{abs(hash(code)) % 10**7:07d}")


@contextmanager
def control_plane(base_url: str) -> Iterator[ControlPlane]:
    """Fresh database, box site, a platform-admin API client, a public image in the catalogue."""
    name = f"chutian_boxbench_{os.getpid()}"
    admin_db = create_engine(make_url(base_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin_db.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    admin = box_admin()
    image = admin.image.create_image(
        name=f"chutian-bench-{uuid.uuid4().hex[:6]}",
        data=io.BytesIO(b"\0" * 4096),
        disk_format="raw",
        container_format="bare",
        visibility="public",
    )
    try:
        with TemporaryDirectory(prefix="chutian-boxbench-") as tmp:
            site_data = yaml.safe_load(default_site_text())
            site_data["regions"][0]["openstack_cloud"] = BOX_CLOUD
            site_data["regions"][0]["baseline"] = False  # the box's fake servers have no address
            site_file = Path(tmp) / "site.yaml"
            site_file.write_text(yaml.safe_dump(site_data, allow_unicode=True))
            keys = Path(tmp) / "secret-keys"
            keys.write_text(Fernet.generate_key().decode() + "\n")
            keys.chmod(0o600)
            settings = Settings(
                database_url=url,
                broker_url="memory://",
                metrics_port=0,
                data_dir=Path(tmp),
                site_file=site_file,
                clouds_yaml=BOX_DIR / "clouds.yaml",
                secret_keys_file=keys,
            )
            upgrade(url)
            engine = make_engine(url, pool_size=20, max_overflow=10)
            site = load_site(site_file)
            seed_database(engine, site)
            with unit_of_work(engine, principal=system_principal("bench"), before_commit=[append_hook]) as uow:
                create_allocation(uow, CITY, CLOUD, REGION, AllocationMode.SHARED, {})
                province = uow.session.scalar(select(Tenant.id).where(Tenant.path == "hubei"))
                uow.session.add(
                    RoleBinding(
                        subject="bench",
                        role="platform-admin",
                        tenant_id=province,
                        created_by="bench",
                        created_at=uow.now(),
                    )
                )
                _, secret = tokens.mint(
                    uow,
                    subject="bench",
                    name="bench",
                    kind=PrincipalKind.USER,
                    created_by="bench",
                    ttl=timedelta(hours=2),
                )
            worker = WorkerContext(settings=settings, engine=engine, site=site)
            sync_region(worker, REGION)
            app = create_app(settings, engine=engine, site=site, dispatcher=RecordingDispatcher())
            with TestClient(app) as api:
                api.headers["Authorization"] = f"Bearer {secret}"
                yield ControlPlane(api=api, worker=worker, engine=engine, image=image.name, admin=admin)
            engine.dispose()
    finally:
        admin.image.delete_image(image, ignore_missing=True)
        with admin_db.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_db.dispose()


def onboarding_body(tenant: str, system: str) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "cloud": CLOUD,
        "region": REGION,
        "declaration": DECLARATION,
        "new_system": {"name": system, "mlps_level": 2},
        "spec": {"kind": "tenant-onboarding", "mode": "shared", "limits": {}},
    }


def scoped_as_admin(admin: openstack.connection.Connection, project: Any) -> openstack.connection.Connection:
    """A token scoped to ``project`` (what creating resources *in* it needs): admin role first."""
    admin.identity.assign_project_role_to_user(project, admin.current_user_id, admin.identity.find_role("admin"))
    return admin.connect_as_project({"id": project.id, "domain_id": project.domain_id})


def timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start
