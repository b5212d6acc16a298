"""Buckets on the box's Swift (scripts/swift-box --auth keystone, registered in the box's Keystone).

What the provisioner and the control plane make is read back as the box admin, who holds
keystoneauth's reseller-admin role and so can read any project's account. Every test works in
a domain and project of its own (`hubei.sw<run>`), so runs never meet each other's leftovers.
The Swift proxy checks quotas against its cached view of a container's usage (refreshed by a
HEAD or GET of the container, else every 60 s): tests HEAD the container before the write that
must be refused, as a client that just filled it would see it.
"""

from __future__ import annotations

import http.client
import io
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import openstack.connection
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from controlplane.api.app import create_app
from controlplane.db.uow import RecordingDispatcher
from controlplane.operations import engine as ops
from controlplane.settings import Settings
from controlplane.worker.runtime import WorkerContext
from provisioners.base import BucketRef, ObjectStoreBackend, ProjectRef, ProjectTags
from provisioners.errors import BackendAuthError, BackendQuotaExceeded, ResourceConflict
from provisioners.openstack import (
    CloudConfig,
    OpenStackProvisioner,
    OpenStackSettings,
    domain_name,
    project_name,
    quota_bytes,
    translated,
)
from provisioners.openstack.object_store import QUOTA_HEADER, TAG_HEADER
from tests.conftest import grant_token
from tests.controlplane.helpers import new_tenant
from tests.controlplane.ledger.helpers import allocate, node
from tests.integration.openstack.conftest import BOX_DIR, CLOUD, SwiftAdmin, box_site
from tests.integration.openstack.test_requests_on_openstack import DECLARATION, provisioned

Conn = openstack.connection.Connection
REGION, CLOUD_CODE = "wuhan", "education"
FAST = OpenStackSettings(poll_interval_s=0.5, delete_timeout_s=60)


@pytest.fixture(scope="module")
def provisioner() -> Iterator[OpenStackProvisioner]:
    made = OpenStackProvisioner.from_config(
        CloudConfig(region=REGION, clouds_yaml=BOX_DIR / "clouds.yaml", cloud=CLOUD), FAST
    )
    yield made
    made.close()


def _new_project(provisioner: OpenStackProvisioner) -> ProjectRef:
    """A project in a domain of its own (`hubei.sw<run>`)."""
    city = f"hubei.sw{uuid.uuid4().hex[:8]}"
    domain = provisioner.ensure_domain(domain_name(city))
    return provisioner.ensure_project(domain, project_name(city, CLOUD_CODE), ProjectTags(city, CLOUD_CODE, 2))


@pytest.fixture(scope="module")
def project(provisioner: OpenStackProvisioner, swift: SwiftAdmin) -> Iterator[ProjectRef]:
    """Shared by the tests that only add to its account (each with tags of its own); retired
    (containers and all) after the module."""
    made = _new_project(provisioner)
    yield made
    provisioner.retire_project(made)


@pytest.fixture
def own_project(provisioner: OpenStackProvisioner, swift: SwiftAdmin) -> Iterator[ProjectRef]:
    """For a test that needs the whole account to itself."""
    made = _new_project(provisioner)
    yield made
    provisioner.retire_project(made)


def test_provisioner_satisfies_the_object_store_protocol(provisioner: OpenStackProvisioner) -> None:
    assert isinstance(provisioner, ObjectStoreBackend)


