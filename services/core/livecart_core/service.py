"""The life of one Livecart service: settings → bus → database → HTTP + gRPC → ready → stop.

A service package declares a :class:`ServiceDefinition`; its ``__main__`` calls
:func:`run_cli`, and the all-in-one runner builds several :class:`Service` objects that share
one in-process bus.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from typing import Any

import uvloop
from starlette.types import ASGIApp

from livecart_core.auth import TokenAuthority
from livecart_core.bus import EventBus, create_bus
from livecart_core.db import Database
from livecart_core.errors import ConfigError, StartupError
from livecart_core.health import Readiness
from livecart_core.http import HttpServer, UnavailableGuard, create_http_app
from livecart_core.logs import setup_logging
from livecart_core.loops import LoopState, Round, repeat, supervise
from livecart_core.rpc import bind_grpc, create_grpc_server
from livecart_core.settings import ServiceSettings, load_settings
from livecart_core.telemetry import setup_tracing

log = logging.getLogger("livecart.service")


@dataclass(frozen=True)
class ServiceDefinition:
    """What a service package tells the runtime about itself."""

    name: str
    package: str
    settings: type[ServiceSettings]
    uses_database: bool = False
    uses_auth: bool = False
    grpc_services: tuple[str, ...] = ()  # full names, listed by reflection
    setup: Callable[[Service], Awaitable[None]] | None = None

    @property
    def migrations(self) -> Traversable | None:
        folder = resources.files(self.package) / "migrations"
        return folder if folder.is_dir() else None


class Service:
    """One running service. ``start()`` returns once HTTP and gRPC are listening."""

    def __init__(
        self,
        definition: ServiceDefinition,
        settings: ServiceSettings,
        *,
        bus: EventBus | None = None,
    ) -> None:
        self.definition = definition
        self.settings = settings
        self.name = definition.name
        self.readiness = Readiness(self.name)
        self.http_app = create_http_app(self.name, self.readiness)
        self.grpc_server = create_grpc_server(
            self.name, self.readiness, reflection_names=definition.grpc_services
        )
        self.bus = bus or create_bus(settings)
        self._owns_bus = bus is None
        self.database: Database | None = None
        self._tokens: TokenAuthority | None = None
        self.http: HttpServer | None = None
        self.grpc_port = 0
        self._serving: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        # Listeners a service opens beside HTTP and gRPC (chat's WebSocket port), by name.
        self.endpoints: dict[str, int] = {}
        self._http_front: list[Callable[[ASGIApp], ASGIApp]] = []

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` first when the service stops (latest registered first): for what a
        service starts itself, such as its own listener."""
        self._on_stop.append(callback)

    def serve_ahead(self, layer: Callable[[ASGIApp], ASGIApp]) -> None:
        """Serve HTTP through ``layer(app)`` around the FastAPI app (the latest outermost): for
        a route so hot that it answers before FastAPI's per-request work (its telemetry,
        middleware, routing), as commerce's buy button does. The layer passes the rest on."""
        self._http_front.append(layer)

    @property
    def tokens(self) -> TokenAuthority:
        """Verifies callers' tokens (services with ``uses_auth``)."""
        if self._tokens is None:
            raise RuntimeError(f"{self.name} does not use auth")
        return self._tokens

    def run_in_background(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work()`` (a coroutine that loops by itself) for the life of the service; it
        is cancelled at stop. Whatever it raises, it is started again after a backoff
        (:func:`livecart_core.loops.supervise`); readiness reports it degraded meanwhile."""
        state = LoopState(self.name, name)
        self._start_background(name, supervise(state, work))
        self.readiness.add(name, state.check)

    def repeat_in_background(self, name: str, work: Round, *, idle_s: float) -> None:
        """Run rounds of ``work()`` for the life of the service: again at once while it
        returns True, after ``idle_s`` when it returns False, after a backoff when it raises
        (:func:`livecart_core.loops.repeat`); readiness reports it degraded while it fails."""
        state = LoopState(self.name, name)
        self._start_background(name, repeat(state, work, idle_s=idle_s))
        self.readiness.add(name, state.check)

    def _start_background(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"{self.name}-{name}")
        task.add_done_callback(_log_failure)
        self._background.append(task)

    async def start(self) -> None:
        s = self.settings
        setup_tracing(f"livecart-{self.name}", s.otlp_endpoint)
        if self.definition.uses_database and not s.database_url:
            raise ConfigError(f"LIVECART_DATABASE_URL is required by the {self.name} service")
        if self.definition.uses_auth:
            if s.auth_secret is None:
                raise ConfigError(f"LIVECART_AUTH_SECRET is required by the {self.name} service")
            self._tokens = TokenAuthority(s.auth_secret.get_secret_value())
        if self._owns_bus:
            await self.bus.start()
        self.readiness.add("bus", self.bus.check)
        if self.definition.uses_database:
            assert s.database_url is not None
            self.database = Database(
                s.database_url,
                self.name,
                pool_size=s.database_pool_size,
                connect_timeout_s=s.database_connect_timeout_s,
            )
            await self.database.connect()
            if s.migrate_on_start:
                await self.database.migrate(self.definition.migrations)
            self.readiness.add("database", self.database.check)
        if self.definition.setup is not None:
            await self.definition.setup(self)
        app: ASGIApp = self.http_app
        for layer in self._http_front:
            app = layer(app)
        if self._http_front:  # the layers ahead answer a dependency outage like the app does
            app = UnavailableGuard(app, self.name)
        # HttpServer only hands its app to uvicorn, which serves any ASGI app.
        self.http = HttpServer(app, s.http_host, s.http_port)
        self.grpc_port = bind_grpc(self.grpc_server, s.grpc_host, s.grpc_port)
        await self.grpc_server.start()
        self._serving = asyncio.create_task(self.http.serve(), name=f"{self.name}-http")
        self._watching = asyncio.create_task(
            self.readiness.watch(s.readiness_interval_s), name=f"{self.name}-readiness"
        )
        while not self.http.started:
            if self._serving.done():
                self._serving.result()  # raises what stopped the server
            await asyncio.sleep(0.01)
        log.info(
            "service started",
            extra={
                "service": self.name,
                "http_port": self.http.port,
                "grpc_port": self.grpc_port,
                **{f"{name}_port": port for name, port in self.endpoints.items()},
            },
        )

    async def stop(self) -> None:
        await self.readiness.drain()
        if self.settings.drain_s:
            log.info("draining", extra={"service": self.name, "for_s": self.settings.drain_s})
            await asyncio.sleep(self.settings.drain_s)
        for callback in reversed(self._on_stop):
            try:
                await callback()
            except Exception:
                log.exception("a stop callback failed", extra={"service": self.name})
        if self.http is not None:
            self.http.stop()
        await self.grpc_server.stop(grace=2)
        if self._watching is not None:
            self._watching.cancel()
        for work in self._background:
            work.cancel()
        for task in (*self._background, self._serving, self._watching):
            if task is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task
        if self._owns_bus:
            await self.bus.stop()
        if self.database is not None:
            await self.database.close()


def _log_failure(task: asyncio.Task[None]) -> None:
    # Supervised work never ends by itself; this would be a bug in the supervisor.
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "background task failed", exc_info=task.exception(), extra={"task": task.get_name()}
        )


async def wait_for_signal() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a service's main coroutine on uvloop (faster sockets for HTTP, gRPC and asyncpg)."""
    uvloop.run(main)


def fail(program: str, exc: BaseException) -> None:
    """Print the one line that says why the service cannot start, and exit 2."""
    print(f"{program}: cannot start: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)


def run_cli(definition: ServiceDefinition, argv: list[str] | None = None) -> None:
    """Entrypoint of ``python -m livecart_<name>``: ``serve`` (default) or ``migrate``."""
    program = f"livecart-{definition.name}"
    parser = argparse.ArgumentParser(prog=program)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    try:
        settings = load_settings(definition.settings)
    except ConfigError as exc:
        fail(program, exc)
    setup_logging(settings.log_level, settings.log_format)
    try:
        if args.command == "migrate":
            run_loop(_migrate(definition, settings))
        else:
            run_loop(_serve(definition, settings))
    except StartupError as exc:
        fail(program, exc)


async def _serve(definition: ServiceDefinition, settings: ServiceSettings) -> None:
    service = Service(definition, settings)
    try:
        await service.start()
        # Everything alive now (modules, app, pools) lives as long as the process: keep it out of
        # the collector's scans, which otherwise grow with it and stall busy request paths.
        gc.freeze()
        await wait_for_signal()
    finally:
        await service.stop()


async def _migrate(definition: ServiceDefinition, settings: ServiceSettings) -> None:
    if not definition.uses_database or not settings.database_url:
        raise ConfigError(f"LIVECART_DATABASE_URL is required to migrate {definition.name}")
    db = Database(settings.database_url, definition.name)
    await db.connect()
    try:
        applied = await db.migrate(definition.migrations)
        print(f"{definition.name}: applied {len(applied)} migration(s) {applied}")
    finally:
        await db.close()
