"""Small helpers shared by application tests."""

from __future__ import annotations

from typing import Any

from httpx import Response

from controlplane.tenants.credit_code import make_credit_code

_counter = iter(range(1, 10_000_000))


def credit_code(division: str = "420100") -> str:
    """A fresh valid unified social credit code."""
    return make_credit_code("11", division, f"TT{next(_counter):07d}")


def assert_problem(response: Response, status: int, slug: str | None = None) -> dict[str, Any]:
    """The response is RFC 9457 problem+json with this status (and type slug)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    if slug is not None:
        assert body["type"].endswith(":" + slug), body
    return body


def new_tenant(
    parent: str = "hubei.wuhan", code: str = "newunit", kind: str = "district", **extra: Any
) -> dict[str, Any]:
    return {
        "parent": parent,
        "code": code,
        "name_zh": "新单位",
        "name_en": "New unit",
        "kind": kind,
        "credit_code": credit_code(),
        **extra,
    }
