"""The self-service web portal: server-rendered pages (Jinja2 + htmx) in the API's app.

Pages call the same service functions as the REST verbs, so the state machine and the
permissions are enforced in one place. See ``install``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from controlplane.portal import web


def install(app: FastAPI) -> None:
    """Mount the vendored static files and the pages at ``/`` (the API stays under ``/v1``)."""
    from controlplane.portal.routes_auth import router as auth
    from controlplane.portal.routes_console import router as console
    from controlplane.portal.routes_forms import router as request_forms
    from controlplane.portal.routes_requests import router as requests

    app.mount(web.STATIC_URL, StaticFiles(directory=Path(__file__).parent / "static"), name="portal-static")
    app.add_exception_handler(web.LoginRequired, web.login_redirect)
    app.add_exception_handler(web.CsrfRejected, web.csrf_rejected)
    app.include_router(auth)
    app.include_router(request_forms)
    app.include_router(requests)
    app.include_router(console)
