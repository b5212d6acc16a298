"""OpenStack failures → the provisioner error hierarchy, by class and by status/fault.

`ERROR_TABLE` is the one place this is decided (docs/openstack-provisioner.md renders the
same rows); rows are tried in order and the first match wins, so the quota rows sit above
the generic 403/409/413 rows they would otherwise fall into.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import keystoneauth1.exceptions as ksa
import openstack.exceptions as sdk
import requests

from provisioners.errors import (
    BackendAuthError,
    BackendMisconfigured,
    BackendNotFound,
    BackendQuotaExceeded,
    BackendResourceFailed,
    BackendTimeout,
    CapacityExhausted,
    InvalidSpec,
    ProvisionerError,
    TransientBackendError,
)


class WaitTimedOut(Exception):
    """Raised by our waits; mapped to `BackendTimeout` by the table."""

    def __init__(self, what: str, last_status: str | None, timeout_s: float) -> None:
        super().__init__(f"{what} still {last_status or 'unknown'} after {timeout_s:g} s")
        self.last_status = last_status


class ResourceFailed(Exception):
    """A server/volume/backup reached an error state; `fault` is what the service says why."""

    def __init__(self, what: str, status: str, fault: str) -> None:
        super().__init__(f"{what} went to {status}: {fault or 'no fault recorded'}")
        self.status = status
        self.fault = fault


QUOTA_MARKERS = (
    "quota exceeded",  # Nova 403, Neutron 409 ("Quota exceeded for resources")
    "exceeds allowed",  # Cinder 413 VolumeSizeExceedsAvailableQuota
    "quotaexceeded",
    "overquota",
    "volumelimitexceeded",
    "maximum number of",  # Cinder "Maximum number of volumes allowed (N) exceeded"
    "upload exceeds quota",  # Swift 413 from container_quotas / account_quotas
)
NO_HOST_MARKERS = ("no valid host", "no valid backend", "could not find any available weighted backend")


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of an openstacksdk or keystoneauth error, if it carries one."""
    if isinstance(exc, sdk.HttpException):
        return exc.status_code
    if isinstance(exc, ksa.HttpError):
        return exc.http_status
    return None


def _text(exc: BaseException) -> str:
    parts = [str(exc)]
    details = getattr(exc, "details", None)
    if isinstance(details, str):
        parts.append(details)
    if isinstance(exc, ResourceFailed):
        parts.append(exc.fault)
    return " ".join(parts).lower()


def _status_in(*codes: int) -> Callable[[BaseException], bool]:
    return lambda exc: http_status(exc) in codes


def _status_range(low: int, high: int) -> Callable[[BaseException], bool]:
    def match(exc: BaseException) -> bool:
        status = http_status(exc)
        return status is not None and low <= status <= high

    return match


def _says(*markers: str) -> Callable[[BaseException], bool]:
    return lambda exc: any(marker in _text(exc) for marker in markers)


def _both(a: Callable[[BaseException], bool], b: Callable[[BaseException], bool]) -> Callable[[BaseException], bool]:
    return lambda exc: a(exc) and b(exc)


def _is(*types: type[BaseException]) -> Callable[[BaseException], bool]:
    return lambda exc: isinstance(exc, types)


@dataclass(frozen=True)
class ErrorRule:
    """One row: `source` and `tested` are for people (the markdown table), `matches` decides."""

    source: str
    matches: Callable[[BaseException], bool]
    target: type[ProvisionerError]
    outcome: str
    tested: str


