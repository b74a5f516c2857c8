"""Viewers that stop reading, as a real socket does it: what they have not received counts
against the documented limits even while it sits in the kernel's send buffer, so a slow viewer
is first given only the never-dropped events, then closed with 4408, and the others carry on."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx

from livecart.chat.v1 import chat_service_pb2 as pb
from livecart.chat.v1 import chat_service_pb2_grpc as pb_grpc
from livecart_core.rpc import create_channel
from livecart_core.testing import ServiceProcess

from .conftest import NodeFactory, join, new_room, token

SYSTEM = [("authorization", f"Bearer {token('shop', 'assistant', 'chat:system')}")]


class StuckViewer:
    """A viewer on a raw socket that completes the handshake and then stops reading, with a
    small receive buffer, until :meth:`read_all`; what it is sent meanwhile waits in the
    node's buffers, as for a phone that went into a tunnel."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames: list[dict[str, Any]] = []
        self.close_code: int | None = None

    @classmethod
    async def open(cls, node: ServiceProcess, room: str) -> StuckViewer:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the window is set
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", node.ws_port))
        await loop.sock_sendall(
            sock,
            (
                f"GET /ws/rooms/{room}?token={token('shop', 'stuck', 'play')} HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode(),
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += await asyncio.wait_for(loop.sock_recv(sock, 1), 10)
        assert b" 101 " in response.split(b"\r\n")[0]
        return cls(sock)

    async def read_all(self, until: str, timeout_s: float = 30.0) -> None:
        """Read again, until a system event of kind ``until`` or a close frame arrives."""
        loop = asyncio.get_running_loop()
        data = b""
        deadline = loop.time() + timeout_s
        while self.close_code is None and not self.saw(until):
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), deadline - loop.time())
            assert chunk, f"the node hung up without a close frame after {len(self.frames)}"
            data += chunk
            while (frame := _frame(data)) is not None:
                opcode, payload, data = frame
                if opcode == 0x1:
                    self.frames.append(json.loads(payload))
                elif opcode == 0x8:
                    self.close_code = int.from_bytes(payload[:2], "big")

    def saw(self, kind: str) -> bool:
        return any(e.get("event") == kind for e in self.events)

    @property
    def batches(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "batch"]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for f in self.batches for e in f["events"]]

    def close(self) -> None:
        self.sock.close()


def _frame(data: bytes) -> tuple[int, bytes, bytes] | None:
    """The first whole server frame in ``data`` (opcode, payload, the rest), or None."""
    if len(data) < 2:
        return None
    length, at = data[1] & 0x7F, 2
    if length == 126:
        length, at = int.from_bytes(data[2:4], "big"), 4
    elif length == 127:
        length, at = int.from_bytes(data[2:10], "big"), 10
    if len(data) < at + length:
        return None
    return data[0] & 0x0F, data[at : at + length], data[at + length :]


async def slow_closes(node: ServiceProcess) -> float:
    async with httpx.AsyncClient(base_url=node.url) as client:
        metrics = (await client.get("/metrics")).text
    return next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("livecart_chat_slow_viewer_closes_total ")
    )


async def test_a_viewer_that_stops_reading_gets_only_what_is_never_dropped(
    chat_nodes: NodeFactory,
) -> None:
    node = chat_nodes(
        LIVECART_SLOW_BUFFER_BYTES="4096",
        LIVECART_BEHIND_LIMIT_BYTES=str(64 * 1024 * 1024),
        LIVECART_BEHIND_LIMIT_S="600",
    )
    room = new_room()
    stuck = await StuckViewer.open(node, room)
    viewer = await join(node, room, token("shop", "viewer", "play"))
    sender = await join(node, room, token("shop", "sender"))
    text = "a comment long enough to fill a buffer in a few hundred of them " * 3
    for i in range(600):  # about 150 KiB of batches: less than the kernel would hold
        await sender.send(type="comment", text=f"{i} {text}"[:200], ref=f"c{i}")
        if i % 50 == 49:  # the acks tell this sender the node keeps up
            await sender.until(lambda v, i=i: len(v.of("ack")) == i + 1)
    async with create_channel(f"127.0.0.1:{node.grpc_port}") as channel:
        await pb_grpc.ChatServiceStub(channel).PostSystemEvent(
            pb.PostSystemEventRequest(room_id=room, kind="stream_state", data_json="{}"),
            metadata=SYSTEM,
        )
    await viewer.until(lambda v: any(e["kind"] == "system" for e in v.events), timeout_s=60)
    assert len(viewer.comments()) == 600  # the viewer who reads misses nothing
    await stuck.read_all(until="stream_state")
    stuck.close()
    comments = [e for e in stuck.events if e["kind"] == "comment"]
    assert stuck.close_code is None and stuck.saw("stream_state")  # never-dropped: it came
    assert len(comments) < 600  # while behind, comments were left out for it


async def test_a_viewer_that_stays_behind_is_closed_with_4408(chat_nodes: NodeFactory) -> None:
    node = chat_nodes(
        LIVECART_SLOW_BUFFER_BYTES="4096",
        LIVECART_BEHIND_LIMIT_BYTES="65536",
        LIVECART_BEHIND_LIMIT_S="2",
    )
    room = new_room()
    stuck = await StuckViewer.open(node, room)
    viewer = await join(node, room, token("shop", "viewer", "play"))
    filler = json.dumps({"answer": "x" * 8000})  # 100 of these: about 800 KiB
    async with create_channel(f"127.0.0.1:{node.grpc_port}") as channel:
        stub = pb_grpc.ChatServiceStub(channel)
        for _ in range(100):
            request = pb.PostSystemEventRequest(room_id=room, kind="filler", data_json=filler)
            await stub.PostSystemEvent(request, metadata=SYSTEM)
    await viewer.until(lambda v: len(v.events) == 100, timeout_s=60)  # never held up
    assert viewer.closed is None
    for _ in range(100):
        if await slow_closes(node) >= 1:
            break
        await asyncio.sleep(0.1)
    await stuck.read_all(until="never sent")  # it reads again: the close frame is there
    stuck.close()
    assert stuck.close_code == 4408
    assert len(stuck.events) < 100
    assert await slow_closes(node) == 1
