"""Bad tokens, bad paths and bad messages, through the WebSocket as a client sends them: a
clear error frame or close code with a reason, and the node and the room carry on."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from livecart_core.testing import ServiceProcess

from .conftest import NodeFactory, join, new_room, refused_with, token


@pytest.fixture(scope="module")
def node(chat_nodes: NodeFactory) -> ServiceProcess:
    return chat_nodes(LIVECART_FLOOD_LIMIT="8")


@pytest.mark.parametrize(
    ("path", "code", "reason"),
    [
        ("/ws/rooms/r1", 4401, "missing token"),
        ("/ws/rooms/r1?token=garbage", 4401, "invalid token"),
        (f"/ws/rooms/r1?token={token('shop', 'u', 'chat')}", 4403, "'play' scope"),
        (f"/ws/rooms/r1?token={token('shop', 'u', 'play', room='r2')}", 4403, "for room 'r2'"),
        (f"/ws/rooms/bad%20room?token={token('shop', 'u')}", 4404, "no such room"),
        (f"/ws/lobby?token={token('shop', 'u')}", 4404, "no such room"),
        (f"/ws/rooms/r1?token={token('shop', 'u')}&last_seq=x", 4400, "last_seq"),
        (f"/ws/rooms/r1?token={token('shop', 'u')}&name=%E2%80%AEevil", 4400, "name holds"),
        (f"/ws/rooms/r1?token={token('shop', 'u')}&name={'n' * 51}", 4400, "1 to 50"),
    ],
)
async def test_bad_joins_are_closed_with_a_reason(
    node: ServiceProcess, path: str, code: int, reason: str
) -> None:
    closed_code, closed_reason = await refused_with(node, path)
    assert closed_code == code and reason in closed_reason


async def test_bad_messages_get_an_error_and_the_room_goes_on(node: ServiceProcess) -> None:
    room = new_room()
    ann = await join(node, room, token("shop", "ann"))
    watcher = await join(node, room, token("shop", "watcher", "play"))
    await ann.conn.send("not json")
    await ann.conn.send(json.dumps([1, 2]))
    await ann.send(type="shout", text="x", ref="a")
    await ann.send(type="comment", ref="b")
    await ann.send(type="comment", text="x", ref=7)
    await ann.send(type="like", count=1000)
    await ann.send(type="mute", user_id="bob", ref="c")  # needs chat:moderate
    await ann.conn.send(b"\x00\x01binary")
    await ann.until(lambda v: len(v.of("error")) == 8)
    codes = [(e["code"], e["ref"]) for e in ann.of("error")]
    assert codes == [
        ("invalid_json", None),
        ("invalid_message", None),
        ("unknown_type", "a"),
        ("invalid_message", "b"),
        ("invalid_message", None),
        ("invalid_message", None),
        ("permission_denied", "c"),
        ("invalid_message", None),
    ]
    assert all(e["message"] for e in ann.of("error"))
    await watcher.send(type="comment", text="viewers cannot talk", ref="w")
    await watcher.until(lambda v: bool(v.of("error")))
    assert watcher.of("error")[0]["code"] == "permission_denied"
    await ann.send(type="comment", text="still here", ref="ok")
    await watcher.until(lambda v: v.comments() == ["still here"])
    assert ann.closed is None


async def test_oversized_and_non_utf8_frames_close_with_the_protocol_codes(
    node: ServiceProcess,
) -> None:
    room = new_room()
    big = await join(node, room, token("shop", "big"))
    await big.conn.send("x" * 5000)
    await big.until(lambda v: v.closed is not None)
    assert big.closed is not None and big.closed[0] == 1009
    bad = await join(node, room, token("shop", "bad"))
    bad.conn.protocol.send_frame(Frame(Opcode.TEXT, b"\xff\xfe not utf-8"))
    bad.conn.send_data()
    await bad.until(lambda v: v.closed is not None)
    assert bad.closed is not None and bad.closed[0] == 1007
    after = await join(node, room, token("shop", "after"))  # the node carries on
    await after.send(type="comment", text="fine", ref="f")
    await after.until(lambda v: v.comments() == ["fine"])


async def test_flooding_closes_the_socket(node: ServiceProcess) -> None:
    flooder = await join(node, new_room(), token("shop", "flooder"))
    for _ in range(20):
        await flooder.conn.send("{broken")
    await flooder.until(lambda v: v.closed is not None)
    assert flooder.closed is not None and flooder.closed[0] == 4429
    assert "flooding" in flooder.closed[1]
    assert 8 <= len(flooder.of("error")) <= 20


async def test_a_token_header_works_for_non_browser_clients(node: ServiceProcess) -> None:
    headers = {"Authorization": f"Bearer {token('shop', 'app')}"}
    async with connect(
        f"ws://127.0.0.1:{node.ws_port}/ws/rooms/{new_room()}", additional_headers=headers
    ) as conn:
        welcome = json.loads(await asyncio.wait_for(conn.recv(), 10))
        assert welcome["type"] == "welcome" and welcome["user_id"] == "app"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.recv(), 0.3)  # nothing else: an empty room
    with pytest.raises(ConnectionClosed):
        async with connect(f"ws://127.0.0.1:{node.ws_port}/ws/rooms/x") as conn:
            await asyncio.wait_for(conn.recv(), 10)


MODERATOR = ("play", "chat", "chat:moderate")


async def test_frames_that_cannot_be_used_get_an_error_and_the_socket_lives(
    node: ServiceProcess,
) -> None:
    room = new_room()
    watcher = await join(node, room, token("shop", "watcher", "play"))
    frames = [
        ("[" * 1000 + "]" * 1000, "invalid_json", None),
        ('{"type": "comment", "text": ' + "[" * 2000 + "]" * 2000 + "}", "invalid_json", None),
        ('{"type": "comment", "text": "a\\u0000b", "ref": "n"}', "invalid_message", "n"),
        ('{"type": "comment", "text": "\\ud800", "ref": "s"}', "invalid_message", "s"),
        ('{"type": "mute", "user_id": "\\udfff", "ref": "m"}', "invalid_message", "m"),
        ('{"type": "ban", "user_id": "x\\u0000", "ref": "b"}', "invalid_message", "b"),
        ('{"type": "comment", "text": "hi", "ref": "\\ud800"}', "invalid_message", None),
        ('{"type": "like", "count": NaN}', "invalid_message", None),
        ('{"type": "pin", "seq": 1e400, "ref": "p"}', "invalid_message", "p"),
        ('{"type": "pin", "seq": 23000000000000000000, "ref": "q"}', "invalid_message", "q"),
        ('{"type": ["comment"], "text": "x"}', "unknown_type", None),
        ('{"type": {"a": 1}}', "unknown_type", None),
        ('{"type": "comment", "text": {"a": ' * 40 + "1" + "}" * 80, "invalid_message", None),
    ]
    got = []
    for first in range(0, len(frames), 6):  # under the flood limit per socket
        sender = await join(node, room, token("shop", f"host{first}", *MODERATOR))
        for frame, _, _ in frames[first : first + 6]:
            await sender.conn.send(frame)
        sent = len(frames[first : first + 6])
        await sender.until(lambda v, sent=sent: len(v.of("error")) == sent)
        assert all(e["message"] for e in sender.of("error"))
        got += [(e["code"], e["ref"]) for e in sender.of("error")]
        await sender.send(type="comment", text=f"still here {first}", ref="ok")
        await sender.until(lambda v: bool(v.of("ack")))
        assert sender.closed is None
    assert got == [(code, ref) for _, code, ref in frames]
    await watcher.until(lambda v: len(v.comments()) == 3)
    assert not watcher.of("error")
