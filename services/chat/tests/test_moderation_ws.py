"""Moderation as hosts and viewers meet it over the WebSocket: mute, ban, slow mode, pins,
blocked words, the per-user rate limit, and priority shedding under load."""

from __future__ import annotations

import asyncio
import json
import socket

import grpc
import httpx
import pytest

from livecart.chat.v1 import chat_service_pb2 as pb
from livecart.chat.v1 import chat_service_pb2_grpc as pb_grpc
from livecart_core.rpc import create_channel
from livecart_core.testing import ServiceProcess

from .conftest import NodeFactory, join, new_room, token

HOST = ("play", "chat", "chat:moderate")


@pytest.fixture(scope="module")
def node(chat_nodes: NodeFactory) -> ServiceProcess:
    return chat_nodes()


async def test_mute_and_unmute(node: ServiceProcess) -> None:
    room = new_room()
    host = await join(node, room, token("shop", "host", *HOST))
    bob = await join(node, room, token("shop", "bob"))
    await host.send(type="mute", user_id="bob", duration_s=60, ref="m")
    await bob.until(lambda v: any(e.get("action") == "mute" for e in v.events))
    await bob.send(type="comment", text="hello?", ref="b1")
    await bob.until(lambda v: bool(v.of("error")))
    error = bob.of("error")[0]
    assert error["code"] == "muted" and "muted" in error["message"] and error["ref"] == "b1"
    await host.send(type="unmute", user_id="bob")
    await bob.until(lambda v: any(e.get("action") == "unmute" for e in v.events))
    await bob.send(type="comment", text="back", ref="b2")
    await host.until(lambda v: "back" in v.comments())


async def test_ban_closes_and_keeps_out_on_every_node(chat_nodes: NodeFactory) -> None:
    a, b = chat_nodes(), chat_nodes()
    room = new_room()
    host = await join(a, room, token("shop", "host", *HOST))
    troll_a = await join(a, room, token("shop", "troll"))
    troll_b = await join(b, room, token("shop", "troll"))
    await host.send(type="ban", user_id="troll", ref="ban")
    for troll in (troll_a, troll_b):
        await troll.until(lambda v: v.closed is not None)
        assert troll.closed == (4403, "banned from this room")
    again = await join(b, room, token("shop", "troll"))
    assert again.closed == (4403, "banned from this room")
    other_room = await join(b, new_room(), token("shop", "troll"))
    assert other_room.closed is None  # a ban is per room
    await host.send(type="ban", user_id="host", ref="self")
    await host.until(lambda v: bool(v.of("error")))
    assert host.of("error")[0]["code"] == "invalid_message"


async def test_slow_mode_spares_hosts(node: ServiceProcess) -> None:
    room = new_room()
    host = await join(node, room, token("shop", "host", *HOST))
    viewer = await join(node, room, token("shop", "viewer"))
    await host.send(type="slow_mode", interval_s=30)
    await viewer.until(lambda v: any(e.get("action") == "slow_mode" for e in v.events))
    await viewer.send(type="comment", text="first", ref="1")
    await viewer.send(type="comment", text="second", ref="2")
    await viewer.until(lambda v: bool(v.of("error")))
    error = viewer.of("error")[0]
    assert error["code"] == "slow_mode" and error["ref"] == "2" and "wait" in error["message"]
    for i in range(3):
        await host.send(type="comment", text=f"host {i}")
    await viewer.until(lambda v: v.comments() == ["first", "host 0", "host 1", "host 2"])
    late = await join(node, room, token("shop", "late", "play"))
    assert late.welcome["slow_mode_s"] == 30
    await host.send(type="slow_mode", interval_s=-1, ref="bad")
    await host.until(lambda v: bool(v.of("error")))
    assert host.of("error")[0]["code"] == "invalid_message"


async def test_pin_a_comment(node: ServiceProcess) -> None:
    room = new_room()
    host = await join(node, room, token("shop", "host", *HOST))
    ann = await join(node, room, token("shop", "ann"), name="Ann")
    await ann.send(type="comment", text="is it real jade?")
    await host.until(lambda v: bool(v.comments()))
    seq = host.events[0]["seq"]
    await host.send(type="pin", seq=seq, ref="p")
    await host.until(lambda v: any(e.get("action") == "pin" for e in v.events))
    late = await join(node, room, token("shop", "late", "play"))
    assert late.welcome["pinned"]["text"] == "is it real jade?"
    assert late.welcome["pinned"]["name"] == "Ann" and late.welcome["pinned"]["seq"] == seq
    await host.send(type="pin", seq=999_999, ref="missing")
    await host.until(lambda v: bool(v.of("error")))
    assert host.of("error")[0]["code"] == "not_found"


async def test_blocked_words_apply_without_restart(node: ServiceProcess) -> None:
    tenant = "shop-words"
    room = new_room()
    ann = await join(node, room, token(tenant, "ann"))
    headers = {"Authorization": f"Bearer {token(tenant, 'host', *HOST)}"}
    async with httpx.AsyncClient(base_url=node.url) as client:
        put = await client.put(
            "/v1/moderation/blocked-words", headers=headers, json={"words": ["微信", "spam"]}
        )
        assert put.status_code == 200, put.text
    for _ in range(100):  # every node polls the lists every second
        await ann.send(type="comment", text="加我微 信 聊", ref="w")
        await asyncio.sleep(0.1)
        if ann.of("error"):
            break
    error = ann.of("error")[0]
    assert error["code"] == "blocked_word" and "微信" in error["message"]
    await ann.send(type="comment", text="SPAM!!", ref="s")
    await ann.until(lambda v: any(e["ref"] == "s" for e in v.of("error")))
    await ann.send(type="comment", text="nice bracelet", ref="ok")
    await ann.until(lambda v: "nice bracelet" in v.comments())
    named = await join(node, room, token(tenant, "eve"), name="spam-bot")
    assert named.closed == (4400, "name holds a word this shop does not allow")
    other = await join(node, room, token("other-tenant", "bob"))
    await other.send(type="comment", text="spam is fine here", ref="o")
    await other.until(lambda v: "spam is fine here" in v.comments())


