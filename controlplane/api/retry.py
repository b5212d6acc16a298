"""Replays a request once when its unit of work hit a serialization failure or deadlock.

The handler for `RetryableConflict` answers 409 with a private marker header; this pure
ASGI middleware (outermost, with the body buffered) swallows that first answer and runs
the whole request again. A second failure reaches the client as a plain 409 problem.
"""

from __future__ import annotations

from typing import Any

RETRY_MARKER = b"x-chutian-retry"


class RetryMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body"):
                break

        def replay() -> Any:
            sent = False

            async def receive_again() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    message: dict[str, Any] = await receive()
                    return message
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            return receive_again

        retry = {"wanted": False}

        async def first_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if any(k.lower() == RETRY_MARKER for k, _ in headers):
                    retry["wanted"] = True
                    return
            if retry["wanted"]:
                return
            await send(message)

        await self.app(scope, replay(), first_send)
        if not retry["wanted"]:
            return

        async def second_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [(k, v) for k, v in message.get("headers", []) if k.lower() != RETRY_MARKER],
                }
            await send(message)

        await self.app(scope, replay(), second_send)
