"""The gRPC boundary every service shares: corrupt request bytes, text that cannot be stored
and undecodable credentials get INVALID_ARGUMENT / UNAUTHENTICATED, not UNKNOWN or INTERNAL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecart.commerce.v1 import commerce_service_pb2 as commerce_pb
from livecart_core.auth import TokenAuthority, grpc_principal
from livecart_core.health import Readiness
from livecart_core.rpc import (
    _checked,
    _Refused,
    bind_grpc,
    create_channel,
    create_grpc_server,
    message_problem,
)

SECRET = "a-test-secret-that-is-long-enough-000"
METHOD = "/livecart.testing.Boundary/Check"


@pytest.fixture(scope="module")
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    authority = TokenAuthority(SECRET)

    async def check(request: commerce_pb.Sku, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[type-arg]
        if request.id == "auth":
            grpc_principal(authority, context.invocation_metadata(), "play")
        return request.id.encode()

    server = create_grpc_server("grpc-boundary", Readiness("grpc-boundary"))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "livecart.testing.Boundary",
                {
                    "Check": grpc.unary_unary_rpc_method_handler(
                        check, request_deserializer=commerce_pb.Sku.FromString
                    )
                },
            )
        ]
    )
    port = bind_grpc(server, "127.0.0.1", 0)
    await server.start()
    channel = create_channel(f"127.0.0.1:{port}")
    yield channel
    await channel.close()
    await server.stop(None)


async def status_of(channel: grpc.aio.Channel, body: bytes, **kwargs: object) -> grpc.StatusCode:
    try:
        await channel.unary_unary(METHOD)(body, **kwargs)  # type: ignore[arg-type]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_corrupt_message_bytes_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    good = commerce_pb.Sku(id="s1", attributes={"size": "M"}).SerializeToString()
    assert await status_of(channel, good) == grpc.StatusCode.OK
    for corrupt in (b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x02\xff\xfe", good[:-1]):
        assert await status_of(channel, corrupt) == grpc.StatusCode.INVALID_ARGUMENT, corrupt


async def test_nul_in_any_string_field_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    for sku in (
        commerce_pb.Sku(id="a\x00b"),
        commerce_pb.Sku(id="s", attributes={"k\x00": "v"}),
        commerce_pb.Sku(id="s", attributes={"k": "v\x00"}),
    ):
        call = channel.unary_unary(METHOD)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(sku.SerializeToString())
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "NUL" in (refused.value.details() or "")


async def test_credentials_that_are_not_text_are_unauthenticated(
    channel: grpc.aio.Channel,
) -> None:
    body = commerce_pb.Sku(id="auth").SerializeToString()
    undecodable = (("authorization-bin", b"\xff\xfe\x00"),)
    assert await status_of(channel, body, metadata=undecodable) == grpc.StatusCode.UNAUTHENTICATED
    token = TokenAuthority(SECRET).issue("t1", "u1", ["play"])
    as_bin = (("authorization-bin", f"Bearer {token}".encode()),)
    assert await status_of(channel, body, metadata=as_bin) == grpc.StatusCode.OK


_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    st.builds(
        commerce_pb.ReserveFlashSaleBatchRequest,
        reservations=st.lists(
            st.builds(
                commerce_pb.BuyerReservation,
                token=_TEXT,
                request=st.builds(
                    commerce_pb.ReserveFlashSaleRequest,
                    flash_sale_id=_TEXT,
                    quantity=st.integers(-(2**31), 2**31 - 1),
                    idempotency_key=_TEXT,
                ),
            ),
            max_size=4,
        ),
    )
)
def test_the_checked_parser_refuses_exactly_what_the_walk_finds(
    message: commerce_pb.ReserveFlashSaleBatchRequest,
) -> None:
    """The parser skips the walk for bytes without 0x00: never for a message that holds NUL."""
    parse = _checked(commerce_pb.ReserveFlashSaleBatchRequest.FromString)
    assert parse is not None
    parsed = parse(message.SerializeToString())
    assert isinstance(parsed, _Refused) == (message_problem(message) is not None)
