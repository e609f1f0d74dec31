"""What the API checks before a request body is read: the caller's token, then the body's size."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RequestGuard:
    """ASGI middleware: 401 for a write without the right token, 413 for a body over the limit.

    Both answers come before the body is parsed: a stranger learns nothing about what a valid
    body looks like, and nobody can make the process hold a huge body in memory. A body with
    no Content-Length is counted as it streams in and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, *, api_token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_token = api_token
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if self.api_token is not None:
            refusal = self._refusal(headers.get("authorization"))
            if refusal is not None:
                await _answer(send, 401, refusal, True)
                return
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await _answer(send, 413, self._too_large(), False)
            return
        received = 0
        started = answered = False

        async def counted() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request" and not answered:
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    if not started:
                        await _answer(send, 413, self._too_large(), False)
                    answered = True
            # Past the limit the app sees a caller that left, and stops reading.
            return {"type": "http.disconnect"} if answered else message

        async def tracked(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 was the answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not answered:
                raise

    def _refusal(self, header: bytes | None) -> str | None:
        """Why the caller is refused, or None for the right token."""
        scheme, _, token = (header or b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "this endpoint needs 'Authorization: Bearer <token>'"
        assert self.api_token is not None
        if not secrets.compare_digest(token.strip().encode(), self.api_token.encode()):
            return "the bearer token is wrong"
        return None

    def _too_large(self) -> str:
        return f"request body over {self.max_body_bytes} bytes"


async def _answer(send: Send, code: int, detail: str, challenge: bool) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if challenge:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
