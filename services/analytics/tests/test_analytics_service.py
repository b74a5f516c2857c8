"""The analytics service as deployed: its own process against real Kafka and Postgres."""

from __future__ import annotations

from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import assert_migrates, assert_service_runs


async def test_migrate_creates_the_analytics_schema(postgres: EmbeddedPostgres) -> None:
    await assert_migrates("analytics", postgres.url)


def test_analytics_serves_health_metrics_and_grpc(
    kafka_broker: KafkaBroker, postgres: EmbeddedPostgres
) -> None:
    env = {
        "LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "LIVECART_DATABASE_URL": postgres.url,
    }
    assert_service_runs("analytics", env)
