"""Refused requests reach HTTP and gRPC clients as a clear status with a message, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import grpc
import httpx
import pytest
from pydantic import BaseModel

from livecart_core.errors import InvalidArgument, NotFound
from livecart_core.health import Readiness
from livecart_core.http import create_http_app
from livecart_core.metrics import GRPC_HANDLED
from livecart_core.rpc import bind_grpc, create_channel, create_grpc_server
from livecart_core.testing import free_port


async def query_a_database_that_is_down() -> None:
    """What a handler does while Postgres is down: the connection is refused."""
    await asyncpg.connect(f"postgresql://livecart@127.0.0.1:{free_port()}/livecart", timeout=2)


class Room(BaseModel):
    title: str
    capacity: int


async def test_http_maps_service_errors_and_validation_to_4xx() -> None:
    app = create_http_app("errors-http", Readiness("errors-http"))

    @app.get("/rooms/{room_id}")
    async def get_room(room_id: str) -> dict[str, str]:
        raise NotFound(f"room {room_id} does not exist")

    @app.post("/rooms")
    async def create_room(room: Room) -> dict[str, str]:
        return {"title": room.title}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        missing = await client.get("/rooms/r1")
        assert missing.status_code == 404
        assert missing.json() == {"error": "not_found", "message": "room r1 does not exist"}

        bad = await client.post("/rooms", json={"title": "sale", "capacity": "many"})
        assert bad.status_code == 422
        assert bad.json()["error"] == "invalid_argument"
        assert bad.json()["detail"][0]["loc"] == ["body", "capacity"]


async def test_http_answers_a_dependency_that_is_down_with_503_and_retry_after() -> None:
    app = create_http_app("errors-down", Readiness("errors-down"))

    @app.get("/orders")
    async def orders() -> dict[str, str]:
        await query_a_database_that_is_down()
        return {}

    @app.get("/bug")
    async def bug() -> dict[str, str]:
        raise KeyError("a bug, not an outage")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        down = await client.get("/orders")
        assert down.status_code == 503, down.text
        assert down.headers["Retry-After"] == "1"
        assert down.json()["error"] == "unavailable"
        assert "ConnectionRefusedError" in down.json()["message"]
        assert (await client.get("/bug")).status_code == 500  # bugs are not hidden as outages
        documented = app.openapi()["paths"]["/orders"]["get"]["responses"]["503"]
        assert "Retry-After" in documented["headers"]


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    async def unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        if request == b"":
            raise InvalidArgument("room_id is required")
        if request == b"boom":
            raise RuntimeError("bug")
        if request == b"down":
            await query_a_database_that_is_down()
        return request

    async def stream(
        request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        yield b"first"
        raise NotFound("room went away")

    server = create_grpc_server("errors-grpc", Readiness("errors-grpc"))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "livecart.testing.Echo",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(unary),
                    "Stream": grpc.unary_stream_rpc_method_handler(stream),
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


async def test_grpc_maps_service_errors_to_status_codes(channel: grpc.aio.Channel) -> None:
    unary = channel.unary_unary("/livecart.testing.Echo/Unary")
    assert await unary(b"hi") == b"hi"

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await unary(b"")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "room_id is required"

    with pytest.raises(grpc.aio.AioRpcError) as crashed:
        await unary(b"boom")
    assert crashed.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    failures = GRPC_HANDLED.labels("errors-grpc", "/livecart.testing.Echo/Unary", "INTERNAL")
    assert failures._value.get() == 1

    with pytest.raises(grpc.aio.AioRpcError) as down:
        await unary(b"down", timeout=20)
    assert down.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "ConnectionRefusedError" in (down.value.details() or "")

    call = channel.unary_stream("/livecart.testing.Echo/Stream")(b"x")
    assert await call.read() == b"first"
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await call.read()
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert gone.value.details() == "room went away"