async def test_rate_limit_per_user(chat_nodes: NodeFactory) -> None:
    node = chat_nodes(LIVECART_COMMENT_BURST="3", LIVECART_COMMENT_RATE_PER_S="0.2")
    room = new_room()
    ann = await join(node, room, token("shop", "ann"))
    host = await join(node, room, token("shop", "host", *HOST))
    for i in range(5):
        await ann.send(type="comment", text=f"a{i}", ref=f"a{i}")
        await host.send(type="comment", text=f"h{i}", ref=f"h{i}")
    await ann.until(lambda v: len(v.of("error")) == 2 and len(v.comments()) == 8)
    assert [e["code"] for e in ann.of("error")] == ["rate_limited", "rate_limited"]
    assert "send again in" in ann.of("error")[0]["message"]
    assert not host.of("error")  # hosts are exempt


async def test_system_events_are_never_dropped_but_comments_are_sampled(
    chat_nodes: NodeFactory,
) -> None:
    node = chat_nodes(LIVECART_COMMENTS_PER_BATCH="5", LIVECART_BATCH_MS="200")
    room = new_room()
    viewer = await join(node, room, token("shop", "viewer", "play"))
    senders = [await join(node, room, token("shop", f"s{i}")) for i in range(4)]
    service = [("authorization", f"Bearer {token('shop', 'assistant', 'chat:system')}")]
    async with create_channel(f"127.0.0.1:{node.grpc_port}") as channel:
        stub = pb_grpc.ChatServiceStub(channel)

        async def say() -> None:
            for i in range(25):
                await senders[i % 4].send(type="comment", text=f"c{i}")

        async def post() -> None:
            for i in range(5):
                await stub.PostSystemEvent(
                    pb.PostSystemEventRequest(
                        room_id=room, kind="assistant_answer", data_json=f'{{"n": {i}}}'
                    ),
                    metadata=service,
                )

        await asyncio.gather(*(say() for _ in range(4)), post())
        await viewer.until(
            lambda v: len(v.comments()) + sum(f["dropped"] for f in v.of("batch")) == 100
        )
        await viewer.until(lambda v: len([e for e in v.events if e["kind"] == "system"]) == 5)
        answers = [e["data"]["n"] for e in viewer.events if e["kind"] == "system"]
        assert answers == [0, 1, 2, 3, 4]
        for frame in viewer.of("batch"):
            assert len([e for e in frame["events"] if e["kind"] == "comment"]) <= 5
        assert sum(f["dropped"] for f in viewer.of("batch")) > 0

        for bad, why in [
            (pb.PostSystemEventRequest(room_id=room, kind="Bad Kind", data_json="{}"), "kind"),
            (pb.PostSystemEventRequest(room_id=room, kind="x", data_json="[1]"), "object"),
            (pb.PostSystemEventRequest(room_id=room, kind="x", data_json="{"), "JSON"),
            (pb.PostSystemEventRequest(room_id="", kind="x", data_json="{}"), "room_id"),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.PostSystemEvent(bad, metadata=service)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert why in (refused.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.PostSystemEvent(
                pb.PostSystemEventRequest(room_id=room, kind="x", data_json="{}"),
                metadata=[("authorization", f"Bearer {token('shop', 'viewer', 'play')}")],
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        viewer_md = [("authorization", f"Bearer {token('shop', 'v', 'play')}")]
        for _ in range(100):
            page = await stub.GetHistory(
                pb.GetHistoryRequest(room_id=room, limit=1000), metadata=viewer_md
            )
            if len(page.events_json) == 105:
                break
            await asyncio.sleep(0.1)
        assert len(page.events_json) == 105  # the history keeps what sampling left out


async def test_a_viewer_that_does_not_read_is_cut_off_not_waited_for(
    chat_nodes: NodeFactory,
) -> None:
    node = chat_nodes(
        LIVECART_SLOW_BUFFER_BYTES="4096",
        LIVECART_BEHIND_LIMIT_BYTES="65536",
        LIVECART_BEHIND_LIMIT_S="2",
    )
    room = new_room()
    stuck = socket.create_connection(("127.0.0.1", node.ws_port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(
        (
            f"GET /ws/rooms/{room}?token={token('shop', 'stuck', 'play')} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert b"101 Switching Protocols" in stuck.recv(4096)  # then it never reads again
    viewer = await join(node, room, token("shop", "viewer", "play"))
    service = [("authorization", f"Bearer {token('shop', 'assistant', 'chat:system')}")]
    filler = json.dumps({"answer": "x" * 8000})  # 600 of these: more than socket buffers hold
    async with create_channel(f"127.0.0.1:{node.grpc_port}") as channel:
        stub = pb_grpc.ChatServiceStub(channel)
        for _ in range(600):
            request = pb.PostSystemEventRequest(room_id=room, kind="filler", data_json=filler)
            await stub.PostSystemEvent(request, metadata=service)
    await viewer.until(lambda v: len(v.events) == 600, timeout_s=60)  # never held up
    async with httpx.AsyncClient(base_url=node.url) as client:
        metrics = (await client.get("/metrics")).text
    closes = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("livecart_chat_slow_viewer_closes_total ")
    )
    assert closes == 1  # the stuck viewer was closed (4408), once
    stuck.close()
