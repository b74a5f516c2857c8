"""A service whose database goes away reports not ready, and ready again when it returns."""

from __future__ import annotations

from pathlib import Path

import httpx

from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import ServiceProcess, grpc_health, ready, wait_until


def test_database_outage_flips_readiness_and_recovers(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    database = EmbeddedPostgres(tmp_path / "pg").start()
    env = {
        "LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "LIVECART_DATABASE_URL": database.url,
        "LIVECART_DATABASE_CONNECT_TIMEOUT_S": "1",
    }
    try:
        with ServiceProcess("livecart_commerce", env) as service:
            wait_until(lambda: ready(service.url), timeout_s=15)
            assert grpc_health(service.grpc_port, "commerce") == "SERVING"

            database.stop()
            wait_until(lambda: not ready(service.url), timeout_s=15)
            body = httpx.get(f"{service.url}/readyz", timeout=5).json()
            assert body["status"] == "not_ready" and "database" in body["failing"], body
            assert "bus" not in body["failing"], body
            wait_until(lambda: grpc_health(service.grpc_port, "commerce") == "NOT_SERVING", 15)
            assert httpx.get(f"{service.url}/healthz", timeout=5).status_code == 200

            database.start()
            wait_until(lambda: ready(service.url), timeout_s=20)
            wait_until(lambda: grpc_health(service.grpc_port, "commerce") == "SERVING", 15)
            assert service.stop() == 0, service.output
    finally:
        database.stop()
