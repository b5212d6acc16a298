"""Cursor pagination: opaque cursors and a `next` link that keeps the caller's filters."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Generic, TypeVar

from fastapi import Query, Request
from pydantic import BaseModel

from controlplane.errors import ValidationFailed

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next: str | None = None


def encode_cursor(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"a": after}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))["a"]
        if not isinstance(value, str):
            raise TypeError
        return value
    except (ValueError, KeyError, TypeError):
        raise ValidationFailed("cursor is not one this API issued", field="cursor") from None


def next_link(request: Request, after: str | None) -> str | None:
    """A relative link (path and query) to the next page, or None on the last page."""
    if after is None:
        return None
    url = request.url.include_query_params(cursor=encode_cursor(after))
    return f"{url.path}?{url.query}"


Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Cursor = Annotated[str | None, Query(max_length=600, description="From the previous page's `next` link")]
