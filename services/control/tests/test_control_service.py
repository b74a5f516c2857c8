"""The control service as deployed: its own process against real Kafka and Postgres."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg

from livecart_core.testing import ServiceProcess, assert_serving


async def test_migrate_creates_the_control_schema(kafka_broker, postgres) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "LIVECART_DATABASE_URL": postgres.url}
    done = subprocess.run(
        [sys.executable, "-m", "livecart_control", "migrate"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    conn = await asyncpg.connect(postgres.url)
    try:
        assert await conn.fetchval("select to_regclass('control.schema_migrations')") is not None
    finally:
        await conn.close()


def test_control_serves_health_metrics_and_grpc(kafka_broker, postgres) -> None:  # type: ignore[no-untyped-def]
    env = {"LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "LIVECART_DATABASE_URL": postgres.url}
    with ServiceProcess("livecart_control", env) as service:
        assert_serving(service.url, service.grpc_port, "control")
        assert service.stop() == 0, service.output
