"""The commerce gRPC API as a client sees it: real channel, real service process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from livecart.commerce.v1 import commerce_service_pb2 as pb
from livecart.commerce.v1 import commerce_service_pb2_grpc as pb_grpc
from livecart_core.rpc import create_channel
from livecart_core.testing import ServiceProcess

from .conftest import MERCHANT, TOKENS, new_sale


@pytest.fixture
async def stub(commerce_process: ServiceProcess) -> AsyncIterator[pb_grpc.CommerceServiceStub]:
    async with create_channel(f"127.0.0.1:{commerce_process.grpc_port}") as channel:
        yield pb_grpc.CommerceServiceStub(channel)


def bearer(user: str, *scopes: str, tenant: str = "shop-a") -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {TOKENS.issue(tenant, user, scopes or ('commerce:buy',))}")]


async def test_reserve_over_grpc(stub: pb_grpc.CommerceServiceStub, commerce: httpx.Client) -> None:
    _, sale = new_sale(commerce, quantity=1)
    ask = pb.ReserveFlashSaleRequest(flash_sale_id=sale, quantity=1, idempotency_key="g1")
    reply = await stub.ReserveFlashSale(ask, metadata=bearer("gina"))
    assert reply.unit_price_minor == 9900 and reply.currency == "USD"
    assert reply.buyer_id == "gina"
    again = await stub.ReserveFlashSale(ask, metadata=bearer("gina"))
    assert again.order_id == reply.order_id
    seen = await stub.GetFlashSale(pb.GetFlashSaleRequest(flash_sale_id=sale), metadata=bearer("x"))
    assert seen.flash_sale.remaining == 0
    assert seen.flash_sale.payment_timeout_s == 0  # none of its own: the tenant's default

    with pytest.raises(grpc.aio.AioRpcError) as sold_out:
        other = pb.ReserveFlashSaleRequest(flash_sale_id=sale, quantity=1, idempotency_key="h1")
        await stub.ReserveFlashSale(other, metadata=bearer("hugo"))
    assert sold_out.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert sold_out.value.details() == "sold out"


@pytest.mark.parametrize(
    ("request_", "metadata", "code"),
    [
        (pb.ReserveFlashSaleRequest(flash_sale_id="nope", quantity=1, idempotency_key="k"),
         "buyer", grpc.StatusCode.INVALID_ARGUMENT),
        (pb.ReserveFlashSaleRequest(flash_sale_id="7d3c1c4e-49c3-4d1e-9c53-2d0f3f0b1a11",
                                    quantity=0, idempotency_key="k"),
         "buyer", grpc.StatusCode.INVALID_ARGUMENT),
        (pb.ReserveFlashSaleRequest(flash_sale_id="7d3c1c4e-49c3-4d1e-9c53-2d0f3f0b1a11",
                                    quantity=1, idempotency_key="k"),
         "buyer", grpc.StatusCode.NOT_FOUND),
        (pb.ReserveFlashSaleRequest(flash_sale_id="7d3c1c4e-49c3-4d1e-9c53-2d0f3f0b1a11",
                                    quantity=1, idempotency_key="k"),
         "none", grpc.StatusCode.UNAUTHENTICATED),
        (pb.ReserveFlashSaleRequest(flash_sale_id="7d3c1c4e-49c3-4d1e-9c53-2d0f3f0b1a11",
                                    quantity=1, idempotency_key="k"),
         "no-scope", grpc.StatusCode.PERMISSION_DENIED),
    ],
)  # fmt: skip
async def test_bad_grpc_calls_get_a_status(
    stub: pb_grpc.CommerceServiceStub,
    request_: pb.ReserveFlashSaleRequest,
    metadata: str,
    code: grpc.StatusCode,
) -> None:
    sent = {
        "buyer": bearer("ivy"),
        "none": [],
        "no-scope": bearer("ivy", "commerce:nothing"),
    }[metadata]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ReserveFlashSale(request_, metadata=sent)
    assert refused.value.code() == code
    assert refused.value.details()


async def test_product_and_pinned_product_over_grpc(
    stub: pb_grpc.CommerceServiceStub, commerce: httpx.Client
) -> None:
    def make_product() -> str:
        made = commerce.post(
            "/v1/products",
            headers=MERCHANT,
            json={"title": "Silk scarf", "description": "Mulberry silk.",
                  "images": ["https://cdn.example.com/scarf.jpg"],
                  "shipping": {"ships_from": "Hangzhou", "min_days": 2, "max_days": 5},
                  "returns": {"window_days": 7},
                  "faq": [{"question": "Washable?", "answer": "Hand wash cold."}],
                  "skus": [{"price_minor": 4900, "currency": "USD", "stock": 3,
                            "attributes": {"colour": "red"}}]},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        product_id: str = made.json()["id"]
        return product_id

    product_id = await asyncio.to_thread(make_product)
    got = await stub.GetProduct(pb.GetProductRequest(product_id=product_id), metadata=bearer("x"))
    product = got.product
    assert (product.title, product.description, list(product.images)) == (
        "Silk scarf", "Mulberry silk.", ["https://cdn.example.com/scarf.jpg"],
    )  # fmt: skip
    assert product.shipping.ships_from == "Hangzhou" and product.returns.window_days == 7
    assert product.faq[0].answer == "Hand wash cold."
    assert product.skus[0].price_minor == 4900 and dict(product.skus[0].attributes) == {
        "colour": "red"
    }

    room = f"room-{uuid.uuid4().hex[:8]}"
    ask = pb.GetPinnedProductRequest(room_id=room)
    assert not (await stub.GetPinnedProduct(ask, metadata=bearer("x"))).pinned

    def pin() -> None:
        lineup = {"product_ids": [product_id]}
        assert commerce.put(f"/v1/rooms/{room}/lineup", headers=MERCHANT, json=lineup).is_success
        pin = {"product_id": product_id}
        assert commerce.put(f"/v1/rooms/{room}/pin", headers=MERCHANT, json=pin).is_success

    await asyncio.to_thread(pin)
    on_screen = await stub.GetPinnedProduct(ask, metadata=bearer("x"))
    assert on_screen.pinned and on_screen.product.id == product_id
    assert on_screen.pinned_at.seconds > 0
    other_tenant = await stub.GetPinnedProduct(ask, metadata=bearer("x", tenant="shop-b"))
    assert not other_tenant.pinned

    for bad, code in [
        (pb.GetProductRequest(product_id="nope"), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.GetProductRequest(product_id=str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetProduct(bad, metadata=bearer("x"))
        assert refused.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as theirs:
        await stub.GetProduct(
            pb.GetProductRequest(product_id=product_id), metadata=bearer("x", tenant="shop-b")
        )
    assert theirs.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as no_room:
        await stub.GetPinnedProduct(pb.GetPinnedProductRequest(room_id=""), metadata=bearer("x"))
    assert no_room.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def reservation(
    sale: str, key: str, user: str = "", *scopes: str, quantity: int = 1, tenant: str = "shop-a"
) -> pb.BuyerReservation:
    token = TOKENS.issue(tenant, user, scopes or ("commerce:buy",)) if user else "not-a-token"
    return pb.BuyerReservation(
        token=token,
        request=pb.ReserveFlashSaleRequest(
            flash_sale_id=sale, quantity=quantity, idempotency_key=key
        ),
    )


async def test_a_batch_answers_each_buyer_as_a_single_reservation_would(
    stub: pb_grpc.CommerceServiceStub, commerce: httpx.Client
) -> None:
    _, sale = new_sale(commerce, quantity=3, limit=1)
    batch = [
        reservation(sale, "b1", "bea"),
        reservation(sale, "b2", "bea"),  # over the per-user limit of 1
        reservation(sale, "c1", "cai"),
        reservation(sale, "x1"),  # a token that is not one
        reservation(sale, "d1", "dan", "chat"),  # no commerce:buy
        reservation(sale, "e1", "eve", quantity=0),
        reservation("not-a-uuid", "e2", "eve"),
        reservation(sale, "f1", "fay", tenant="shop-b"),  # another tenant's sale
        reservation(sale, "g1", "gus"),
        reservation(sale, "h1", "hal"),  # the sale has 3 units
    ]
    answer = await stub.ReserveFlashSaleBatch(pb.ReserveFlashSaleBatchRequest(reservations=batch))
    outcomes = [
        r.order.buyer_id if r.HasField("order") else (r.refusal.code, r.refusal.http_status)
        for r in answer.results
    ]
    assert outcomes == [
        "bea", ("limit_exceeded", 409), "cai", ("unauthenticated", 401),
        ("permission_denied", 403), ("invalid_argument", 400), ("invalid_argument", 400),
        ("not_found", 404), "gus", ("sold_out", 409),
    ]  # fmt: skip
    # A batch is as idempotent as single calls: the same keys find the same orders.
    again = await stub.ReserveFlashSaleBatch(
        pb.ReserveFlashSaleBatchRequest(reservations=[batch[0], batch[2]])
    )
    assert [r.order.order_id for r in again.results] == [
        answer.results[0].order.order_id,
        answer.results[2].order.order_id,
    ]
    single = await stub.ReserveFlashSale(
        pb.ReserveFlashSaleRequest(flash_sale_id=sale, quantity=1, idempotency_key="g1"),
        metadata=bearer("gus"),
    )
    assert single.order_id == answer.results[8].order.order_id
    for buyer, held in (("bea", 1), ("cai", 1), ("gus", 1), ("hal", 0), ("eve", 0)):
        orders = await asyncio.to_thread(
            commerce.get, f"/v1/orders?buyer={buyer}", headers=MERCHANT
        )
        assert orders.status_code == 200, orders.text
        assert [o["flash_sale_id"] for o in orders.json()["orders"]].count(sale) == held, buyer


async def test_a_batch_over_the_limit_is_refused_whole(
    stub: pb_grpc.CommerceServiceStub,
) -> None:
    sale = str(uuid.uuid4())
    too_many = [reservation(sale, f"k{i}", "ivy") for i in range(513)]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ReserveFlashSaleBatch(pb.ReserveFlashSaleBatchRequest(reservations=too_many))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    empty = await stub.ReserveFlashSaleBatch(pb.ReserveFlashSaleBatchRequest())
    assert list(empty.results) == []
