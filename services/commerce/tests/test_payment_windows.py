"""How long a buyer has to pay: the flash sale's window, else the tenant's, else the service's
default; the expiry sweep lets each order go when its own window ends."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from .conftest import assert_refused, auth

SERVICE_DEFAULT_S = 600.0  # LIVECART_PAYMENT_TIMEOUT_S's default; the test process sets none


def window_s(order: dict[str, Any]) -> float:
    created = datetime.fromisoformat(order["created_at"])
    return (datetime.fromisoformat(order["expires_at"]) - created).total_seconds()


def new_shop(client: httpx.Client) -> tuple[str, dict[str, str], str]:
    """A fresh tenant, its merchant and a SKU with 20 units."""
    tenant = f"shop-{uuid.uuid4().hex[:8]}"
    merchant = auth(tenant, "merchant", "commerce:admin", "commerce:buy")
    sku = {"price_minor": 300, "currency": "USD", "stock": 20}
    made = client.post("/v1/products", headers=merchant, json={"title": "Mug", "skus": [sku]})
    assert made.status_code == 201, made.text
    return tenant, merchant, made.json()["skus"][0]["id"]


def flash_sale(client: httpx.Client, merchant: dict[str, str], sku: str, **sale: Any) -> str:
    now = datetime.now(UTC)
    body = {"sku_id": sku, "sale_price_minor": 100, "quantity": 5, "per_user_limit": 5,
            "starts_at": (now - timedelta(seconds=5)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(), **sale}  # fmt: skip
    made = client.post("/v1/flash-sales", headers=merchant, json=body)
    assert made.status_code == 201, made.text
    sale_id: str = made.json()["id"]
    return sale_id


def reserve(client: httpx.Client, headers: dict[str, str], sale: str) -> dict[str, Any]:
    made = client.post(f"/v1/flash-sales/{sale}/reservations", headers=headers, json={})
    assert made.status_code == 201, made.text
    order: dict[str, Any] = made.json()
    return order


def test_the_sale_then_the_tenant_then_the_service_sets_the_window(
    commerce: httpx.Client,
) -> None:
    tenant, merchant, sku = new_shop(commerce)
    buyer = auth(tenant, "ann", "commerce:buy")
    own = flash_sale(commerce, merchant, sku, payment_timeout_s=90)
    plain = flash_sale(commerce, merchant, sku)
    assert commerce.get(f"/v1/flash-sales/{own}", headers=buyer).json()["payment_timeout_s"] == 90
    assert commerce.get("/v1/settings", headers=merchant).json() == {"payment_timeout_s": None}
    assert window_s(reserve(commerce, buyer, plain)) == SERVICE_DEFAULT_S

    put = commerce.put("/v1/settings", headers=merchant, json={"payment_timeout_s": 120})
    assert put.status_code == 200 and put.json() == {"payment_timeout_s": 120}
    assert window_s(reserve(commerce, buyer, own)) == 90
    assert window_s(reserve(commerce, buyer, plain)) == 120
    items = {"items": [{"sku_id": sku, "quantity": 1}]}
    assert window_s(commerce.post("/v1/orders", headers=buyer, json=items).json()) == 120
    assert_refused(commerce.put("/v1/settings", headers=buyer, json={}), 403, "permission_denied")

    # Another tenant keeps the service's default.
    _, other, other_sku = new_shop(commerce)
    other_order = commerce.post(
        "/v1/orders", headers=other, json={"items": [{"sku_id": other_sku, "quantity": 1}]}
    )
    assert window_s(other_order.json()) == SERVICE_DEFAULT_S


def test_the_expiry_sweep_honours_each_orders_window(commerce: httpx.Client) -> None:
    tenant, merchant, sku = new_shop(commerce)
    buyer = auth(tenant, "bob", "commerce:buy")
    quick = flash_sale(commerce, merchant, sku, payment_timeout_s=1)
    slow = flash_sale(commerce, merchant, sku, payment_timeout_s=3600)
    quick_order = reserve(commerce, buyer, quick)
    slow_order = reserve(commerce, buyer, slow)

    deadline = time.monotonic() + 20
    state = "reserved"
    while state == "reserved" and time.monotonic() < deadline:
        time.sleep(0.2)  # the service's own sweeper runs every second
        state = commerce.get(f"/v1/orders/{quick_order['id']}", headers=buyer).json()["state"]
    assert state == "expired"
    assert commerce.get(f"/v1/flash-sales/{quick}", headers=buyer).json()["remaining"] == 5
    assert commerce.get(f"/v1/orders/{slow_order['id']}", headers=buyer).json()["state"] == (
        "reserved"
    )
