"""The gRPC factories: default deadlines, retries on UNAVAILABLE, health and reflection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from livecart_core.health import Readiness
from livecart_core.rpc import bind_grpc, create_channel, create_grpc_server

calls: dict[str, int] = {}


async def flaky(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    calls["flaky"] = calls.get("flaky", 0) + 1
    if calls["flaky"] < 3:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
    return b"ok"


async def slow(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    await asyncio.sleep(5)
    return b"late"


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = create_grpc_server("rpc-test", Readiness("rpc-test"))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "livecart.testing.Probe",
                {
                    "Flaky": grpc.unary_unary_rpc_method_handler(flaky),
                    "Slow": grpc.unary_unary_rpc_method_handler(slow),
                },
            )
        ]
    )
    bound = bind_grpc(server, "127.0.0.1", 0)
    await server.start()
    yield bound
    await server.stop(None)


async def test_unavailable_is_retried_by_the_channel(port: int) -> None:
    calls.clear()
    async with create_channel(f"127.0.0.1:{port}") as channel:
        assert await channel.unary_unary("/livecart.testing.Probe/Flaky")(b"") == b"ok"
    assert calls["flaky"] == 3


async def test_calls_get_the_default_deadline(port: int) -> None:
    async with create_channel(f"127.0.0.1:{port}", deadline_s=0.3) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await channel.unary_unary("/livecart.testing.Probe/Slow")(b"")
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_reflection_lists_health(port: int) -> None:
    def services() -> list[str]:
        # The reflection client is synchronous: run it off the loop that serves the server.
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            return list(ProtoReflectionDescriptorDatabase(channel).get_services())

    assert "grpc.health.v1.Health" in await asyncio.to_thread(services)
