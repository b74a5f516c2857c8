"""Integers past what a column, a wire type or a JSON reader holds are refused with a 4xx that
names the field, before they reach Postgres; nothing is taken from stock on the way."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from livecart_core.rules import INT32_MAX, INT64_MAX, MONEY_MAX

from .conftest import assert_refused, auth


class Shop:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.tenant = f"shop-{uuid.uuid4().hex[:8]}"
        self.merchant = auth(self.tenant, "merchant", "commerce:admin", "commerce:buy")

    def product(self, **sku: Any) -> httpx.Response:
        body = {"price_minor": 100, "currency": "USD", "stock": 10, **sku}
        return self.client.post(
            "/v1/products", headers=self.merchant, json={"title": "Lamp", "skus": [body]}
        )

    def sku(self, **sku: Any) -> dict[str, Any]:
        made = self.product(**sku)
        assert made.status_code == 201, made.text
        found: dict[str, Any] = made.json()["skus"][0]
        return found


@pytest.fixture
def shop(commerce: httpx.Client) -> Shop:
    return Shop(commerce)


def refused_naming(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] in ("invalid_argument", "total_too_large"), response.text
    assert field in response.text, response.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stock", INT32_MAX + 1),
        ("stock", -1),
        ("price_minor", INT64_MAX + 1),
        ("price_minor", 2**63 - 1),
        ("price_minor", MONEY_MAX + 1),
    ],
)
def test_sku_integers_past_their_range_are_refused(shop: Shop, field: str, value: int) -> None:
    refused_naming(shop.product(**{field: value}), 422, field)


def test_shipping_fee_past_money_range_is_refused(shop: Shop) -> None:
    shipping = {"ships_from": "Ningbo", "min_days": 1, "max_days": 2, "fee_minor": 2**63}
    made = shop.client.post(
        "/v1/products",
        headers=shop.merchant,
        json={"title": "Lamp", "shipping": shipping,
              "skus": [{"price_minor": 1, "currency": "USD", "stock": 1}]},
    )  # fmt: skip
    refused_naming(made, 422, "fee_minor")


def test_sku_changes_stay_in_range(shop: Shop) -> None:
    sku = shop.sku(stock=INT32_MAX - 10)
    url = f"/v1/skus/{sku['id']}"
    refused_naming(
        shop.client.patch(url, headers=shop.merchant, json={"stock_delta": 100}), 400, "stock_delta"
    )
    refused_naming(
        shop.client.patch(url, headers=shop.merchant, json={"price_minor": 2**63}),
        422,
        "price_minor",
    )
    kept = shop.client.patch(url, headers=shop.merchant, json={"stock_delta": 10})
    assert kept.status_code == 200 and kept.json()["stock"] == INT32_MAX


def sale_body(sku: str, **sale: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"sku_id": sku, "sale_price_minor": 100, "quantity": 1,
            "starts_at": now.isoformat(), "ends_at": (now + timedelta(hours=1)).isoformat(),
            **sale}  # fmt: skip


@pytest.mark.parametrize(
    ("sale", "field"),
    [
        ({"sale_price_minor": 2**63}, "sale_price_minor"),
        ({"sale_price_minor": MONEY_MAX, "per_user_limit": 2}, "sale_price_minor"),
        ({"quantity": 2**31}, "quantity"),
        ({"per_user_limit": 2**31}, "per_user_limit"),
        ({"payment_timeout_s": 2**31}, "payment_timeout_s"),
        ({"payment_timeout_s": 0}, "payment_timeout_s"),
    ],
)
def test_flash_sale_integers_past_their_range_are_refused(
    shop: Shop, sale: dict[str, Any], field: str
) -> None:
    sku = shop.sku()
    made = shop.client.post(
        "/v1/flash-sales", headers=shop.merchant, json=sale_body(sku["id"], **sale)
    )
    refused_naming(made, 422, field)


def test_an_order_total_past_the_money_range_is_refused_and_takes_nothing(shop: Shop) -> None:
    sku = shop.sku(price_minor=MONEY_MAX // 2 + 1, stock=5)
    buyer = auth(shop.tenant, "ann", "commerce:buy")
    order = shop.client.post(
        "/v1/orders", headers=buyer, json={"items": [{"sku_id": sku["id"], "quantity": 2}]}
    )
    assert_refused(order, 400, "total_too_large")
    assert "total_minor" in order.json()["message"]
    cart = shop.client.put(f"/v1/cart/items/{sku['id']}", headers=buyer, json={"quantity": 2})
    assert cart.status_code == 200, cart.text
    assert_refused(shop.client.post("/v1/cart/checkout", headers=buyer), 400, "total_too_large")
    products = shop.client.get("/v1/products", headers=shop.merchant).json()["products"]
    assert products[0]["skus"][0]["stock"] == 5
    one = shop.client.post(
        "/v1/orders", headers=buyer, json={"items": [{"sku_id": sku["id"], "quantity": 1}]}
    )
    assert one.status_code == 201 and one.json()["total_minor"] == MONEY_MAX // 2 + 1


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/red-packets", {"room_id": "r", "total_minor": 2**63, "currency": "CNY",
                             "shares": 1}, "total_minor"),
        ("/v1/red-packets", {"room_id": "r", "total_minor": 10, "currency": "CNY",
                             "shares": 2**31}, "shares"),
        ("/v1/settings", {"payment_timeout_s": 2**31}, "payment_timeout_s"),
    ],
)  # fmt: skip
def test_other_integers_past_their_range_are_refused(
    shop: Shop, path: str, body: dict[str, Any], field: str
) -> None:
    method = "PUT" if path == "/v1/settings" else "POST"
    answer = shop.client.request(
        method, path, headers={**shop.merchant, "Idempotency-Key": uuid.uuid4().hex}, json=body
    )
    refused_naming(answer, 422, field)


@pytest.mark.parametrize(
    ("starts_at", "ends_at", "field"),
    [
        ("0001-01-01T00:00:00+01:00", "2030-01-01T00:00:00Z", "starts_at"),  # year 0 in UTC
        ("2030-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00", "ends_at"),  # year 10000 in UTC
        ("2030-01-01T00:00:00", "2030-01-02T00:00:00Z", "starts_at"),  # no offset: whose time?
    ],
)
def test_times_past_the_calendar_or_without_an_offset_are_refused(
    shop: Shop, starts_at: str, ends_at: str, field: str
) -> None:
    sku = shop.sku()
    body = sale_body(sku["id"], starts_at=starts_at, ends_at=ends_at)
    refused_naming(
        shop.client.post("/v1/flash-sales", headers=shop.merchant, json=body), 422, field
    )
    lottery = {"room_id": "r", "keyword": "k", "prize_sku_id": sku["id"], "winners": 1,
               "opens_at": starts_at, "closes_at": ends_at}  # fmt: skip
    opened = shop.client.post("/v1/lotteries", headers=shop.merchant, json=lottery)
    refused_naming(opened, 422, {"starts_at": "opens_at", "ends_at": "closes_at"}[field])


def test_a_cursor_past_the_calendar_is_refused(shop: Shop) -> None:
    inside = base64.urlsafe_b64encode(f"0001-01-01T00:00:00+01:00|{uuid.UUID(int=0)}".encode())
    answer = shop.client.get(
        "/v1/orders", params={"cursor": inside.decode()}, headers=shop.merchant
    )
    assert_refused(answer, 400, "invalid_argument")
