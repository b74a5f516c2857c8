"""Readiness means "this pod can serve": a database outage leaves commerce ready but degraded
(so Kubernetes keeps routing to it), its requests are answered 503 with Retry-After, its
background loops retry and say so, and all of it returns to normal when the database does."""

from __future__ import annotations

import re
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from livecart_core.auth import TokenAuthority
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import TEST_AUTH_SECRET, ServiceProcess, grpc_health, wait_until

TOKENS = TokenAuthority(TEST_AUTH_SECRET)
MERCHANT = {
    "Authorization": f"Bearer {TOKENS.issue('ready-shop', 'm', ['commerce:admin', 'commerce:buy'])}"
}


def readyz(url: str) -> tuple[int, dict[str, Any]]:
    answer = httpx.get(f"{url}/readyz", params={"verbose": "true"}, timeout=5)
    return answer.status_code, answer.json()


def metric(url: str, name: str, **labels: str) -> float | None:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for line in text.splitlines():
        found = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if found and all(f'{k}="{v}"' in found.group(1) for k, v in labels.items()):
            return float(found.group(2))
    return None


def open_sale(client: httpx.Client) -> str:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    product = client.post(
        "/v1/products",
        headers=MERCHANT | key,
        json={"title": "Kettle", "skus": [{"price_minor": 900, "currency": "EUR", "stock": 50}]},
    )
    assert product.status_code == 201, product.text
    now = datetime.now(UTC)
    sale = client.post(
        "/v1/flash-sales",
        headers=MERCHANT | {"Idempotency-Key": uuid.uuid4().hex},
        json={
            "sku_id": product.json()["skus"][0]["id"],
            "sale_price_minor": 100,
            "quantity": 50,
            "starts_at": (now - timedelta(seconds=1)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
        },
    )
    assert sale.status_code == 201, sale.text
    return str(sale.json()["id"])


def buy(client: httpx.Client, sale: str) -> httpx.Response:
    """One reservation by a new buyer (each buyer may buy one unit)."""
    buyer = TOKENS.issue("ready-shop", uuid.uuid4().hex, ["commerce:buy"])
    return client.post(
        f"/v1/flash-sales/{sale}/reservations",
        headers={"Authorization": f"Bearer {buyer}", "Idempotency-Key": uuid.uuid4().hex},
        json={"quantity": 1},
    )


def test_a_database_outage_degrades_but_keeps_the_pod_ready(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    database = EmbeddedPostgres(tmp_path / "pg").start()
    env = {
        "LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "LIVECART_DATABASE_URL": database.url,
        "LIVECART_DATABASE_CONNECT_TIMEOUT_S": "1",
        "LIVECART_MIGRATE_ON_START": "true",
    }
    try:
        with (
            ServiceProcess("livecart_commerce", env) as service,
            httpx.Client(base_url=service.url, timeout=10) as client,
        ):
            wait_until(lambda: readyz(service.url)[1]["status"] == "ready", timeout_s=15)
            assert grpc_health(service.grpc_port, "commerce") == "SERVING"
            sale = open_sale(client)
            assert buy(client, sale).status_code == 201

            database.stop()
            wait_until(lambda: readyz(service.url)[1]["status"] == "degraded", timeout_s=15)
            status, body = readyz(service.url)
            assert status == 200, body
            assert "database" in body["degraded"] and body["checks"]["database"] != "up", body
            assert body["checks"]["bus"] == "up", body
            assert grpc_health(service.grpc_port, "commerce") == "SERVING"
            assert metric(service.url, "livecart_dependency_up", dependency="database") == 0
            # The loops that need the database retry, and say so.
            wait_until(
                lambda: (
                    metric(service.url, "livecart_background_retrying", task="outbox-relay") == 1
                ),
                timeout_s=10,
            )
            # Requests are answered fast, 503 with Retry-After: the lean buy route and the rest.
            for answer in (buy(client, sale), client.get("/v1/orders", headers=MERCHANT)):
                assert answer.status_code == 503, answer.text
                assert answer.headers["Retry-After"] == "1"
                assert answer.json()["error"] == "unavailable", answer.text
                assert answer.elapsed.total_seconds() < 5

            database.start()
            wait_until(lambda: readyz(service.url)[1]["status"] == "ready", timeout_s=20)
            wait_until(lambda: buy(client, sale).status_code == 201, timeout_s=10)
            wait_until(
                lambda: (
                    metric(service.url, "livecart_background_retrying", task="outbox-relay") == 0
                ),
                timeout_s=10,
            )
            assert (metric(service.url, "livecart_background_failures_total", task="outbox-relay")
                    or 0) >= 1  # fmt: skip
            assert service.stop() == 0, service.output
    finally:
        database.stop()


def test_sigterm_drains_unready_while_still_serving(kafka_broker: KafkaBroker) -> None:
    env = {"LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "LIVECART_DRAIN_S": "3"}
    with ServiceProcess("livecart_relay", env) as service:
        wait_until(lambda: readyz(service.url)[1]["status"] == "ready", timeout_s=15)
        assert service.process is not None
        service.process.send_signal(signal.SIGTERM)
        wait_until(lambda: readyz(service.url)[0] == 503, timeout_s=2)
        body = readyz(service.url)[1]
        assert body["status"] == "not_ready" and "draining" in body["failing"], body
        assert grpc_health(service.grpc_port) == "NOT_SERVING"
        assert httpx.get(f"{service.url}/healthz", timeout=2).status_code == 200  # serving
        assert service.stop() == 0, service.output
