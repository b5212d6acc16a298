"""The FastAPI application, built by `create_app` from settings (nothing at import time)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from controlplane.api import problems
from controlplane.api.context import AppContext
from controlplane.api.retry import RetryMiddleware
from controlplane.audit.chain import append_hook
from controlplane.auth.oidc import OidcVerifier
from controlplane.db.engine import make_engine
from controlplane.db.uow import Dispatcher
from controlplane.metrics import LatencyMiddleware, build_registry
from controlplane.settings import Settings
from controlplane.site_config import Site, load_site
from controlplane.system.models import WorkerHeartbeat

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    site: Site | None = None,
    dispatcher: Dispatcher | None = None,
    configure: Callable[[AppContext], None] | None = None,
) -> FastAPI:
    """Build the app. Tests inject an engine and a dispatcher; `serve` passes neither."""
    owns_engine = engine is None
    engine = engine or make_engine(settings.resolved_database_url)
    site = site or load_site(settings.site_file)
    registry, latency = build_registry(engine, domain=settings.metrics_domain)
    broker_probe = None
    if dispatcher is None:
        from controlplane.worker.celery_app import CeleryDispatcher, create_celery

        celery_app = create_celery(settings)
        dispatcher = CeleryDispatcher(celery_app)
        broker_probe = _broker_probe(celery_app)
    ctx = AppContext(
        settings=settings,
        engine=engine,
        site=site,
        dispatcher=dispatcher,
        registry=registry,
        latency=latency,
        broker_probe=broker_probe,
        before_commit=[append_hook],  # audit is appended last, just before commit
    )
    ctx.extras["oidc"] = OidcVerifier(settings)
    if configure is not None:
        configure(ctx)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_engine:
            engine.dispose()

    app = FastAPI(
        title="Chutian Cloud control plane (楚天云)",
        version="0.1.0",
        description="Tenants, quotas, approvals, provisioning and remote DR for Hubei's e-government cloud.",
        lifespan=lifespan,
        docs_url=None,  # only /healthz, /readyz and /openapi.json are public
        redoc_url=None,
    )
    app.state.ctx = ctx
    problems.install(app)
    app.middleware("http")(_request_id)
    app.add_middleware(LatencyMiddleware, histogram=latency)
    app.add_middleware(RetryMiddleware)  # outermost: replays the whole request
    _routes(app)
    return app


async def _request_id(request: Request, call_next: Callable[[Request], Any]) -> Response:
    incoming = request.headers.get("x-request-id", "")
    request.state.request_id = incoming if 8 <= len(incoming) <= 64 and incoming.isascii() else uuid.uuid4().hex
    response: Response = await call_next(request)
    response.headers["X-Request-ID"] = request.state.request_id
    return response


def _broker_probe(celery_app: Any) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with celery_app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            return True
        except Exception:
            return False

    return probe


def _routes(app: FastAPI) -> None:
    from controlplane.audit.routes import router as audit
    from controlplane.auth.routes import router as identity
    from controlplane.backup.routes import router as backup
    from controlplane.catalogue.routes import router as catalogue
    from controlplane.ledger.routes import router as ledger
    from controlplane.operations.routes import router as operations
    from controlplane.requests.routes import router as requests
    from controlplane.tenants.routes import router as tenants

    app.include_router(tenants)
    app.include_router(identity)
    app.include_router(audit)
    app.include_router(catalogue)
    app.include_router(operations)
    app.include_router(requests)
    app.include_router(ledger)
    app.include_router(backup)
    from controlplane.portal import install as install_portal

    install_portal(app)  # pages at / (the API stays under /v1)

    @app.get("/healthz", tags=["system"], include_in_schema=True)
    def healthz() -> dict[str, str]:
        """The process is alive (no dependency is checked)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["system"])
    def readyz(request: Request) -> JSONResponse:
        """Database reachable, and the broker (or, embedded, a worker heartbeat < 30 s old)."""
        ctx: AppContext = request.app.state.ctx
        checks: dict[str, str] = {}
        try:
            with ctx.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                checks["database"] = "ok"
                if ctx.settings.embedded:
                    newest = conn.execute(select(func.max(WorkerHeartbeat.last_seen))).scalar()
                    age = (ctx.clock() - newest).total_seconds() if newest else None
                    fresh = age is not None and age < ctx.settings.heartbeat_max_age_s
                    checks["worker"] = "ok" if fresh else ("no heartbeat" if age is None else f"stale ({age:.0f} s)")
        except Exception as exc:
            log.warning("readiness: database check failed: %s", type(exc).__name__)
            checks["database"] = "unreachable"
        if not ctx.settings.embedded and ctx.broker_probe is not None:
            checks["broker"] = "ok" if ctx.broker_probe() else "unreachable"
        ready = all(v == "ok" for v in checks.values())
        if ready:
            return JSONResponse({"status": "ready", "checks": checks})
        return problems.problem_response(
            request,
            503,
            slug="not-ready",
            title="Not ready",
            detail="; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
            checks=checks,
            headers={"Retry-After": "5"},
        )