def test_a_bucket_is_one_container_in_the_project_account_carrying_its_quota(
    provisioner: OpenStackProvisioner, project: ProjectRef, swift: SwiftAdmin
) -> None:
    before = set(swift.containers(project.id))
    first = provisioner.ensure_bucket(project, "req-a-0", 4096)
    again = provisioner.ensure_bucket(project, "req-a-0", 4096)
    assert first == again == BucketRef("req-a-0", "req-a-0", project.id, 4096, 0, 0)
    seen = swift.head(project.id, "req-a-0")
    assert seen.status_code == 204
    assert (seen.headers[QUOTA_HEADER], seen.headers[TAG_HEADER]) == ("4096", "req-a-0")
    assert set(swift.containers(project.id)) - before == {"req-a-0"}, "one container, however often ensured"

    # a first attempt that died between creating the container and setting its quota: the retry
    # finds that container by name and tag and sets the quota, making no second one
    put = swift.conn.object_store.put(swift.url(project.id, "logs"), headers={TAG_HEADER: "req-b-0"}, raise_exc=False)
    assert put.status_code == 201
    named = provisioner.ensure_bucket(project, "req-b-0", quota_bytes(1), name="logs")
    assert (named.name, named.quota_bytes) == ("logs", 1024**3)
    assert swift.head(project.id, "logs").headers[QUOTA_HEADER] == str(1024**3)
    assert set(swift.containers(project.id)) - before == {"logs", "req-a-0"}

    # a container of that name that another request (or the tenant) made is never adopted
    with pytest.raises(ResourceConflict, match="not this request's"):
        provisioner.ensure_bucket(project, "req-c-0", 4096, name="logs")
    assert provisioner.find_bucket(project, "req-c-0", name="logs") is None


def test_writes_up_to_the_quota_succeed_and_one_beyond_is_refused(
    provisioner: OpenStackProvisioner, project: ProjectRef, swift: SwiftAdmin
) -> None:
    provisioner.ensure_bucket(project, "req-q-0", 4096)
    tenant = provisioner.scoped(project).object_store  # a user with `member` on the project
    for name, size in (("a", 1024), ("b", 1024), ("c", 2048)):
        assert tenant.put(f"/req-q-0/{name}", data=b"x" * size, raise_exc=False).status_code == 201
    used = provisioner.find_bucket(project, "req-q-0")  # a HEAD: also refreshes the proxy's view
    assert used is not None and (used.bytes_used, used.object_count) == (4096, 3)

    refused = tenant.put("/req-q-0/d", data=b"x", raise_exc=False)
    assert (refused.status_code, refused.text) == (413, "Upload exceeds quota.")
    with pytest.raises(BackendQuotaExceeded, match="413"), translated("openstack:wuhan"):
        openstack.exceptions.raise_from_response(refused)
    assert int(swift.head(project.id, "req-q-0").headers["X-Container-Bytes-Used"]) == 4096


def test_delete_bucket_deletes_its_objects_then_the_container(
    provisioner: OpenStackProvisioner, project: ProjectRef, swift: SwiftAdmin
) -> None:
    provisioner.ensure_bucket(project, "req-d-0", 4096)
    tenant = provisioner.scoped(project).object_store
    for name in ("a", "dir/b"):
        assert tenant.put(f"/req-d-0/{urllib.parse.quote(name)}", data=b"x", raise_exc=False).status_code == 201
    assert provisioner.delete_bucket(project, "req-d-0") is True
    assert swift.head(project.id, "req-d-0").status_code == 404
    assert provisioner.delete_bucket(project, "req-d-0") is False


def test_retiring_the_project_leaves_no_container(
    provisioner: OpenStackProvisioner, own_project: ProjectRef, swift: SwiftAdmin
) -> None:
    project = own_project
    provisioner.ensure_bucket(project, "req-r-0", 4096)
    provisioner.ensure_bucket(project, "req-r-1", 4096)
    tenant = provisioner.scoped(project).object_store
    assert tenant.put("/req-r-0/kept", data=b"x" * 100, raise_exc=False).status_code == 201
    # one the tenant made outside the control plane goes too
    assert tenant.put("/made-by-hand", raise_exc=False).status_code == 201
    assert tenant.put("/made-by-hand/file", data=b"y", raise_exc=False).status_code == 201

    report = provisioner.retire_project(project)
    assert report.project_deleted and report.deleted.get("buckets") == 3, report
    assert swift.containers(project.id) == []
    assert provisioner.retire_project(project).deleted == {}


