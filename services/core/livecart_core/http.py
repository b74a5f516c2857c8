"""The HTTP side of a service: a FastAPI app with /healthz, /readyz and /metrics, and a uvicorn
server that runs inside the service's event loop (several can share one loop in dev mode)."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livecart_core.boundary import ERROR_CODES, BoundaryMiddleware, Limits, send_error
from livecart_core.bus.failures import is_transient
from livecart_core.errors import ServiceError, StartupError, Unavailable
from livecart_core.health import Readiness, Report
from livecart_core.metrics import DEPENDENCY_UNAVAILABLE, HTTP_REQUESTS, HTTP_SECONDS
from livecart_core.openapi import document_errors
from livecart_core.rules import json_problem, text_problem

_UNTRACED = {"/healthz", "/readyz", "/metrics"}
log = logging.getLogger("livecart.http")


class UnavailableGuard:
    """A request that fails because a dependency is down (a refused or dropped database
    connection, a broker timeout: :func:`livecart_core.bus.failures.is_transient`) is answered
    503 with ``Retry-After``, fast, instead of a 500; the service recovers by itself when the
    dependency returns. Other failures pass on (they are bugs, and stay 500s)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            if started or not is_transient(exc):
                raise
            DEPENDENCY_UNAVAILABLE.labels(self.service, "http").inc()
            log.warning(
                "a dependency is down; answered 503",
                extra={"service": self.service, "path": scope.get("path"), "why": repr(exc)},
            )
            # The body names the kind of failure only.
            await send_error(
                send,
                Unavailable.http_status,
                Unavailable.code,
                f"a dependency is down ({type(exc).__name__}); retry shortly",
                [(b"retry-after", str(Unavailable.retry_after_s).encode())],
            )


class MetricsMiddleware:
    """Prometheus request count and duration per route template.

    Server spans (continuing the caller's trace from its headers) come from FastAPI's own
    OpenTelemetry support; this adds the Prometheus side the dashboards read.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNTRACED:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method = scope["method"]
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
            HTTP_SECONDS.labels(self.service, method, route).observe(time.perf_counter() - started)


def create_http_app(
    service: str, readiness: Readiness, *, limits: Limits | None = None, **fastapi_args: Any
) -> FastAPI:
    """A FastAPI app with the endpoints every service has, behind the shared boundary
    (:mod:`livecart_core.boundary`); add routes to it."""
    limits = limits or Limits()
    app = FastAPI(
        title=f"Livecart {service}",
        telemetry={
            "exclude": lambda scope: scope.get("path") in _UNTRACED,
            "operation_spans": False,  # one span per request is enough on hot paths
        },
        **fastapi_args,
    )
    app.add_middleware(UnavailableGuard, service=service)
    app.add_middleware(BoundaryMiddleware, limits=limits)
    app.add_middleware(MetricsMiddleware, service=service)
    document_errors(app)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {
                "error": "invalid_argument",
                "message": "request validation failed",
                "detail": validation_detail(exc.errors()),
            },
            status_code=422,
        )

    @app.exception_handler(ServiceError)
    async def refused(request: Request, exc: ServiceError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Unavailable) else None
        return JSONResponse(
            {"error": exc.code, "message": str(exc)}, status_code=exc.http_status, headers=headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_refused(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Routing (404, 405), body limits (413) and the boundary (400, 408) answer with the
        # same error body as the services' own refusals.
        message = exc.detail if isinstance(exc.detail, str) else "the request was refused"
        code = ERROR_CODES.get(exc.status_code, "refused")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only.
            headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return JSONResponse(
            {"error": code, "message": message}, status_code=exc.status_code, headers=headers
        )

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process is serving")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Readiness: the pod can serve (a shared dependency that is down is 'degraded')",
        response_model=ReadyBody,
        response_model_exclude_none=True,
        responses={503: {"model": ReadyBody, "description": "The pod cannot serve (or drains)"}},
    )
    async def readyz(
        verbose: bool = Query(False, description="list every check and why one fails"),
    ) -> JSONResponse:
        report = readiness.last or await readiness.check()
        body = ready_body(service, report, verbose=verbose)
        return JSONResponse(
            body.model_dump(exclude_none=True), status_code=200 if report.ready else 503
        )

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
    )
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


class ReadyBody(BaseModel):
    status: str = Field(description="ready, degraded (serving; a dependency is down) or not_ready")
    service: str
    failing: dict[str, str] | None = Field(
        default=None, description="what keeps the pod from serving: why"
    )
    degraded: dict[str, str] | None = Field(
        default=None, description="(verbose) each dependency or loop that is down: why"
    )
    checks: dict[str, str] | None = Field(
        default=None, description="(verbose) every check: up, or why it is down"
    )


def ready_body(service: str, report: Report, *, verbose: bool) -> ReadyBody:
    body = ReadyBody(status=report.status, service=service, failing=report.failing or None)
    if verbose:
        body.degraded = report.degraded
        body.checks = {
            name: report.failing.get(name) or report.degraded.get(name) or "up"
            for name in report.checks
        }
    return body


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves at the request's path."""
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, BaseRoute) and getattr(route, "methods", None):
            match, _ = route.matches({**scope, "method": "GET"})
            if match is not Match.NONE:
                methods |= set(route.methods)  # type: ignore[attr-defined]
    return sorted(methods)


def validation_detail(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic's errors as JSON that always encodes: the rejected input is kept only when it
    is itself valid, short JSON (a NaN or a lone surrogate in it must not break the answer)."""
    detail: list[dict[str, Any]] = []
    for error in errors:
        item: dict[str, Any] = {
            "type": _printable(str(error.get("type", "invalid"))),
            "loc": [p if isinstance(p, int) else _printable(str(p)) for p in error.get("loc", ())],
            "msg": _printable(str(error.get("msg", ""))),
        }
        try:
            value = jsonable_encoder(error.get("input"))
            if json_problem(value) is None and len(json.dumps(value, allow_nan=False)) <= 256:
                item["input"] = value
        except (TypeError, ValueError, RecursionError):
            pass  # the input is left out; loc and msg say what was wrong
        detail.append(item)
    return detail


def _printable(text: str) -> str:
    return text.encode("utf-8", "replace").decode() if text_problem(text) else text


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process entrypoint owns signals; several servers may share one loop.
        yield


class HttpServer:
    """Runs ``app`` on ``host:port`` inside the current event loop."""

    def __init__(self, app: ASGIApp, host: str, port: int, *, setting: str = "LIVECART_HTTP_PORT"):
        self.app = app
        self.host = host
        self.socket = _bind(host, port, setting)
        self.port = int(self.socket.getsockname()[1])
        self._server = _Server(
            uvicorn.Config(app, log_config=None, lifespan="off", access_log=False)
        )

    async def serve(self) -> None:
        await self._server.serve(sockets=[self.socket])

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def stop(self) -> None:
        self._server.should_exit = True


def _bind(host: str, port: int, setting: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio enables TCP_NODELAY on accepted connections only for
    # sockets that say so; without it Nagle + delayed ACK add ~40 ms to keep-alive requests.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"{setting}={port}: cannot listen on {host}:{port} ({exc.strerror})"
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock
