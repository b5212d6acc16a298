"""The OpenStack error table, row by row, on exceptions built the way openstacksdk builds them.

No network: an HTTP error is a `requests.Response` with the status and body a service sends,
turned into an exception by openstacksdk's own `raise_from_response`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import keystoneauth1.exceptions as ksa
import openstack.exceptions as sdk
import pytest
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
from provisioners.openstack.errors import (
    ERROR_TABLE,
    ResourceFailed,
    WaitTimedOut,
    map_error,
    markdown_table,
    translated,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "openstack-provisioner.md"


def sdk_error(status: int, message: str, url: str = "http://127.0.0.1:15774/v2.1/servers") -> sdk.SDKException:
    """What openstacksdk raises for a service's error answer (Nova/Cinder/Neutron JSON bodies)."""
    response = requests.Response()
    response.status_code = status
    response.headers["Content-Type"] = "application/json"
    response._content = json.dumps({"error": {"code": status, "message": message}}).encode()
    response.url = url
    response.request = requests.Request("POST", url).prepare()
    try:
        sdk.raise_from_response(response)
    except sdk.SDKException as err:
        return err
    raise AssertionError(f"{status} did not raise")


def mapped(exc: BaseException) -> type[ProvisionerError]:
    return type(map_error(exc, backend="openstack:test"))


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        # Nova's over-quota is a 403, and must not read as an auth problem.
        (403, "Quota exceeded for cores: Requested 1, but already used 0 of 0 cores", BackendQuotaExceeded),
        (403, "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances", BackendQuotaExceeded),
        # Cinder's is a 413, Neutron's a 409.
        (
            413,
            "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota.",
            BackendQuotaExceeded,
        ),
        (
            413,
            "VolumeLimitExceeded: Maximum number of volumes allowed (10) exceeded for quota 'volumes'.",
            BackendQuotaExceeded,
        ),
        (409, "Quota exceeded for resources: ['network'].", BackendQuotaExceeded),
        (413, "Upload exceeds quota.", BackendQuotaExceeded),  # Swift's container_quotas
        (409, "There was a conflict when trying to complete your request.", TransientBackendError),  # Swift
        (401, "The request you have made requires authentication.", BackendAuthError),
        (403, "You are not authorized to perform the requested action: identity:create_domain.", BackendAuthError),
        (403, "Policy doesn't allow os_compute_api:servers:create to be performed.", BackendAuthError),
        (404, "Could not find project: 1234.", BackendNotFound),
        (409, "Cannot 'stop' instance 1234 while it is in vm_state building", TransientBackendError),
        (409, "Conflict occurred attempting to store project - Duplicate entry.", TransientBackendError),
        (413, "Rate limit exceeded, retry after 10 s", TransientBackendError),
        (429, "Too Many Requests", TransientBackendError),
        (500, "An unexpected error prevented the server from fulfilling your request.", TransientBackendError),
        (502, "Bad Gateway", TransientBackendError),
        (503, "Service Unavailable", TransientBackendError),
        (504, "Gateway Timeout", TransientBackendError),
        (400, "Invalid input for field/attribute cidr.", InvalidSpec),
        (422, "Unprocessable Entity", InvalidSpec),
        (418, "I'm a teapot", ProvisionerError),
    ],
)
def test_http_errors_map_by_status_and_message(status: int, message: str, expected: type[ProvisionerError]) -> None:
    assert mapped(sdk_error(status, message)) is expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ksa.http.Unauthorized("The request you have made requires authentication."), BackendAuthError),
        (ksa.http.Forbidden("forbidden"), BackendAuthError),
        (ksa.http.ServiceUnavailable("busy"), TransientBackendError),
        (ksa.http.TooManyRequests("slow down"), TransientBackendError),
        (ksa.http.NotFound("gone"), BackendNotFound),
        (ksa.ConnectFailure("Unable to establish connection to http://127.0.0.1:1/v3"), TransientBackendError),
        (ksa.SSLError("certificate verify failed"), TransientBackendError),
        (ksa.ConnectTimeout("connect timed out"), BackendTimeout),
        (requests.ConnectionError("reset by peer"), TransientBackendError),
        (requests.ReadTimeout("read timed out"), BackendTimeout),
        (sdk.ResourceTimeout("Timeout waiting for the server to come up."), BackendTimeout),
        (WaitTimedOut("server 'x'", "BUILD", 300), BackendTimeout),
        (ksa.AuthorizationFailure("could not authorize"), BackendAuthError),
        (ksa.MissingRequiredOptions([]), BackendAuthError),
        (sdk.EndpointNotFound("no compute endpoint"), BackendMisconfigured),
        (sdk.ServiceDisabledException("Service 'dns' is disabled"), BackendMisconfigured),
        (ksa.EndpointNotFound("no endpoint"), BackendMisconfigured),
        (ksa.DiscoveryFailure("could not find versioned identity endpoints"), BackendMisconfigured),
        (sdk.SDKException("something else"), ProvisionerError),
        (ValueError("a bug of ours, still contained"), ProvisionerError),
    ],
)
def test_client_side_errors_map_by_class(exc: BaseException, expected: type[ProvisionerError]) -> None:
    assert mapped(exc) is expected


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("No valid host was found. ", CapacityExhausted),
        ("No valid host was found. There are not enough hosts available.", CapacityExhausted),
        (
            "VOLUME_VOLUME_001_003: schedule allocate volume:Could not find any available weighted backend.",
            CapacityExhausted,
        ),
        ("Quota exceeded for cores: Requested 4, but already used 8 of 10 cores", BackendQuotaExceeded),
        ("Build of instance 1234 aborted: Failed to allocate the network(s), not rescheduling.", BackendResourceFailed),
        ("", BackendResourceFailed),
    ],
)
def test_resources_in_error_map_by_fault(fault: str, expected: type[ProvisionerError]) -> None:
    assert mapped(ResourceFailed("server 'x' (1234)", "ERROR", fault)) is expected


