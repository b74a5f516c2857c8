"""Chat's REST and gRPC API as tenants and services call it: room-bound tokens stay in their
room on every room-scoped endpoint, integers past their column's range are refused, and a
system event no consumer could store or show never enters the room's stream."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from livecart.chat.v1 import chat_service_pb2 as pb
from livecart.chat.v1 import chat_service_pb2_grpc as pb_grpc
from livecart.events.v1.chat_pb2 import ChatEvent, SystemEvent
from livecart.events.v1.commerce_pb2 import CommerceEvent, RedPacketCreated
from livecart_core.bus import KafkaBus
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.rpc import create_channel
from livecart_core.rules import INT64_MAX
from livecart_core.testing import ServiceProcess

from .conftest import NodeFactory, join, new_room, refused_with, token


def bearer(tok: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {tok}")]


@pytest.fixture(scope="module")
def node(chat_nodes: NodeFactory) -> ServiceProcess:
    return chat_nodes()


@pytest.fixture
async def stub(node: ServiceProcess) -> AsyncIterator[pb_grpc.ChatServiceStub]:
    async with create_channel(f"127.0.0.1:{node.grpc_port}") as channel:
        yield pb_grpc.ChatServiceStub(channel)


async def stored(stub: pb_grpc.ChatServiceStub, room: str, count: int) -> list[dict[str, object]]:
    """The room's history once it holds ``count`` events (its writer is a moment behind)."""
    for _ in range(150):
        page = await stub.GetHistory(
            pb.GetHistoryRequest(room_id=room, limit=1000),
            metadata=bearer(token("shop", "reader", "play")),
        )
        if len(page.events_json) >= count:
            return [json.loads(e) for e in page.events_json]
        await asyncio.sleep(0.1)
    raise AssertionError(f"the history of {room} never held {count} events")


async def test_a_room_bound_token_is_refused_in_every_other_room(
    node: ServiceProcess, stub: pb_grpc.ChatServiceStub
) -> None:
    room, other = new_room(), new_room()
    secret = pb.PostSystemEventRequest(
        room_id=room, kind="lottery_open", data_json='{"seed": "s3cr3t"}'
    )
    await stub.PostSystemEvent(secret, metadata=bearer(token("shop", "commerce", "chat:system")))
    await stored(stub, room, 1)
    elsewhere = token("shop", "viewer", "play", "chat:system", room=other)
    here = token("shop", "viewer", "play", "chat:system", room=room)

    async with httpx.AsyncClient(base_url=node.url) as client:
        refused = await client.get(
            f"/v1/rooms/{room}/history", headers={"Authorization": f"Bearer {elsewhere}"}
        )
        assert refused.status_code == 403
        assert refused.json()["error"] == "permission_denied"
        assert other in refused.json()["message"] and "s3cr3t" not in refused.text
        allowed = await client.get(
            f"/v1/rooms/{room}/history", headers={"Authorization": f"Bearer {here}"}
        )
        assert allowed.status_code == 200 and len(allowed.json()["events"]) == 1

    with pytest.raises(grpc.aio.AioRpcError) as read:
        await stub.GetHistory(pb.GetHistoryRequest(room_id=room), metadata=bearer(elsewhere))
    assert read.value.code() == grpc.StatusCode.PERMISSION_DENIED
    page = await stub.GetHistory(pb.GetHistoryRequest(room_id=room), metadata=bearer(here))
    assert len(page.events_json) == 1

    intruder = pb.PostSystemEventRequest(room_id=room, kind="red_packet", data_json="{}")
    with pytest.raises(grpc.aio.AioRpcError) as post:
        await stub.PostSystemEvent(intruder, metadata=bearer(elsewhere))
    assert post.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await stub.PostSystemEvent(intruder, metadata=bearer(here))
    events = await stored(stub, room, 2)
    assert [e["event"] for e in events] == ["lottery_open", "red_packet"]  # one, not two

    code, reason = await refused_with(node, f"/ws/rooms/{room}?token={elsewhere}")
    assert code == 4403 and other in reason
    viewer = await join(node, room, here)
    assert viewer.welcome["type"] == "welcome"


