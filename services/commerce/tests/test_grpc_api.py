"""The commerce gRPC API as a client sees it: real channel, real service process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from livecart.commerce.v1 import commerce_service_pb2 as pb
from livecart.commerce.v1 import commerce_service_pb2_grpc as pb_grpc
from livecart_core.rpc import create_channel
from livecart_core.testing import ServiceProcess

from .conftest import TOKENS, new_sale


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
    again = await stub.ReserveFlashSale(ask, metadata=bearer("gina"))
    assert again.order_id == reply.order_id
    seen = await stub.GetFlashSale(pb.GetFlashSaleRequest(flash_sale_id=sale), metadata=bearer("x"))
    assert seen.flash_sale.remaining == 0

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