def test_swift_auth_failures_are_backend_auth_errors(
    provisioner: OpenStackProvisioner, project: ProjectRef, box_admin: Conn
) -> None:
    # 403: keystoneauth refuses a user whose only role on the project is `reader` (not an operator role)
    password = uuid.uuid4().hex
    user = box_admin.identity.create_user(
        name=f"chutian-test-reader-{uuid.uuid4().hex[:6]}", password=password, domain_id=project.domain_id
    )
    reader = box_admin.identity.find_role("reader")
    box_admin.identity.assign_project_role_to_user(project.id, user, reader)
    reader_conn = openstack.connect(
        auth={
            "auth_url": box_admin.config.config["auth"]["auth_url"],
            "username": user.name,
            "password": password,
            "user_domain_id": project.domain_id,
            "project_id": project.id,
        },
        region_name=REGION,
        load_yaml_config=False,
        load_envvars=False,
    )
    try:
        as_reader = OpenStackProvisioner(reader_conn, region=REGION, settings=FAST)
        with pytest.raises(BackendAuthError, match="403"):
            as_reader.ensure_bucket(project, "req-x-0", 4096)
        assert provisioner.find_bucket(project, "req-x-0") is None, "nothing was made"
    finally:
        reader_conn.close()
        box_admin.identity.delete_user(user)

    # 401: Swift's authtoken refuses a token Keystone never issued
    swift_api = provisioner.scoped(project).object_store
    answer = swift_api.head("", authenticated=False, headers={"X-Auth-Token": "not-a-token"}, raise_exc=False)
    with pytest.raises(BackendAuthError, match="401"), translated("openstack:wuhan"):
        openstack.exceptions.raise_from_response(answer)


# ------------------------------------------------------------------ through the control plane


@pytest.fixture
def city_world(
    settings: Settings, engine: Engine, tmp_path: Path, box_admin: Conn, swift: SwiftAdmin
) -> Iterator[dict[str, Any]]:
    """A city and a county of their own (`hubei.sw<run>`), the city allocated in education/wuhan."""
    configured, site = box_site(settings, tmp_path)
    app = create_app(configured, engine=engine, site=site, dispatcher=RecordingDispatcher())
    worker = WorkerContext(settings=configured, engine=engine, site=site)
    token = grant_token(engine, f"swift-admin-{uuid.uuid4().hex[:4]}", [("platform-admin", "hubei")])
    code = f"sw{uuid.uuid4().hex[:8]}"
    city, county = f"hubei.{code}", f"hubei.{code}.county"
    provisioner = OpenStackProvisioner.from_config(
        CloudConfig(region=REGION, clouds_yaml=BOX_DIR / "clouds.yaml", cloud=CLOUD), FAST
    )
    with TestClient(app, raise_server_exceptions=False) as api:
        api.headers["Authorization"] = f"Bearer {token}"
        for body in (
            new_tenant(parent="hubei", code=code, kind="city"),
            new_tenant(parent=city, code="county", kind="county"),
        ):
            assert api.post("/v1/tenants", json=body).status_code == 201
        allocate(engine, city, "shared", {}, cloud=CLOUD_CODE, region=REGION)
        yield {"api": api, "worker": worker, "county": county, "provisioner": provisioner}
    found = provisioner.find_project(domain_name(county), project_name(county, CLOUD_CODE))
    if found is not None:
        provisioner.retire_project(found)
    provisioner.close()


