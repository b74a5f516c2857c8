"""The relay service as deployed: its own process against real Kafka (no database at
the edge)."""

from __future__ import annotations

from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.testing import assert_service_runs


def test_relay_serves_health_metrics_and_grpc(kafka_broker: KafkaBroker) -> None:
    assert_service_runs("relay", {"LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap})
