"""One table maps domain errors to HTTP; everything leaves as RFC 9457 problem+json."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from controlplane.errors import (
    BackendUnavailable,
    Conflict,
    DomainError,
    Forbidden,
    InvalidTransition,
    NotFound,
    PolicyViolation,
    Unauthenticated,
    ValidationFailed,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:chutian:problem:"

PROBLEMS: dict[type[DomainError], int] = {
    NotFound: 404,
    InvalidTransition: 409,
    Conflict: 409,
    ValidationFailed: 422,
    PolicyViolation: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    BackendUnavailable: 503,
}


def status_for(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return 400


def problem_response(
    request: Request,
    /,
    status: int,
    *,
    slug: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extensions.items() if k not in body})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = status_for(exc)
    headers = {"Retry-After": "5"} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="chutian"'}
    return problem_response(
        request, status, slug=exc.slug, title=exc.title, detail=exc.detail, headers=headers, **exc.fields
    )


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": _field(tuple(e.get("loc", ()))),
            "in": str(e.get("loc", ("body",))[0]),
            "message": e.get("msg", ""),
        }
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem_response(
        request,
        422,
        slug="validation-failed",
        title="Invalid input",
        detail=detail,
        errors=errors,
        field=errors[0]["field"] if errors else None,
    )


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "Error"
    slug = phrase.lower().replace(" ", "-")
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    return problem_response(
        request,
        exc.status_code,
        slug=slug,
        title=phrase,
        detail=detail,
        headers=getattr(exc, "headers", None),
    )


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error handling %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request,
        500,
        slug="internal",
        title="Internal error",
        detail="The request failed unexpectedly; quote the request id to an operator.",
    )


def _database(request: Request, exc: Exception) -> JSONResponse:
    """Database errors that escaped a unit of work (e.g. while connecting)."""
    from controlplane.db.uow import RetryableConflict, translate_db_error

    assert isinstance(exc, sa_exc.DBAPIError)
    translated = translate_db_error(exc)
    if isinstance(translated, RetryableConflict):
        return _retryable(request, translated)
    if isinstance(translated, DomainError):
        log.warning("database error on %s %s: %s", request.method, request.url.path, type(exc.orig).__name__)
        return _domain(request, translated)
    return _unexpected(request, exc)


def _retryable(request: Request, exc: Exception) -> JSONResponse:
    """Marked for RetryMiddleware, which replays the request once before anyone sees this."""
    from controlplane.api.retry import RETRY_MARKER

    return problem_response(
        request,
        409,
        slug="conflict",
        title="Conflict with the current state",
        detail="a concurrent change got in the way; please retry",
        headers={RETRY_MARKER.decode(): "1"},
    )


def install(app: FastAPI) -> None:
    from controlplane.db.uow import RetryableConflict

    app.add_exception_handler(RetryableConflict, _retryable)
    app.add_exception_handler(sa_exc.DBAPIError, _database)
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