def _upload_declaring(url: str, token: str, length: int) -> tuple[int, bytes]:
    """Swift's final answer to a PUT announcing `length` bytes (Expect: 100-continue): the quota
    is checked on the declared length before any of it is read, so nothing that large is sent."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.putrequest("PUT", parts.path)
        for name, value in (("X-Auth-Token", token), ("Content-Length", str(length)), ("Expect", "100-continue")):
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_bucket_request_ends_with_a_quota_bound_container_and_undo_removes_it(
    city_world: dict[str, Any], swift: SwiftAdmin, engine: Engine
) -> None:
    api, worker, county = city_world["api"], city_world["worker"], city_world["county"]
    onboarded = provisioned(
        api,
        worker,
        {
            "tenant": county,
            "cloud": CLOUD_CODE,
            "region": REGION,
            "declaration": DECLARATION,
            "new_system": {"name": "swift-archive", "mlps_level": 2},
            "spec": {"kind": "tenant-onboarding", "mode": "slice", "limits": {"object_gb": 5}},
        },
    )
    done = provisioned(
        api,
        worker,
        {
            "tenant": county,
            "cloud": CLOUD_CODE,
            "region": REGION,
            "system": onboarded["system"],
            "declaration": DECLARATION,
            "spec": {"kind": "bucket", "size_gb": 2, "name": "archive"},
        },
    )
    assert done["delta"] == {"object_gb": 2}
    project = city_world["provisioner"].find_project(domain_name(county), project_name(county, CLOUD_CODE))
    assert swift.containers(project.id) == ["archive"]
    seen = swift.head(project.id, "archive")
    assert seen.headers[QUOTA_HEADER] == str(2 * 1024**3), "the ledger's object_gb, in bytes"
    assert seen.headers[TAG_HEADER] == f"req-{done['id']}-0"
    assert node(engine, county, CLOUD_CODE, REGION)["used"] == {"object_gb": 2}

    # writes land in it; one announcing more than is left is refused before any byte is sent
    small = swift.conn.object_store.put(swift.url(project.id, "archive", "small"), data=io.BytesIO(b"z" * 10))
    assert small.status_code == 201
    assert swift.head(project.id, "archive").headers["X-Container-Bytes-Used"] == "10"  # the proxy's view, fresh
    token = swift.conn.session.get_token()
    refused = _upload_declaring(swift.url(project.id, "archive", "big"), token, 2 * 1024**3 - 9)
    assert refused == (413, b"Upload exceeds quota.")

    # another request naming the same bucket fails (the tenant picks another name), touching nothing
    clash = api.post(
        "/v1/requests",
        json={
            "tenant": county,
            "cloud": CLOUD_CODE,
            "region": REGION,
            "system": onboarded["system"],
            "declaration": DECLARATION,
            "spec": {"kind": "bucket", "size_gb": 1, "name": "archive"},
        },
    ).json()
    current = api.post(f"/v1/requests/{clash['id']}:submit").json()
    while current["state"] == "pending_approval":
        current = api.post(f"/v1/requests/{clash['id']}:approve").json()
    assert ops.run(worker, uuid.UUID(current["operation"])) == "failed"
    refused = api.get(f"/v1/requests/{clash['id']}").json()
    assert refused["state"] == "failed" and "bucket name taken" in refused["last_reason"], refused
    assert swift.head(project.id, "archive").headers[TAG_HEADER] == f"req-{done['id']}-0"
    assert node(engine, county, CLOUD_CODE, REGION)["used"] == {"object_gb": 2}
    assert node(engine, county, CLOUD_CODE, REGION)["reserved"].get("object_gb", 0) == 0

    # a retried step finds the same container; the compensation deletes it and gives the ledger back
    provisioner = city_world["provisioner"]
    again = provisioner.ensure_bucket(project, f"req-{done['id']}-0", quota_bytes(2), name="archive")
    assert again.name == "archive" and swift.containers(project.id) == ["archive"]
    _undo_bucket(worker, engine, done["id"], done["operation"])
    assert swift.containers(project.id) == []
    assert node(engine, county, CLOUD_CODE, REGION)["used"].get("object_gb", 0) == 0


def _undo_bucket(worker: WorkerContext, engine: Engine, request_id: str, operation_id: str) -> None:
    """The bucket step's compensation, run as the engine runs it when a later step fails."""
    from controlplane.db.uow import unit_of_work
    from controlplane.operations.engine import STEPS, StepContext
    from controlplane.operations.models import Operation

    (step,) = STEPS["request.bucket"]
    assert step.compensate is not None
    with unit_of_work(engine) as uow:
        operation = uow.session.get(Operation, uuid.UUID(operation_id))
        assert operation is not None and operation.memo.get("committed") == {"object_gb": 2}, operation.memo
        sc = StepContext(
            worker=worker,
            operation_id=operation.id,
            kind="request.bucket",
            params={"request_id": request_id},
            memo=dict(operation.memo),
        )
        step.compensate(sc, uow)
