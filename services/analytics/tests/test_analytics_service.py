"""The analytics service as deployed: its own process against real Kafka and Postgres."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import ServiceProcess, assert_serving


async def test_migrate_creates_the_analytics_schema(postgres: EmbeddedPostgres) -> None:
    env = {**os.environ, "LIVECART_DATABASE_URL": postgres.url}
    migrate = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livecart_analytics",
        "migrate",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await migrate.communicate()
    assert migrate.returncode == 0, stderr.decode()
    conn = await asyncpg.connect(postgres.url)
    try:
        assert await conn.fetchval("select to_regclass('analytics.schema_migrations')") is not None
    finally:
        await conn.close()


def test_analytics_serves_health_metrics_and_grpc(
    kafka_broker: KafkaBroker, postgres: EmbeddedPostgres
) -> None:
    env = {
        "LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "LIVECART_DATABASE_URL": postgres.url,
    }
    with ServiceProcess("livecart_analytics", env) as service:
        assert_serving(service.url, service.grpc_port, "analytics")
        assert service.stop() == 0, service.output
