"""The HTTP boundary every service shares: what a request may be before any route sees it.

What nginx or Envoy would enforce in front of a service, enforced here so a service is safe
without them: bounded URLs (414), headers (431) and bodies (413; a route sets its own limit
with ``openapi_extra=body_limit(n)``), a body that stalls gets 408, and text in the URL or a
JSON body that cannot be stored or shown (NUL, lone surrogates, NaN/Infinity) gets 400 naming
the rule. Every answer is the error body of :mod:`livecart_core.errors`.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livecart_core.rules import json_problem, may_break_json_rules


@dataclass(frozen=True, slots=True)
class Limits:
    """The default limits of a service's HTTP boundary; a route may set its own body limit
    with :func:`body_limit`."""

    max_body_bytes: int = 1 << 20
    max_url_bytes: int = 8192
    max_headers: int = 100
    max_header_bytes: int = 16384
    body_timeout_s: float = 15.0


class RequestRefused(HTTPException):
    """A request the boundary refuses while a route reads its body."""


_BODY_LIMIT = "x-max-body-bytes"


def body_limit(max_bytes: int) -> dict[str, Any]:
    """A route's own body limit, for its ``openapi_extra`` (the schema shows it too).

    FastAPI's ``max_body_size`` is not used: its 413 is plain text, not the error body.
    """
    return {_BODY_LIMIT: max_bytes}


_URL_NUL = re.compile(rb"%00")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def body_problem(body: bytes) -> str | None:
    """Why a JSON request body breaks the text and number rules; None when it does not, or
    when it is not JSON at all (the route's own parser says so)."""
    if not may_break_json_rules(body):  # nearly every body: not parsed a second time
        return None
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        return "the JSON body is nested too deeply"
    except ValueError as exc:
        if "not a JSON number" in str(exc):
            return "NaN and Infinity are not JSON numbers"
        return None
    problem = json_problem(value)
    return f"the JSON body breaks a rule: {problem}" if problem else None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # the HTTP parser refuses a malformed length before we are called
    return 0


def _head_problem(scope: Scope, limits: Limits) -> tuple[int, str, str] | None:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    if len(raw_path) + len(query) > limits.max_url_bytes:
        return 414, "uri_too_long", f"the URL is longer than {limits.max_url_bytes} bytes"
    if _URL_NUL.search(raw_path) or _URL_NUL.search(query):
        return 400, "invalid_argument", "NUL characters are not allowed in the URL"
    headers = scope["headers"]
    if len(headers) > limits.max_headers:
        return 431, "headers_too_large", f"more than {limits.max_headers} request headers"
    if sum(len(name) + len(value) for name, value in headers) > limits.max_header_bytes:
        return 431, "headers_too_large", f"the headers exceed {limits.max_header_bytes} bytes"
    return None


class BoundaryMiddleware:
    """Refuses requests past the limits before routing, and guards the body while it is read."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = _head_problem(scope, self.limits)
        if problem is not None:
            await send_error(send, *problem, headers=[(b"connection", b"close")])
            return
        await self.app(scope, _GuardedBody(scope, receive, self.limits), send)


class _GuardedBody:
    """The request's ``receive``: the route's body limit, a deadline until the body is
    complete, and the JSON rules checked on the complete body. After the body, it passes
    messages on untouched (responses that stream listen on it for the client going away)."""

    __slots__ = ("_chunks", "_done", "_json", "_limit", "_limits", "_receive", "_scope", "_size")

    def __init__(self, scope: Scope, receive: Receive, limits: Limits) -> None:
        self._scope = scope
        self._receive = receive
        self._limits = limits
        self._json = _is_json(scope)
        self._chunks: list[bytes] = []
        self._done = False
        self._limit = -1  # known once routing has run: at the first read
        self._size = 0

    def _too_large(self) -> RequestRefused:
        return RequestRefused(413, f"the request body is larger than {self._limit} bytes")

    async def __call__(self) -> Message:
        if self._done:
            return await self._receive()
        if self._limit < 0:
            extra = getattr(self._scope.get("route"), "openapi_extra", None) or {}
            self._limit = int(extra.get(_BODY_LIMIT, self._limits.max_body_bytes))
            if _declared_length(self._scope) > self._limit:
                raise self._too_large()
        try:
            async with asyncio.timeout(self._limits.body_timeout_s):
                message = await self._receive()
        except TimeoutError:
            raise RequestRefused(
                408,
                f"the request body did not arrive within {self._limits.body_timeout_s:g} s",
                headers={"Connection": "close"},
            ) from None
        if message["type"] != "http.request":
            return message
        self._size += len(message.get("body", b""))
        if self._size > self._limit:
            raise self._too_large()
        if self._json:
            self._chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            self._done = True
            if self._json:
                body = b"".join(self._chunks)
                self._chunks.clear()
                problem = body_problem(body)
                if problem is not None:
                    raise RequestRefused(400, problem)
        return message


ERROR_CODES = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "invalid_argument",
    429: "resource_exhausted",
    431: "headers_too_large",
    503: "unavailable",
}


async def send_error(
    send: Send, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]]
) -> None:
    """Answer with the error body every refusal has, from plain ASGI (no app around)."""
    body = json.dumps({"error": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
