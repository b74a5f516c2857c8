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
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livecart_core.errors import StartupError
from livecart_core.health import Readiness
from livecart_core.metrics import HTTP_REQUESTS, HTTP_SECONDS
from livecart_core.telemetry import extract_context, tracer

_UNTRACED = {"/healthz", "/readyz", "/metrics"}


class TelemetryMiddleware:
    """Server span (continuing the caller's trace) and request metrics for every HTTP call."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNTRACED:
            await self.app(scope, receive, send)
            return
        status = 500
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method = scope["method"]
        started = time.perf_counter()
        with tracer("livecart.http").start_as_current_span(
            f"{method} {scope['path']}",
            context=extract_context(headers),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as span:
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                span.update_name(f"{method} {route}")
                span.set_attribute("http.response.status_code", status)
                HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
                HTTP_SECONDS.labels(self.service, method, route).observe(
                    time.perf_counter() - started
                )


def create_http_app(service: str, readiness: Readiness, **fastapi_args: Any) -> FastAPI:
    """A FastAPI app with the endpoints every service has; add routes to it."""
    app = FastAPI(title=f"Livecart {service}", **fastapi_args)
    app.add_middleware(TelemetryMiddleware, service=service)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid_request", "detail": exc.errors()}, status_code=422)

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
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"{setting}={port}: cannot listen on {host}:{port} ({exc.strerror})")
    sock.listen(2048)
    sock.setblocking(False)
    return sock
