"""The edge commits before answering; failures become problem+json and leave no rows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from controlplane.api.app import create_app
from controlplane.db.engine import make_engine
from controlplane.db.uow import Job, RecordingDispatcher, RetryableConflict, UnitOfWork, unit_of_work
from controlplane.operations.models import Operation
from controlplane.settings import Settings
from controlplane.site_config import Site
from controlplane.tenants.models import Tenant
from tests.conftest import grant_token
from tests.controlplane.helpers import assert_problem, new_tenant


def count(engine: Engine, model: Any, **where: Any) -> int:
    with engine.connect() as conn:
        stmt = select(func.count()).select_from(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return int(conn.execute(stmt).scalar_one())


def test_failed_commit_is_problem_json_and_no_rows(
    client: TestClient, engine: Engine, dispatcher: RecordingDispatcher
) -> None:
    @event.listens_for(engine, "commit")
    def fail_commit(conn: Any) -> None:
        raise sa_exc.OperationalError("COMMIT", {}, Exception("disk I/O error (injected)"))

    response = client.post("/v1/tenants", json=new_tenant(code="lost"))
    assert_problem(response, 503, "backend-unavailable")
    assert response.headers["retry-after"]
    selftest = client.post("/v1/system:selftest")
    assert_problem(selftest, 503)
    event.remove(engine, "commit", fail_commit)
    assert count(engine, Tenant, code="lost") == 0
    assert count(engine, Operation) == 0
    assert dispatcher.sent == [], "a job left although its unit never committed"


def test_job_is_sent_only_after_commit(client: TestClient, engine: Engine, dispatcher: RecordingDispatcher) -> None:
    response = client.post("/v1/system:selftest")
    assert response.status_code == 202
    assert dispatcher.sent == [Job("chutian.operations.run", {"operation_id": response.json()["id"]})]
    assert count(engine, Operation, state="queued") == 1


@pytest.fixture
def flaky_client(
    settings: Settings, engine: Engine, site: Site, request: pytest.FixtureRequest
) -> Iterator[TestClient]:
    failures = {"left": request.param}

    def serialization_failure(uow: UnitOfWork) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RetryableConflict("could not serialize access (injected)")

    app = create_app(
        settings,
        engine=engine,
        site=site,
        dispatcher=RecordingDispatcher(),
        configure=lambda ctx: ctx.before_commit.append(serialization_failure),
    )
    token = grant_token(engine, "flaky-admin", [("platform-admin", "hubei")])
    with TestClient(app, raise_server_exceptions=False) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


@pytest.mark.parametrize("flaky_client", [1], indirect=True)
def test_one_serialization_failure_is_retried_transparently(flaky_client: TestClient, engine: Engine) -> None:
    response = flaky_client.post("/v1/tenants", json=new_tenant(code="retried"))
    assert response.status_code == 201, response.text
    assert count(engine, Tenant, code="retried") == 1


@pytest.mark.parametrize("flaky_client", [2], indirect=True)
def test_second_serialization_failure_is_409_and_no_rows(flaky_client: TestClient, engine: Engine) -> None:
    assert_problem(flaky_client.post("/v1/tenants", json=new_tenant(code="twice")), 409)
    assert count(engine, Tenant, code="twice") == 0


def test_unreachable_database_is_503(settings: Settings, site: Site, tmp_path: Any) -> None:
    dead = make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    app = create_app(settings, engine=dead, site=site, dispatcher=RecordingDispatcher())
    with TestClient(app, raise_server_exceptions=False) as test_client:
        test_client.headers["Authorization"] = "Bearer ctk_0123456789ab_x"
        assert_problem(test_client.get("/v1/tenants"), 503, "backend-unavailable")
        assert_problem(test_client.post("/v1/tenants", json=new_tenant()), 503)
        ready = test_client.get("/readyz")
        assert_problem(ready, 503, "not-ready")
        assert ready.json()["checks"]["database"] == "unreachable"
    dead.dispose()


def test_unit_of_work_rolls_back_jobs_and_rows_on_error(engine: Engine) -> None:
    dispatcher = RecordingDispatcher()
    with pytest.raises(RuntimeError), unit_of_work(engine, dispatcher=dispatcher) as uow:
        uow.session.add(Operation(kind="selftest", created_at=uow.now(), updated_at=uow.now()))
        uow.enqueue(Job("chutian.operations.run", {"operation_id": "x"}))
        uow.session.flush()
        raise RuntimeError("boom")
    assert dispatcher.sent == []
    assert count(engine, Operation) == 0


def test_one_timestamp_per_unit(engine: Engine) -> None:
    with unit_of_work(engine) as uow:
        assert uow.now() is uow.now()
