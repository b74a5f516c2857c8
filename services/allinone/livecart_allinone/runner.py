"""Runs the eight services in one event loop: one in-process bus, one embedded Postgres
(each service still migrates and uses its own schema), one HTTP and one gRPC port each."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time

from livecart_allinone.settings import DevSettings
from livecart_analytics.app import SERVICE as ANALYTICS
from livecart_assistant.app import SERVICE as ASSISTANT
from livecart_chat.app import SERVICE as CHAT
from livecart_commerce.app import SERVICE as COMMERCE
from livecart_control.app import SERVICE as CONTROL
from livecart_core.auth import TokenAuthority
from livecart_core.bus import MemoryBus
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.service import Service, wait_for_signal
from livecart_core.settings import load_settings
from livecart_ingest.app import SERVICE as INGEST
from livecart_relay.app import SERVICE as RELAY
from livecart_transcode.app import SERVICE as TRANSCODE

DEV_SCOPES = [
    "commerce:admin",
    "commerce:buy",
    "publish",
    "publish:takeover",
    "play",
    "chat",
    "chat:moderate",
    "chat:system",
    "tokens:issue",
]
SERVICES = [CONTROL, INGEST, RELAY, TRANSCODE, CHAT, COMMERCE, ASSISTANT, ANALYTICS]
log = logging.getLogger("livecart.dev")


async def run(dev: DevSettings) -> None:
    started = time.perf_counter()
    postgres: EmbeddedPostgres | None = None
    database_url = os.environ.get("LIVECART_DATABASE_URL")
    if not database_url:
        postgres = EmbeddedPostgres(dev.dir.resolve() / "postgres", port=dev.postgres_port)
        await asyncio.to_thread(postgres.start)
        database_url = postgres.url
    # One signing secret for every service; a fresh one per run unless you set it.
    auth_secret = os.environ.get("LIVECART_AUTH_SECRET") or secrets.token_hex(32)
    bus = MemoryBus()
    await bus.start()
    services: list[Service] = []
    try:
        for index, definition in enumerate(SERVICES):
            # Chat's viewer WebSocket port sits beside the HTTP ports (8094 by default).
            listeners = (
                {"ws_host": dev.host, "ws_port": dev.http_port_base + 14}
                if "ws_port" in definition.settings.model_fields
                else {}
            )
            if definition is INGEST:  # ingest pipes its publishers to the relay beside it
                listeners["relay_grpc_address"] = f"{dev.host}:{dev.grpc_port_base + 2}"
            if definition is CHAT:  # chat forwards its viewers' buy button to commerce
                commerce_port = dev.grpc_port_base + SERVICES.index(COMMERCE)
                listeners["commerce_grpc_address"] = f"{dev.host}:{commerce_port}"
            settings = load_settings(
                definition.settings,
                bus="memory",
                database_url=database_url,
                migrate_on_start=True,
                http_host=dev.host,
                grpc_host=dev.host,
                http_port=dev.http_port_base + index,
                grpc_port=dev.grpc_port_base + index,
                database_pool_size=3,
                auth_secret=auth_secret,
                **listeners,
            )
            service = Service(definition, settings, bus=bus)
            services.append(service)
            await service.start()
        for service in services:
            # Start-up waits until every dependency answers, degraded ones too.
            while (report := await service.readiness.check()).status != "ready":
                log.info("waiting for %s: %s", service.name, report.failing | report.degraded)
                await asyncio.sleep(0.1)
        token = TokenAuthority(auth_secret).issue(
            "dev", "dev-merchant", DEV_SCOPES, ttl_s=7 * 24 * 3600
        )
        print(banner(services, database_url, time.perf_counter() - started), flush=True)
        print(f"  dev token (tenant 'dev', every scope): Authorization: Bearer {token}", flush=True)
        ingest, relay = services[SERVICES.index(INGEST)], services[SERVICES.index(RELAY)]
        assert ingest.http is not None and relay.http is not None
        print(
            f"  go live:  http://{dev.host}:{ingest.http.port}/publish/demo?token={token}\n"
            f"  watch:    http://{dev.host}:{relay.http.port}/play/demo?token={token}",
            flush=True,
        )
        await wait_for_signal()
    finally:
        for service in reversed(services):
            await service.stop()
        await bus.stop()
        if postgres is not None:
            await asyncio.to_thread(postgres.stop)


def banner(services: list[Service], database_url: str, elapsed_s: float) -> str:
    lines = ["", "Livecart dev: every service in one process (Ctrl-C stops)", ""]
    for s in services:
        assert s.http is not None
        base = f"http://{s.settings.http_host}:{s.http.port}"
        lines.append(
            f"  {s.name:<10} {base}/docs   grpc {s.settings.grpc_host}:{s.grpc_port}"
            f"   ({base}/healthz /readyz /metrics)"
        )
        if "ws" in s.endpoints:
            host = s.settings.http_host
            lines.append(f"  {'':<10} ws://{host}:{s.endpoints['ws']}/ws/rooms/{{room}}?token=…")
    lines += [
        "",
        f"  postgres   {database_url}",
        "  bus        in-process (Kafka semantics)",
        "",
        f"Livecart dev ready in {elapsed_s:.2f}s",
    ]
    return "\n".join(lines)