def test_quota_kinds_tell_the_application_what_to_do() -> None:
    """failed (tenant) vs errored (operator) vs retry: read from `kind`, never from the SDK."""
    assert map_error(sdk_error(403, "Quota exceeded for cores"), backend="b").kind == "quota"
    assert map_error(sdk_error(403, "not allowed"), backend="b").kind == "auth"
    assert map_error(sdk_error(503, "busy"), backend="b").kind == "transient"
    timeout = map_error(WaitTimedOut("backup 'x'", "creating", 5), backend="b")
    assert timeout.kind == "timeout" and isinstance(timeout, TransientBackendError)


def test_the_message_keeps_status_and_detail_and_names_the_backend() -> None:
    error = map_error(sdk_error(403, "Quota exceeded for cores: Requested 1"), backend="openstack:wuhan")
    assert "403" in str(error) and "Quota exceeded for cores" in str(error)
    assert error.backend == "openstack:wuhan"
    keystone = map_error(ksa.http.Unauthorized("needs authentication"), backend="x")
    assert "401" in str(keystone)


def test_translated_chains_the_original_and_passes_our_own_errors_through() -> None:
    original = sdk_error(409, "Duplicate entry")
    with pytest.raises(TransientBackendError) as caught, translated("openstack:wuhan"):
        raise original
    assert caught.value.__cause__ is original

    ours = InvalidSpec("refused before any call", backend="openstack:wuhan")
    with pytest.raises(InvalidSpec) as again, translated("openstack:wuhan"):
        raise ours
    assert again.value is ours


def test_every_row_is_reachable() -> None:
    """A row shadowed by an earlier one would be dead documentation."""
    samples = [
        sdk_error(403, "Quota exceeded for cores"),
        ResourceFailed("s", "ERROR", "Quota exceeded for cores"),
        ResourceFailed("s", "ERROR", "No valid host was found."),
        ResourceFailed("s", "ERROR", "Failed to allocate the network(s)"),
        WaitTimedOut("s", "BUILD", 1),
        sdk_error(401, "needs authentication"),
        sdk_error(403, "not allowed"),
        ksa.AuthorizationFailure("no"),
        sdk_error(404, "gone"),
        sdk_error(409, "busy"),
        sdk_error(503, "busy"),
        sdk_error(400, "bad"),
        ksa.ConnectFailure("refused"),
        sdk.EndpointNotFound("none"),
        sdk.SDKException("other"),
    ]
    assert len(samples) == len(ERROR_TABLE)
    for row, sample in zip(ERROR_TABLE, samples, strict=True):
        first = next(rule for rule in ERROR_TABLE if rule.matches(sample))
        assert first is row, f"{sample!r} matched {first.source!r}, expected {row.source!r}"


def test_the_documentation_shows_exactly_this_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- error-table:start -->\n(.*?)\n<!-- error-table:end -->", text, re.S)
    assert match, f"{DOC} has no error-table markers"
    assert match.group(1).strip() == markdown_table().strip(), (
        "docs/openstack-provisioner.md is out of date: paste "
        "`python -c 'from provisioners.openstack.errors import markdown_table; print(markdown_table())'`"
    )