ERROR_TABLE: tuple[ErrorRule, ...] = (
    ErrorRule(
        "HTTP 403/409/413 saying quota exceeded (Nova 403 `Quota exceeded for cores`, Cinder 413 "
        "`VolumeSizeExceedsAvailableQuota`, Neutron 409 `Quota exceeded for resources`, Swift 413 "
        "`Upload exceeds quota.`)",
        _both(_status_in(403, 409, 413), _says(*QUOTA_MARKERS)),
        BackendQuotaExceeded,
        "failed (tenant acts)",
        "box: quota 0 then boot / create volume / create network; an object beyond a bucket's quota",
    ),
    ErrorRule(
        "server or volume in ERROR whose fault says quota exceeded (Nova's conductor re-check, Cinder message "
        "`..._006`)",
        _both(_is(ResourceFailed), _says(*QUOTA_MARKERS)),
        BackendQuotaExceeded,
        "failed (tenant acts)",
        "unit only: Nova's API check refuses first; the re-check trips only on racing boots",
    ),
    ErrorRule(
        "server in ERROR with fault `No valid host was found`; volume in error with Cinder message "
        "`Could not find any available weighted backend`",
        _both(_is(ResourceFailed), _says(*NO_HOST_MARKERS)),
        CapacityExhausted,
        "errored (operator acts)",
        "box: flavor larger than the fake host; volume larger than the pool",
    ),
    ErrorRule(
        "server/volume/backup in ERROR for any other reason",
        _is(ResourceFailed),
        BackendResourceFailed,
        "errored (operator acts)",
        "box: a server booted onto a network (the box's agentless Neutron never binds the port)",
    ),
    ErrorRule(
        "our wait ran out (`WaitTimedOut`), openstacksdk `ResourceTimeout`, keystoneauth `ConnectTimeout`, "
        "`requests.Timeout`",
        _is(WaitTimedOut, sdk.ResourceTimeout, ksa.ConnectTimeout, requests.Timeout),
        BackendTimeout,
        "transient once, then errored (the application counts)",
        "box: a server and a backup waited for with a 0 s / 0.2 s timeout, then the retry finds the same one",
    ),
    ErrorRule(
        "HTTP 401 (keystoneauth `Unauthorized` on authentication, or a call after credentials were revoked; "
        "Swift's authtoken refusing a token)",
        _status_in(401),
        BackendAuthError,
        "errored (operator acts)",
        "box: wrong password; user disabled after the provisioner authenticated; Swift given a token Keystone "
        "never issued",
    ),
    ErrorRule(
        "HTTP 403 without a quota message (policy refused; Swift's keystoneauth: no operator role on the project)",
        _status_in(403),
        BackendAuthError,
        "errored (operator acts)",
        "box: a project member's connection asked to create a domain; a bucket made by a user with only "
        "`reader` on the project",
    ),
    ErrorRule(
        "keystoneauth `AuthorizationFailure` / missing auth options",
        _is(ksa.AuthorizationFailure, ksa.MissingRequiredOptions, ksa.AuthPluginException),
        BackendAuthError,
        "errored (operator acts)",
        "unit",
    ),
    ErrorRule(
        "HTTP 404",
        _status_in(404),
        BackendNotFound,
        "errored (operator acts)",
        "box: a role assignment on an unknown project id",
    ),
    ErrorRule(
        "HTTP 409 without a quota message (busy: task state, concurrent create of the same name; Swift: a "
        "container whose listing still shows objects)",
        _status_in(409),
        TransientBackendError,
        "transient (retry later)",
        "box: Keystone 409 on a duplicate project name",
    ),
    ErrorRule(
        "HTTP 413 without a quota message, 429 (rate limited), 5xx",
        lambda exc: _status_in(413, 429)(exc) or _status_range(500, 599)(exc),
        TransientBackendError,
        "transient (retry later)",
        "429/503 from a local HTTP server standing in for Keystone and for Nova's endpoint (no box service "
        "can be made to answer them safely); 413 unit",
    ),
    ErrorRule(
        "HTTP 400/422 (the request itself is wrong)",
        _status_in(400, 422),
        InvalidSpec,
        "failed (the request must change)",
        "box: a subnet with an invalid CIDR",
    ),
    ErrorRule(
        "connection refused/reset, DNS, TLS (keystoneauth `ConnectionError`, `requests.ConnectionError`)",
        _is(ksa.ConnectionError, requests.ConnectionError),
        TransientBackendError,
        "transient (retry later)",
        "box: a connection pointed at a closed port (Keystone and a single service endpoint)",
    ),
    ErrorRule(
        "service missing from the catalog (openstacksdk `ServiceDisabledException`), endpoint or version "
        "discovery failure, bad client configuration",
        _is(
            sdk.EndpointNotFound,
            sdk.ConfigException,
            sdk.ServiceDiscoveryException,
            ksa.EndpointNotFound,
            ksa.DiscoveryFailure,
            ksa.EmptyCatalog,
        ),
        BackendMisconfigured,
        "errored (operator acts)",
        "box: a service type the box does not run",
    ),
    ErrorRule(
        "any other HTTP status or SDK error",
        _is(Exception),
        ProvisionerError,
        "errored (operator acts)",
        "unit",
    ),
)


def map_error(exc: BaseException, *, backend: str) -> ProvisionerError:
    """The provisioner error for `exc` (a `ProvisionerError` is returned as it is)."""
    if isinstance(exc, ProvisionerError):
        return exc
    for rule in ERROR_TABLE:
        if rule.matches(exc):
            return rule.target(_describe(exc), backend=backend)
    raise AssertionError("the catch-all row matches every Exception")  # pragma: no cover


def _describe(exc: BaseException) -> str:
    """One line; openstacksdk's messages name the URL, never credentials."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    if not text.startswith(name):
        text = f"{name}: {text}"
    status = http_status(exc)
    if status is not None and f"{status}" not in text:
        text = f"{text} (HTTP {status})"
    return text[:1000]


@contextmanager
def translated(backend: str) -> Iterator[None]:
    """Re-raise anything from the SDK as a `ProvisionerError`, keeping the original as the cause."""
    try:
        yield
    except ProvisionerError:
        raise
    except Exception as exc:
        raise map_error(exc, backend=backend) from exc


def markdown_table() -> str:
    """The table as docs/openstack-provisioner.md shows it (a test keeps the two in step)."""
    lines = [
        "| # | what OpenStack says | mapped to | outcome | tested |",
        "|---|---|---|---|---|",
    ]
    for number, rule in enumerate(ERROR_TABLE, start=1):
        lines.append(f"| {number} | {rule.source} | `{rule.target.__name__}` | {rule.outcome} | {rule.tested} |")
    return "\n".join(lines)