async def test_sequence_numbers_past_their_range_are_refused(
    node: ServiceProcess, stub: pb_grpc.ChatServiceStub
) -> None:
    room = new_room()
    headers = {"Authorization": f"Bearer {token('shop', 'viewer', 'play')}"}
    async with httpx.AsyncClient(base_url=node.url) as client:
        for params in (
            {"after_seq": "23000000000000000000"},
            {"after_seq": str(INT64_MAX + 1)},
            {"after_seq": "-1"},
            {"limit": str(10**30)},
        ):
            refused = await client.get(f"/v1/rooms/{room}/history", params=params, headers=headers)
            assert refused.status_code in (400, 422), (params, refused.text)
            assert refused.json()["error"] and refused.json()["message"]
        last = await client.get(
            f"/v1/rooms/{room}/history", params={"after_seq": str(INT64_MAX)}, headers=headers
        )
        assert last.json() == {"events": [], "last_seq": 0}
    page = await stub.GetHistory(
        pb.GetHistoryRequest(room_id=room, after_seq=INT64_MAX),
        metadata=bearer(token("shop", "viewer", "play")),
    )
    assert list(page.events_json) == []
    for last_seq in ("23000000000000000000", str(INT64_MAX + 1), "-1", "1e3", "5%0A", "%D9%A3"):
        code, reason = await refused_with(
            node, f"/ws/rooms/{room}?token={token('shop', 'v', 'play')}&last_seq={last_seq}"
        )
        assert (code, reason) == (4400, "last_seq is an integer from 0 to 2^63-1"), last_seq


@pytest.mark.parametrize(
    ("data_json", "why"),
    [
        ('{"a": "\\ud800"}', "lone surrogate"),
        ('{"a": {"b": ["\\udfff"]}}', "lone surrogate"),
        ('{"\\ud800": 1}', "lone surrogate"),
        ('{"a": NaN}', "NaN"),
        ('{"a": -Infinity}', "NaN"),
        ('{"a": "x\\u0000y"}', "NUL"),
        ('{"a": ' + "[" * 40 + "]" * 40 + "}", "nested deeper"),
        ('{"a": ' + "[" * 4000 + "]" * 4000 + "}", "nested"),
    ],
)
async def test_system_events_no_consumer_could_take_are_refused(
    node: ServiceProcess, stub: pb_grpc.ChatServiceStub, data_json: str, why: str
) -> None:
    room = new_room()
    viewer = await join(node, room, token("shop", "viewer", "play"))
    service = bearer(token("shop", "assistant", "chat:system"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.PostSystemEvent(
            pb.PostSystemEventRequest(room_id=room, kind="assistant_answer", data_json=data_json),
            metadata=service,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert why in (refused.value.details() or "")
    # The room's stream and its history writer go on: the next event is shown and stored.
    await stub.PostSystemEvent(
        pb.PostSystemEventRequest(room_id=room, kind="assistant_answer", data_json='{"ok": 1}'),
        metadata=service,
    )
    await viewer.until(lambda v: bool(v.events))
    assert [e["data"] for e in viewer.events] == [{"ok": 1}]
    assert [e["data"] for e in await stored(stub, room, 1)] == [{"ok": 1}]


async def test_commerce_events_no_consumer_could_take_are_not_posted(
    node: ServiceProcess, stub: pb_grpc.ChatServiceStub, kafka_broker: KafkaBroker
) -> None:
    room = new_room()
    viewer = await join(node, room, token("shop", "viewer", "play"))
    bus = KafkaBus(kafka_broker.bootstrap, partitions=8)
    await bus.start()
    try:
        for room_id, currency in [(room, "U\x00D"), ("no spaces", "USD"), (room, "USD")]:
            packet = RedPacketCreated(
                red_packet_id="rp1", room_id=room_id, total_minor=900, currency=currency, shares=3
            )
            event = CommerceEvent(
                event_id=uuid.uuid4().hex, tenant_id="shop", red_packet_created=packet
            )
            await bus.publish("commerce.events", f"shop/{room_id}", event)
    finally:
        await bus.stop()
    await viewer.until(lambda v: bool(v.events))
    await asyncio.sleep(0.5)  # time for anything else the bridge would post
    assert [e["data"]["currency"] for e in viewer.events] == ["USD"]
    assert [e["data"]["currency"] for e in await stored(stub, room, 1)] == ["USD"]


async def test_bad_data_already_in_the_stream_stops_no_consumer(
    node: ServiceProcess, stub: pb_grpc.ChatServiceStub, kafka_broker: KafkaBroker
) -> None:
    room = new_room()
    viewer = await join(node, room, token("shop", "viewer", "play"))
    bus = KafkaBus(kafka_broker.bootstrap, partitions=8)
    await bus.start()
    try:  # as a producer from before the rule, or one that skips it, wrote them
        for data_json in ['{"a": "\\ud800"}', '{"a": NaN}', "not json", '{"ok": 1}']:
            event = ChatEvent(
                event_id=uuid.uuid4().hex,
                tenant_id="shop",
                room_id=room,
                system=SystemEvent(kind="legacy", data_json=data_json, source="old"),
            )
            event.sent_at.GetCurrentTime()
            await bus.publish("chat.messages", f"shop/{room}", event)
    finally:
        await bus.stop()
    await viewer.until(lambda v: len(v.events) == 4)
    assert [e["data"] for e in viewer.events] == [{}, {}, {}, {"ok": 1}]
    assert [e["data"] for e in await stored(stub, room, 4)] == [{}, {}, {}, {"ok": 1}]
