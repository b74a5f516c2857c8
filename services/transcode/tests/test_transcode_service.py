"""The transcode service as deployed: its own process against real Kafka (no database at
the edge)."""

from __future__ import annotations

from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.testing import ServiceProcess, assert_serving


def test_transcode_serves_health_metrics_and_grpc(kafka_broker: KafkaBroker) -> None:
    with ServiceProcess(
        "livecart_transcode", {"LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap}
    ) as service:
        assert_serving(service.url, service.grpc_port, "transcode")
        assert service.stop() == 0, service.output
