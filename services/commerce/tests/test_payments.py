"""Paying through the simulated provider and its signed webhook, over real HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import asyncpg
import httpx

from livecart.events.v1.commerce_pb2 import CommerceEvent
from livecart_commerce.expiry import ExpirySweeper
from livecart_core.db import Database
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import TEST_AUTH_SECRET

from .conftest import auth, new_sale


def reserve(client: httpx.Client, sale: str, user: str) -> tuple[dict[str, str], str]:
    headers = auth("shop-a", user, "commerce:buy")
    made = client.post(
        f"/v1/flash-sales/{sale}/reservations",
        headers={**headers, "Idempotency-Key": f"{sale}-{user}"},
        json={"quantity": 1},
    )
    assert made.status_code == 201, made.text
    return headers, made.json()["id"]


def test_pay_through_the_simulated_provider(
    commerce: httpx.Client, postgres: EmbeddedPostgres
) -> None:
    _, sale = new_sale(commerce, quantity=2)
    ann, order = reserve(commerce, sale, "ann")
    payment = commerce.post(f"/v1/orders/{order}/payments", headers=ann)
    assert payment.status_code == 201, payment.text
    assert payment.json()["amount_minor"] == 9900 and payment.json()["provider"] == "simulated"
    again = commerce.post(f"/v1/orders/{order}/payments", headers=ann)
    assert again.json()["reference"] == payment.json()["reference"]  # the same pending payment

    reference = payment.json()["reference"]
    done = commerce.post(f"/v1/simulated-provider/payments/{reference}/complete", headers=ann)
    assert done.status_code == 200, done.text
    assert done.json() == {"webhook_status": 200, "webhook": {"reference": reference,
                                                              "state": "succeeded"}}  # fmt: skip
    assert commerce.get(f"/v1/orders/{order}", headers=ann).json()["state"] == "paid"
    repeat = commerce.post(f"/v1/simulated-provider/payments/{reference}/complete", headers=ann)
    assert repeat.json()["webhook"]["state"] == "succeeded"  # a repeated webhook changes nothing
    paid_again = commerce.post(f"/v1/orders/{order}/payments", headers=ann)
    assert paid_again.status_code == 409 and paid_again.json()["error"] == "order_not_payable"

    async def paid_events() -> list[str]:
        conn = await asyncpg.connect(postgres.url)  # this sync test runs outside the test loop
        try:
            rows = await conn.fetch("select payload from commerce.outbox")
        finally:
            await conn.close()
        events = [CommerceEvent.FromString(r["payload"]) for r in rows]
        return [e.order_paid.order_id for e in events if e.HasField("order_paid")]

    assert asyncio.run(paid_events()).count(order) == 1


def test_webhook_rejects_bad_signatures_and_bodies(commerce: httpx.Client) -> None:
    body = json.dumps({"reference": "sim_x", "status": "succeeded"}).encode()
    unsigned = commerce.post("/v1/payments/webhook", content=body)
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "unauthenticated"
    forged = commerce.post(
        "/v1/payments/webhook", content=body, headers={"Livecart-Signature": "0" * 64}
    )
    assert forged.status_code == 401
    key = hmac.new(TEST_AUTH_SECRET.encode(), b"livecart-payment-webhook", hashlib.sha256).digest()
    junk = b"not json"
    signed_junk = commerce.post(
        "/v1/payments/webhook",
        content=junk,
        headers={"Livecart-Signature": hmac.new(key, junk, hashlib.sha256).hexdigest()},
    )
    assert signed_junk.status_code == 400 and signed_junk.json()["error"] == "invalid_argument"
    unknown = commerce.post(
        "/v1/payments/webhook",
        content=body,
        headers={"Livecart-Signature": hmac.new(key, body, hashlib.sha256).hexdigest()},
    )
    assert unknown.status_code == 404


async def test_money_after_expiry_is_refunded_not_double_sold(
    commerce: httpx.Client, commerce_db: Database
) -> None:
    _, sale = new_sale(commerce, quantity=1)
    bob, order = await asyncio.to_thread(reserve, commerce, sale, "bob")
    payment = await asyncio.to_thread(commerce.post, f"/v1/orders/{order}/payments", headers=bob)
    reference = payment.json()["reference"]
    async with commerce_db.pool.acquire() as conn:  # the payment window passes
        await conn.execute("update orders set expires_at = now() where id = $1::uuid", order)
    await ExpirySweeper(commerce_db.pool).sweep_once()
    done = await asyncio.to_thread(
        commerce.post, f"/v1/simulated-provider/payments/{reference}/complete", headers=bob
    )
    assert done.json()["webhook"]["state"] == "refunded"
    state = await asyncio.to_thread(commerce.get, f"/v1/orders/{order}", headers=bob)
    assert state.json()["state"] == "expired"
    async with commerce_db.pool.acquire() as conn:
        assert await conn.fetchval(
            "select remaining from flash_sales where id = $1::uuid", sale
        ) == 1  # fmt: skip


def test_the_simulated_provider_pays_only_for_the_payer(commerce: httpx.Client) -> None:
    _, sale = new_sale(commerce, quantity=1)
    ann, order = reserve(commerce, sale, f"ann-{sale}")
    reference = commerce.post(f"/v1/orders/{order}/payments", headers=ann).json()["reference"]
    url = f"/v1/simulated-provider/payments/{reference}/complete"
    for stranger in (
        auth("shop-z", "eve", "commerce:buy", "commerce:admin"),  # another tenant
        auth("shop-a", f"bob-{sale}", "commerce:buy"),  # another buyer of the tenant
    ):
        for status in ("succeeded", "failed"):
            refused = commerce.post(url, params={"status": status}, headers=stranger)
            assert refused.status_code == 404 and refused.json()["error"] == "not_found"
    assert commerce.get(f"/v1/orders/{order}", headers=ann).json()["state"] == "reserved"
    odd = commerce.post(url, params={"status": "maybe"}, headers=ann)
    assert odd.status_code == 422 and odd.json()["error"] == "invalid_argument"
    done = commerce.post(url, headers=ann)
    assert done.status_code == 200 and done.json()["webhook"]["state"] == "succeeded"
    assert commerce.get(f"/v1/orders/{order}", headers=ann).json()["state"] == "paid"
