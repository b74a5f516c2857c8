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
