"""The HTTP side of a service: a FastAPI app with /healthz, /readyz and /metrics, and a uvicorn
server that runs inside the service's event loop (several can share one loop in dev mode)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livecart_core.errors import ServiceError, StartupError
from livecart_core.health import Readiness
from livecart_core.metrics import HTTP_REQUESTS, HTTP_SECONDS

_UNTRACED = {"/healthz", "/readyz", "/metrics"}


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


def create_http_app(service: str, readiness: Readiness, **fastapi_args: Any) -> FastAPI:
    """A FastAPI app with the endpoints every service has; add routes to it."""
    app = FastAPI(
        title=f"Livecart {service}",
        telemetry={
            "exclude": lambda scope: scope.get("path") in _UNTRACED,
            "operation_spans": False,  # one span per request is enough on hot paths
        },
        **fastapi_args,
    )
    app.add_middleware(MetricsMiddleware, service=service)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = jsonable_encoder(exc.errors())
        return JSONResponse(
            {"error": "invalid_argument", "message": "request validation failed", "detail": detail},
            status_code=422,
        )

    @app.exception_handler(ServiceError)
    async def refused(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": str(exc)}, status_code=exc.http_status)

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process is serving")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["ops"], summary="Readiness: every dependency answers")
    async def readyz() -> JSONResponse:
        failures = await readiness.check()
        body = {"status": "ready" if not failures else "not_ready", "service": service}
        if failures:
            body["failing"] = failures  # type: ignore[assignment]
        return JSONResponse(body, status_code=200 if not failures else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process entrypoint owns signals; several servers may share one loop.
        yield


class HttpServer:
    """Runs ``app`` on ``host:port`` inside the current event loop."""

    def __init__(self, app: FastAPI, host: str, port: int, *, setting: str = "LIVECART_HTTP_PORT"):
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
