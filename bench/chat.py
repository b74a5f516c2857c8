"""Chat fan-out: our chat node against Centrifugo, side by side, on the same machine and load.

One node, one room, ``--rate`` comments a second in, at each of ``--viewers`` connected
viewers; then ``--idle`` viewers connected with nothing said. Each side's server is its own
process, started fresh for every run:

- ours: ``python -m livecart_chat`` (Kafka and Postgres started here, the chat schema migrated)
  at ``ws://…/ws/rooms/{room}?token=…`` (docs/chat-protocol.md); the comments come from
  ``--senders`` users with scope ``chat`` in turn, and the node's per-user limit
  (``LIVECART_COMMENT_RATE_PER_S``) is set to twice each one's share;
- Centrifugo (``make centrifugo`` builds it into ``$LIVECART_CACHE/bin``) with its JSON
  protocol over WebSocket (``connect`` with an HS256 token, ``subscribe`` to ``chat:…``); the
  comments are published through its HTTP API at the same rate. Its own batching (messages
  joined into one frame when a connection's queue holds several) is left as it is.

The load runs in separate OS processes: ``--processes`` viewer processes holding thousands of
raw WebSocket connections each (uvloop protocols, no WebSocket library), and one sender
process. A viewer does not parse what it receives: it counts comments by their ``"comment"``
marker, walks frame headers to count frames and to answer pings, and only a sample of
viewers (``--sampled``: 100, 1 % of 10k) parses every frame and records each comment's
latency from the send time carried in its text. Each load process measures its own CPU;
``loadgen_saturated`` says when one was above 90 % of a core, and larger viewer counts are
not run on that side.

The server's CPU comes from /proc/<pid>/stat (its whole process tree) over the measured
window, so ``us_per_frame_sent`` = server CPU ÷ WebSocket frames its viewers and senders
received, and memory from VmRSS. One process here may hold at most ``RLIMIT_NOFILE`` (hard)
sockets: viewer counts above that are capped and the cap is printed.

    uv run python bench/chat.py [--viewers 5000,10000,20000] [--rate 200] [--seconds 20]
        [--idle 50000] [--only ours|centrifugo]

About 6 minutes with both sides on 2 cores (ours needs Java and Maven for the broker).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import gc
import json
import math
import os
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import jwt
import uvloop
from procstat import cpu_seconds, process_tree

TENANT = "bench"
CENTRIFUGO_NAMESPACE = "chat"
# Every handshake may use the same key: the server only echoes a hash of it.
WS_KEY = base64.b64encode(b"livecart-bench-k").decode()
COMMENT = b'"comment"'  # once per comment: our events' kind, Centrifugo's published data
EDGE = len(COMMENT) - 1
SATURATED_PCT = 90.0


# ---------------------------------------------------------------------------------------------
# Load generator: raw WebSocket client connections
# ---------------------------------------------------------------------------------------------


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame. The all-zero mask is a valid key and leaves the payload as it is,
    which keeps the load generator from XOR-ing every byte it sends."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    else:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


CENTRIFUGO_PONG = client_frame(b"{}")


@dataclass
class Tally:
    """What one load process saw; ``window`` flips on for the measured interval."""

    comments: int = 0
    frames: int = 0
    acks: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    dropped: int = 0
    pings: int = 0
    window: bool = False


class Pacer:
    """Reads a connection at most once a tick: after a read it pauses, and every tick resumes
    all that paused. What arrived meanwhile waits in the kernel's receive buffer (a few KB),
    so the server writes exactly as to an eager client, while the load process pays one read
    for many small frames (Centrifugo writes about one per message) and leaves the CPU to the
    server. Sampled viewers, which time every comment, always read at once."""

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self.waiting: list[asyncio.Transport] = []

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            waiting, self.waiting = self.waiting, []
            for transport in waiting:
                if not transport.is_closing():
                    transport.resume_reading()


class Viewer(asyncio.Protocol):
    """One WebSocket connection: handshake, then either every frame parsed (``sampled``, and
    every connection until it is in the room) or the cheap path that only counts."""

    def __init__(self, side: str, request: bytes, tally: Tally, sampled: bool) -> None:
        self.side = side
        self.request = request
        self.tally = tally
        self.sampled = sampled
        self.sender = False  # counts the acks and errors that answer its comments
        self.pacer: Pacer | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.head = b""  # the HTTP answer until its blank line
        self.open = False
        self.fast = False
        self.buffer = bytearray()  # the full parser's unparsed bytes
        self.tail = b""  # the fast path's last bytes, for markers cut across two reads
        self.skip = 0  # the fast path's bytes left of the current frame's payload
        self.partial = b""  # the fast path's frame header cut across two reads
        self.last = b""  # the last bytes received: a close frame's code, when it is lost
        self.token = ""
        self.channel = ""

    def itself(self) -> Viewer:  # the protocol factory for this one connection
        return self

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.fast:
            self.count(data)
        elif self.open:
            self.parse(data)
        else:
            self.handshake(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {self.last[-120:]!r}"))
        elif self.open:
            self.tally.closes[f"lost:{type(exc).__name__}" if exc else "lost"] += 1
        self.open = False

    # the three modes

    def handshake(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        status = self.head[: self.head.find(b"\r\n")]
        if b" 101 " not in status + b" ":
            self.fail(f"handshake refused: {self.head[:300]!r}")
            return
        rest, self.head, self.open = self.head[end + 4 :], b"", True
        if self.side == "centrifugo":
            self.send(b'{"id":1,"connect":{"name":"bench"' + self.request_token() + b"}}")
            self.send(f'{{"id":2,"subscribe":{{"channel":"{self.channel}"}}}}'.encode())
        if rest:
            self.parse(rest)

    def parse(self, data: bytes) -> None:
        now = time.time()
        buf = self.buffer
        buf += data
        i, n = 0, len(buf)
        while n - i >= 2:
            b0, size, head = buf[i], buf[i + 1] & 0x7F, 2
            if size == 126:
                if n - i < 4:
                    break
                size, head = int.from_bytes(buf[i + 2 : i + 4], "big"), 4
            elif size == 127:
                if n - i < 10:
                    break
                size, head = int.from_bytes(buf[i + 2 : i + 10], "big"), 10
            end = i + head + size
            if end > n:
                break
            payload = bytes(buf[i + head : end])
            i = end
            if b0 & 0x08:
                self.control(b0 & 0x0F, payload)
            else:
                self.tally.frames += 1
                self.message(payload, now)
        del buf[:i]
        if self.ready.done() and not self.sampled and not buf:
            self.fast = True

    def count(self, data: bytes) -> None:
        """The cheap path: markers counted in C, frame headers walked but payloads skipped."""
        tally = self.tally
        tail, self.tail = self.tail, data[-EDGE:]
        edge = tail + data[:EDGE]
        tally.comments += data.count(COMMENT) + edge.count(COMMENT)
        if self.side == "centrifugo" and (b"{}" in data or b"{}" in edge):
            self.centrifugo_pings(tail, data)
        elif self.sender and (b'"ack"' in data or b'"error"' in data):
            tally.acks += data.count(b'"ack"')  # senders only; both are short, whole frames
            for code in re.findall(rb'"code":\s*"(\w+)"', data):
                tally.errors[code.decode()] += 1
        self.last = data[-64:]
        i, n = self.skip, len(data)
        if self.partial:
            data, i, self.partial = self.partial + data, 0, b""
            n = len(data)
        frames = 0
        while i < n:
            if n - i < 10 and (n - i < 2 or data[i + 1] & 0x7F >= 126):
                self.partial = data[i:]
                i = n
                break
            b0, size, head = data[i], data[i + 1] & 0x7F, 2
            if size == 126:
                size, head = (data[i + 2] << 8) | data[i + 3], 4
            elif size == 127:
                size, head = int.from_bytes(data[i + 2 : i + 10], "big"), 10
            if b0 & 0x08:  # a control frame: at most 125 bytes, taken whole
                end = i + head + size
                if end > n:
                    self.partial = data[i:]
                    i = n
                    break
                self.control(b0 & 0x0F, data[i + head : end])
                i = end
            else:
                frames += b0 >> 7  # FIN: a whole message
                i += head + size
        self.skip = i - n
        tally.frames += frames
        if self.pacer is not None and self.transport is not None:
            self.transport.pause_reading()
            self.pacer.waiting.append(self.transport)

    # what arrives

    def control(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:
            self.tally.pings += 1
            self.write(client_frame(payload, 0xA))
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            reason = payload[2:].decode(errors="replace")
            if not self.ready.done():
                self.fail(f"closed {code} {reason}")
            else:
                self.tally.closes[f"{code} {reason}".strip()] += 1
                self.write(client_frame(payload[:2], 0x8))
            self.open = False

    def message(self, payload: bytes, now: float) -> None:
        if self.side == "ours":
            self.our_message(json.loads(payload), now)
        else:
            for line in payload.split(b"\n"):
                self.centrifugo_message(json.loads(line), now)

    def our_message(self, frame: dict[str, Any], now: float) -> None:
        kind = frame.get("type")
        if kind == "batch":
            for event in frame.get("events", ()):
                if event.get("kind") == "comment":
                    self.comment(event.get("text", ""), now)
            self.tally.dropped += int(frame.get("dropped", 0))
        elif kind == "welcome":
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == "ack":
            self.tally.acks += 1
        elif kind == "error":
            self.tally.errors[str(frame.get("code"))] += 1

    def centrifugo_message(self, reply: dict[str, Any], now: float) -> None:
        if not reply:  # a ping: the client answers with an empty command
            self.tally.pings += 1
            self.write(CENTRIFUGO_PONG)
        elif "push" in reply:
            data = reply["push"].get("pub", {}).get("data", {})
            if data.get("kind") == "comment":
                self.comment(data.get("text", ""), now)
        elif "error" in reply:
            self.fail(f"centrifugo refused command {reply.get('id')}: {reply['error']}")
        elif reply.get("id") == 2 and not self.ready.done():
            self.ready.set_result(None)

    def comment(self, text: str, now: float) -> None:
        self.tally.comments += 1
        if self.tally.window:
            with contextlib.suppress(ValueError):
                self.tally.latencies_ms.append((now - float(text)) * 1000)

    def centrifugo_pings(self, tail: bytes, data: bytes) -> None:
        """Centrifugo pings with an empty message, ``{}``, alone in a frame or joined with
        others by newlines; inside a message ``{}`` would follow ``:``, ``,`` or ``[``. A pong
        must answer a real ping (an unasked one is a protocol error), hence the care."""
        before = []  # the byte before each ``{}`` that ends in this read
        if tail[-1:] == b"{" and data[:1] == b"}":
            before.append(tail[-2:-1])
        j = data.find(b"{}")
        while j >= 0:
            before.append(data[j - 1 : j] if j else tail[-1:])
            j = data.find(b"{}", j + 2)
        for byte in before:
            if byte not in (b":", b",", b"["):
                self.tally.pings += 1
                self.write(CENTRIFUGO_PONG)

    # sending

    def request_token(self) -> bytes:
        return f',"token":"{self.token}"'.encode()

    def send(self, payload: bytes) -> None:
        self.write(client_frame(payload))

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.abort()


@dataclass(frozen=True)
class Target:
    """Where and how one side's connections go (JSON between the processes)."""

    side: str  # "ours" or "centrifugo"
    port: int
    room: str  # our room id, or Centrifugo's channel
    secret: str  # signs the connection tokens
    api_port: int = 0  # Centrifugo's HTTP API (the same server)
    api_key: str = ""

    def token(self, user: str, scopes: list[str]) -> str:
        if self.side == "ours":
            from livecart_core.auth import TokenAuthority

            return TokenAuthority(self.secret).issue(TENANT, user, scopes, room=self.room)
        claims = {"sub": user, "exp": int(time.time()) + 3600}
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def handshake(self, token: str) -> bytes:
        if self.side == "ours":
            path = f"/ws/rooms/{self.room}?token={token}"
        else:
            path = "/connection/websocket"
        return (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()


async def connect(
    target: Target,
    users: list[str],
    scopes: list[str],
    tally: Tally,
    sampled: int,
    source: str,
) -> tuple[list[Viewer], Counter[str]]:
    """Open one connection per user into the room, a few hundred at a time, each retried a
    few times; the connections that made it, and why the others did not."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(200)
    viewers: list[Viewer] = []
    failures: Counter[str] = Counter()

    async def one(index: int, user: str) -> None:
        token = target.token(user, scopes)
        for attempt in range(4):
            viewer = Viewer(target.side, target.handshake(token), tally, index < sampled)
            viewer.token, viewer.channel = token, target.room
            async with gate:
                try:
                    await asyncio.wait_for(
                        loop.create_connection(
                            viewer.itself, "127.0.0.1", target.port, local_addr=(source, 0)
                        ),
                        10,
                    )
                    await asyncio.wait_for(viewer.ready, 30)
                    viewers.append(viewer)
                    return
                except (OSError, TimeoutError, ConnectionError) as exc:
                    if viewer.transport is not None:
                        viewer.transport.abort()
                    if attempt == 3:
                        failures[str(exc)[:200] or type(exc).__name__] += 1
                    else:
                        await asyncio.sleep(0.5 * (attempt + 1))

    await asyncio.gather(*(one(i, u) for i, u in enumerate(users)))
    return viewers, failures


class HttpLane:
    """One keep-alive HTTP/1.1 connection posting prepared requests (Centrifugo's API)."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        """The answer's status; an error leaves the lane to reconnect on the next post (the
        server closes a request it took over 10 s to answer)."""
        try:
            return await self._post(path, body)
        except (OSError, asyncio.IncompleteReadError):
            if self.writer is not None:
                self.writer.close()
            self.writer = None
            raise

    async def _post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nX-API-Key: {self.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        length, chunked = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        while chunked:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await self.reader.readexactly(size + 2)
            chunked = size > 0
        await self.reader.readexactly(length)
        return int(head[9:12])


def process_cpu() -> float:
    return time.process_time()


async def wait_for_go() -> float:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return float(line.split()[1])


async def sleep_until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))


async def viewer_process(spec: dict[str, Any]) -> None:
    """One viewer process: connect its share, say ready, and on go count what arrives over
    the window; report counts, sampled latencies, closes and its own CPU."""
    target = Target(**spec["target"])
    tally = Tally()
    users = [f"v{spec['index']}-{i}" for i in range(spec["count"])]
    viewers, failures = await connect(
        target, users, ["play"], tally, spec["sampled"], spec["source"]
    )
    gc.freeze()
    pacing: asyncio.Task[None] | None = None
    if spec["read_every_ms"] > 0:
        pacer = Pacer(spec["read_every_ms"] / 1000)
        for viewer in viewers:
            viewer.pacer = None if viewer.sampled else pacer
        pacing = asyncio.create_task(pacer.run())
    print(json.dumps({"connected": len(viewers), "failures": failures}), flush=True)
    start = await wait_for_go()
    await sleep_until(start + spec["warmup"])
    base = (tally.comments, tally.frames, process_cpu(), time.time())
    tally.window = True
    await sleep_until(start + spec["warmup"] + spec["seconds"])
    tally.window = False
    cpu, end = process_cpu(), time.time()
    report = {
        "comments": tally.comments - base[0],
        "frames": tally.frames - base[1],
        "cpu_s": cpu - base[2],
        "wall_s": end - base[3],
        "latencies": tally.latencies_ms,
        "dropped": tally.dropped,
        "closes": tally.closes,
        "pings": tally.pings,
        "open": sum(v.open for v in viewers),
        "failures": failures,
    }
    print(json.dumps(report), flush=True)
    if pacing is not None:
        pacing.cancel()
    for viewer in viewers:
        if viewer.transport is not None:
            viewer.transport.abort()


async def sender_process(spec: dict[str, Any]) -> None:
    """The comments: ``rate`` a second from go until the window ends, each text the wall time
    it was sent. Ours: round-robin over ``senders`` chat users (each sends rate/senders a
    second, under the node's per-user limit). Centrifugo: its HTTP publish API."""
    target = Target(**spec["target"])
    tally = Tally()
    rate, seconds, warmup = spec["rate"], spec["seconds"], spec["warmup"]
    senders: list[Viewer] = []
    lanes: list[HttpLane] = []
    if target.side == "ours":
        users = [f"s{i}" for i in range(spec["senders"])]
        senders, failures = await connect(target, users, ["play", "chat"], tally, 0, spec["source"])
        if failures:
            print(json.dumps({"connected": len(senders), "failures": failures}), flush=True)
            return
        for sender in senders:
            sender.sender = True
    else:
        # As many connections as comments a second: a publish returns once the message is
        # queued for every subscriber, and the sender must not be what limits the rate in.
        lanes = [HttpLane(target.api_port, target.api_key) for _ in range(max(8, int(rate)))]
        await asyncio.gather(*(lane.post("/api/info", b"{}") for lane in lanes))
    print(json.dumps({"connected": len(senders) or len(lanes), "failures": {}}), flush=True)
    start = await wait_for_go()
    window = (start + warmup, start + warmup + seconds)
    statuses: Counter[str] = Counter()
    queues: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in lanes]

    async def publish(lane: HttpLane, queue: asyncio.Queue[int]) -> None:
        while True:
            k = await queue.get()
            data = {"kind": "comment", "text": f"{time.time():.6f}", "ref": k}
            body = json.dumps({"channel": target.room, "data": data}).encode()
            try:
                statuses[str(await lane.post("/api/publish", body))] += 1
            except (OSError, asyncio.IncompleteReadError) as exc:
                statuses[type(exc).__name__] += 1

    workers = [asyncio.create_task(publish(lane, q)) for lane, q in zip(lanes, queues, strict=True)]
    sent = [0, 0]  # all, in the window

    async def comments() -> None:
        for k in range(int(rate * (warmup + seconds))):
            await sleep_until(start + k / rate)
            now = time.time()
            if senders:
                senders[k % len(senders)].send(
                    f'{{"type":"comment","text":"{now:.6f}","ref":"{k}"}}'.encode()
                )
            else:
                queues[k % len(queues)].put_nowait(k)
            sent[0] += 1
            sent[1] += window[0] <= now < window[1]

    def accepted() -> int:  # comments the server took: acks, or HTTP 200 from Centrifugo
        return tally.acks if senders else statuses["200"]

    cpu = process_cpu()
    sending = asyncio.create_task(comments())
    await sleep_until(window[0])
    frames, acks = tally.frames, accepted()
    await sleep_until(window[1])
    cpu, frames, acks = process_cpu() - cpu, tally.frames - frames, accepted() - acks
    await sending
    await asyncio.sleep(1)  # the last acks
    for worker in workers:
        worker.cancel()
    report = {
        "sent": sent[0],
        "sent_in_window": sent[1],
        "cpu_s": cpu,
        "wall_s": window[1] - start,
        "acks": accepted(),
        "acks_in_window": acks,
        "errors": tally.errors if senders else {k: v for k, v in statuses.items() if k != "200"},
        "closes": tally.closes,
        "frames": frames,
    }
    print(json.dumps(report), flush=True)
    for sender in senders:
        if sender.transport is not None:
            sender.transport.abort()


# ---------------------------------------------------------------------------------------------
# Servers: each side started fresh for a run, measured from /proc
# ---------------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def box_cpu() -> tuple[int, int, int]:
    """(busy, softirq, total) jiffies of the whole machine; softirq is mostly loopback TCP,
    charged to no process."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, values[6], sum(values)


class Server:
    """One side's server process; ``target(room)`` says how the load reaches it."""

    name = ""
    pid = 0
    infra: tuple[int, ...] = ()  # what it needs besides itself (Kafka, Postgres)

    @property
    def pids(self) -> list[int]:
        """Every process serving this side (ours may run one per core on one port)."""
        return [self.pid]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def target(self, room: str) -> Target:
        raise NotImplementedError

    def log_tail(self) -> str:
        return ""


class Centrifugo(Server):
    name = "centrifugo"

    def __init__(self, binary: Path, workdir: Path) -> None:
        from livecart_core.localinfra import free_port

        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.secret = secrets.token_urlsafe(32)
        self.key = secrets.token_urlsafe(16)
        self.config = workdir / "centrifugo.json"
        self.log = workdir / "centrifugo.log"
        self.config.write_text(
            json.dumps(
                {
                    "client": {
                        "token": {"hmac_secret_key": self.secret},
                        "allowed_origins": ["*"],
                    },
                    "http_api": {"key": self.key},
                    "channel": {
                        "namespaces": [
                            {"name": CENTRIFUGO_NAMESPACE, "allow_subscribe_for_client": True}
                        ]
                    },
                    "http_server": {"address": "127.0.0.1", "port": self.port},
                    "health": {"enabled": True},
                    "log": {"level": "error"},
                },
                indent=2,
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = await asyncio.to_thread(
            subprocess.Popen,
            [str(self.binary), "-c", str(self.config)],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        self.pid = self.process.pid
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                if self.process.poll() is not None:
                    raise SystemExit(f"centrifugo exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"http://127.0.0.1:{self.port}/health")).is_success:
                        return
                await asyncio.sleep(0.1)
        raise SystemExit(f"centrifugo did not answer /health:\n{self.log_tail()}")

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def target(self, room: str) -> Target:
        return Target(
            "centrifugo", self.port, f"{CENTRIFUGO_NAMESPACE}:{room}", self.secret,
            api_port=self.port, api_key=self.key,
        )  # fmt: skip

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


class OurNode(Server):
    """``python -m livecart_chat`` against the Kafka and Postgres the bench started."""

    name = "ours"

    def __init__(
        self,
        bootstrap: str,
        database_url: str,
        extra_env: dict[str, str],
        infra: tuple[int, ...],
        processes: int = 1,
    ) -> None:
        self.infra = infra
        self.processes = processes
        self.secret = secrets.token_urlsafe(32)
        self.env = {
            "LIVECART_WS_HOST": "127.0.0.1",
            "LIVECART_KAFKA_BOOTSTRAP": bootstrap,
            "LIVECART_DATABASE_URL": database_url,
            "LIVECART_AUTH_SECRET": self.secret,
            "LIVECART_LOG_LEVEL": "WARNING",
            **extra_env,
        }
        self.services: list[Any] = []
        self.ws_port = 0

    @property
    def service(self) -> Any:
        return self.services[0] if self.services else None

    @property
    def pids(self) -> list[int]:
        return [s.process.pid for s in self.services]

    async def start(self) -> None:
        from livecart_core.localinfra import free_port
        from livecart_core.testing import ServiceProcess

        self.ws_port = free_port()
        for _ in range(self.processes):  # one WebSocket port, shared (SO_REUSEPORT)
            service = ServiceProcess(
                "livecart_chat", {**self.env, "LIVECART_WS_PORT": str(self.ws_port)}
            )
            await asyncio.to_thread(service.start)
            self.services.append(service)
        self.pid = self.services[0].process.pid

    async def stop(self) -> None:
        for service in self.services:
            await asyncio.to_thread(service.stop)

    def target(self, room: str) -> Target:
        return Target("ours", self.ws_port, room, self.secret)

    def log_tail(self) -> str:
        return self.service.output[-3000:] if self.service is not None else ""


async def probe(server: Server, room: str) -> None:
    """One viewer into the room before any load, so a node that cannot take viewers yet fails
    with what it answered rather than with thousands of refused connections."""
    target = server.target(room)
    tally = Tally()
    viewers, failures = await connect(target, ["probe"], ["play"], tally, 1, "127.0.0.1")
    for viewer in viewers:
        assert viewer.transport is not None
        viewer.transport.abort()
    if failures:
        raise SystemExit(
            f"{server.name}: a viewer cannot join ws://127.0.0.1:{target.port}"
            f"{'/ws/rooms/' + room if target.side == 'ours' else '/connection/websocket'}: "
            f"{next(iter(failures))}\n--- server log ---\n{server.log_tail()}"
        )


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


@dataclass
class Load:
    viewers: int
    rate: float
    seconds: float
    warmup: float
    processes: int
    senders: int
    sampled: int
    read_every_ms: float


async def start_children(specs: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    children = []
    for mode, spec in specs:
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, mode, json.dumps(spec),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,
        )  # fmt: skip
        children.append(child)
    return children


async def read_report(child: Any, what: str) -> dict[str, Any]:
    line = await child.stdout.readline()
    if not line:
        await child.wait()
        raise SystemExit(f"{what} exited {child.returncode} without a report")
    report: dict[str, Any] = json.loads(line)
    return report


@contextlib.asynccontextmanager
async def running(server: Server) -> AsyncIterator[Server]:
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


async def run_load(server: Server, load: Load, room: str) -> dict[str, Any]:
    """``load.viewers`` viewers in ``room`` and the senders at ``load.rate``; the window's
    figures. A fresh server each time."""
    async with running(server):
        await probe(server, room)
        target = server.target(room)
        shares = [load.viewers // load.processes] * load.processes
        shares[0] += load.viewers - sum(shares)
        sampled = [load.sampled // load.processes] * load.processes
        common = {
            "target": dataclasses.asdict(target),
            "seconds": load.seconds,
            "warmup": load.warmup,
        }
        specs = [
            ("--viewers-process", {**common, "index": p, "count": n, "sampled": sampled[p],
                                   "source": f"127.0.0.{2 + p}",
                                   "read_every_ms": load.read_every_ms})
            for p, n in enumerate(shares)
        ]  # fmt: skip
        if load.rate > 0:
            specs.append(
                ("--sender-process", {**common, "rate": load.rate, "senders": load.senders,
                                      "source": f"127.0.0.{2 + load.processes}"})
            )  # fmt: skip
        rss_before = sum(map(rss_mb, server.pids))
        children = await start_children(specs)
        try:
            ready = [await read_report(c, "a load process") for c in children]
            connected = sum(r["connected"] for r in ready[: load.processes])
            failures: Counter[str] = sum((Counter(r["failures"]) for r in ready), Counter())
            if failures or (load.rate > 0 and not ready[-1]["connected"]):
                raise SystemExit(f"{server.name}: connections failed: {dict(failures)}")
            start = time.time() + 0.5
            for child in children:
                child.stdin.write(f"go {start}\n".encode())
                await child.stdin.drain()
            await sleep_until(start + load.warmup)
            cpu0, box0 = sum(map(cpu_seconds, server.pids)), box_cpu()
            infra0 = sum(map(cpu_seconds, server.infra))
            await sleep_until(start + load.warmup + load.seconds)
            cpu1, box1 = sum(map(cpu_seconds, server.pids)), box_cpu()
            infra1 = sum(map(cpu_seconds, server.infra))
            rss_after = sum(map(rss_mb, server.pids))
            reports = [await read_report(c, "a load process") for c in children]
            for child in children:
                await child.wait()
        finally:
            for child in children:
                if child.returncode is None:
                    child.kill()
                    await child.wait()
    viewers = reports[: load.processes]
    sender = reports[load.processes] if load.rate > 0 else None
    frames = sum(r["frames"] for r in reports)
    latencies = sorted(x for r in viewers for x in r["latencies"])
    loadgen_pcts = [r["cpu_s"] / r["wall_s"] * 100 for r in reports]
    deliveries = sum(r["comments"] for r in viewers)
    closes: Counter[str] = sum((Counter(r["closes"]) for r in reports), Counter())
    return {
        "viewers": connected,
        "open_at_end": sum(r["open"] for r in viewers),
        "deliveries_per_s": deliveries / load.seconds,
        "delivered_pct": (
            deliveries / (sender["sent_in_window"] * connected) * 100
            if sender and sender["sent_in_window"] else 0.0
        ),
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[max(0, int(len(latencies) * 0.99) - 1)] if latencies else float("nan"),
        "latency_samples": len(latencies),
        "cpu_pct": (cpu1 - cpu0) / load.seconds * 100,
        "frames_per_s": frames / load.seconds,
        "us_per_frame": (cpu1 - cpu0) / frames * 1e6 if frames else float("nan"),
        "rss_mb": rss_after,
        "rss_mb_per_10k": (rss_after - rss_before) / max(1, connected) * 10_000,
        "infra_cpu_pct": (infra1 - infra0) / load.seconds * 100,
        "box_cpu_pct": (box1[0] - box0[0]) / (box1[2] - box0[2]) * 100 * (os.cpu_count() or 1),
        "softirq_pct": (box1[1] - box0[1]) / (box1[2] - box0[2]) * 100 * (os.cpu_count() or 1),
        "loadgen_cpu_pct": sum(loadgen_pcts),
        "loadgen_max_pct": max(loadgen_pcts),
        "saturated": max(loadgen_pcts) > SATURATED_PCT,
        "sent_per_s": sender["sent_in_window"] / load.seconds if sender else 0.0,
        "accepted_per_s": sender["acks_in_window"] / load.seconds if sender else 0.0,
        "acks": sender["acks"] if sender else 0,
        "sender_errors": dict(sender["errors"]) if sender else {},
        "dropped": sum(r["dropped"] for r in viewers),
        "closes": dict(closes),
        "pings": sum(r["pings"] for r in viewers),
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def label(viewers: int) -> str:
    return f"{viewers // 1000}k" if viewers % 1000 == 0 else str(viewers)


def print_run(prefix: str, tag: str, r: dict[str, Any]) -> None:
    p, s = prefix, f"_{tag}"
    print(f"{p}viewers{s}={r['viewers']} viewers")
    print(f"{p}deliveries_per_s{s}={r['deliveries_per_s']:.0f} deliveries/s")
    print(f"{p}delivered_pct{s}={r['delivered_pct']:.1f} %")
    print(f"{p}delivery_p50_ms{s}={r['p50']:.1f} ms")
    print(f"{p}delivery_p99_ms{s}={r['p99']:.1f} ms")
    print(f"{p}latency_samples{s}={r['latency_samples']} comments")
    print(f"{p}{'node_' if not p else ''}cpu_pct{s}={r['cpu_pct']:.0f} %")
    print(f"{p}frames_per_s{s}={r['frames_per_s']:.0f} frames/s")
    print(f"{p}us_per_frame_sent{s}={r['us_per_frame']:.2f} us")
    per_viewer = r["frames_per_s"] / max(1, r["viewers"])
    print(f"{p}frames_per_viewer_per_s{s}={per_viewer:.1f} frames/s")
    per_frame = r["deliveries_per_s"] / max(1.0, r["frames_per_s"])
    print(f"{p}comments_per_frame{s}={per_frame:.1f} comments")
    print(f"{p}comments_sent_per_s{s}={r['sent_per_s']:.0f} comments/s")
    print(f"{p}comments_accepted_per_s{s}={r['accepted_per_s']:.0f} comments/s")
    print(f"{p}comments_acked{s}={r['acks']} comments")
    print(f"{p}sender_errors{s}={sum(r['sender_errors'].values())} errors")
    if r["sender_errors"]:
        print(f"# {p}sender errors{s}: {r['sender_errors']}")
    print(f"{p}dropped_in_sample{s}={r['dropped']} comments")
    print(f"{p}closed{s}={sum(r['closes'].values())} connections")
    if r["closes"]:
        print(f"# {p}closes{s}: {r['closes']}")
    print(f"{p}loadgen_cpu_pct{s}={r['loadgen_cpu_pct']:.0f} %")
    print(f"{p}loadgen_busiest_process_pct{s}={r['loadgen_max_pct']:.0f} %")
    print(f"{p}loadgen_saturated{s}={'yes' if r['saturated'] else 'no'}")
    if not p:
        print(f"kafka_postgres_cpu_pct{s}={r['infra_cpu_pct']:.0f} %")
    print(f"{p}box_cpu_pct{s}={r['box_cpu_pct']:.0f} %")
    print(f"{p}box_softirq_pct{s}={r['softirq_pct']:.0f} %")
    others = (
        r["box_cpu_pct"] - r["softirq_pct"] - r["cpu_pct"] - r["infra_cpu_pct"]
        - r["loadgen_cpu_pct"]
    )  # fmt: skip
    print(f"{p}others_on_box_cpu_pct{s}={max(0.0, others):.0f} %")
    sys.stdout.flush()


def print_idle(prefix: str, r: dict[str, Any]) -> None:
    print(f"{prefix}idle_viewers={r['viewers']} viewers")
    print(f"{prefix}idle_open_at_end={r['open_at_end']} viewers")
    print(f"{prefix}rss_mb_per_10k_conns={r['rss_mb_per_10k']:.1f} MB")
    print(f"{prefix}idle_rss_mb={r['rss_mb']:.0f} MB")
    print(f"{prefix}idle_cpu_pct={r['cpu_pct']:.1f} %")
    print(f"{prefix}idle_pings_answered={r['pings']} pings")
    print(f"{prefix}idle_closed={sum(r['closes'].values())} connections")
    print(f"{prefix}idle_loadgen_cpu_pct={r['loadgen_cpu_pct']:.1f} %")
    sys.stdout.flush()


async def run_side(
    server: Server, counts: list[int], load: Load, idle: int, idle_seconds: float
) -> dict[int, dict[str, Any]]:
    prefix = "" if server.name == "ours" else f"{server.name}_"
    results: dict[int, dict[str, Any]] = {}
    for requested, actual in counts_capped(counts, load.senders):
        run = dataclasses.replace(load, viewers=actual)
        results[requested] = await run_load(server, run, f"room-{secrets.token_hex(4)}")
        print_run(prefix, label(requested), results[requested])
        if results[requested]["saturated"]:
            print(f"{prefix}loadgen_saturated_at={requested} viewers (larger counts not run)")
            break
    if idle:
        actual = counts_capped([idle], 0)[0][1]
        quiet = dataclasses.replace(
            load, viewers=actual, rate=0, seconds=idle_seconds, warmup=2.0, senders=0
        )
        print_idle(prefix, await run_load(server, quiet, f"room-{secrets.token_hex(4)}"))
    return results


def counts_capped(counts: list[int], senders: int) -> list[tuple[int, int]]:
    """Each requested viewer count, and what one server process can hold: its sockets are
    bounded by the hard RLIMIT_NOFILE, which only a privileged process may raise."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if limit == resource.RLIM_INFINITY:
        return [(n, n) for n in counts]
    room = limit - senders - 300  # its listeners, Kafka, Postgres, logs
    return [(n, min(n, room)) for n in counts]


def centrifugo_binary() -> Path:
    from livecart_core.localinfra import cache_dir

    binary = cache_dir() / "bin" / "centrifugo"
    if binary.exists():
        return binary
    found = shutil.which("centrifugo")
    if found is None:
        raise SystemExit(f"no Centrifugo at {binary}: run `make centrifugo` first")
    return Path(found)


async def our_side(
    tmp: Path,
    counts: list[int],
    load: Load,
    idle: int,
    idle_seconds: float,
    env: dict[str, str],
    processes: int = 1,
) -> dict[int, dict[str, Any]]:
    from livecart_chat.app import SERVICE
    from livecart_core.db import Database
    from livecart_core.localinfra.kafka import KafkaBroker
    from livecart_core.localinfra.postgres import EmbeddedPostgres

    async with contextlib.AsyncExitStack() as stack:
        postgres = EmbeddedPostgres(tmp / "pg")
        await asyncio.to_thread(postgres.start)
        stack.callback(postgres.stop)
        db = Database(postgres.url, "chat", pool_size=1)
        await db.connect()
        await db.migrate(SERVICE.migrations)
        await db.close()
        (tmp / "kafka").mkdir()
        broker = KafkaBroker(tmp / "kafka")
        await asyncio.to_thread(broker.start)
        stack.callback(broker.stop)
        assert broker.process is not None
        postmaster = int((tmp / "pg" / "postmaster.pid").read_text().split()[0])
        infra = (broker.process.pid, postmaster)
        node = OurNode(broker.bootstrap, postgres.url, env, infra, processes)
        return await run_side(node, counts, load, idle, idle_seconds)


def sender_limits(rate: float, senders: int) -> dict[str, str]:
    """Our node's per-user comment limit, raised to twice what each sender sends: the bench
    measures fan-out, and fewer sending users means fewer extra sockets fed every batch."""
    per_user = 2 * rate / senders
    return {
        "LIVECART_COMMENT_RATE_PER_S": f"{per_user:g}",
        "LIVECART_COMMENT_BURST": str(max(5, math.ceil(per_user))),
    }


def raise_fd_limit() -> int:
    """The soft RLIMIT_NOFILE up to the hard one (children inherit it); the hard one."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def print_setup(args: argparse.Namespace, counts: list[int]) -> None:
    hard = raise_fd_limit()
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    print(f"rate={args.rate:g} comments/s")
    print(f"seconds={args.seconds:g} s")
    print(f"load_processes={args.processes} viewer processes + 1 sender process")
    print(f"senders={args.senders} users (ours; each under twice its share of the rate)")
    print(f"node_processes={args.node_processes} processes (ours, sharing one WebSocket port)")
    print(f"fd_limit={hard} sockets per process")
    print(f"ephemeral_ports={int(high) - int(low) + 1} ports per source address")
    capped = [f"{n}->{m}" for n, m in counts_capped([*counts, args.idle], args.senders) if m < n]
    if capped:
        print(f"# viewer counts capped by the fd limit of one server process: {capped}")
    sys.stdout.flush()


async def main(args: argparse.Namespace, counts: list[int]) -> None:
    load = Load(
        viewers=0, rate=args.rate, seconds=args.seconds, warmup=args.warmup,
        processes=args.processes, senders=args.senders, sampled=args.sampled,
        read_every_ms=args.read_every_ms,
    )  # fmt: skip
    sides = ["centrifugo", "ours"] if args.only is None else [args.only]
    results: dict[str, dict[int, dict[str, Any]]] = {}
    env = {
        **sender_limits(args.rate, args.senders),
        # Fan-out capacity, like Centrifugo's: every comment to every viewer, none sampled out
        # (the node's default samples a room down to what a viewer can read).
        "LIVECART_COMMENTS_PER_BATCH": "1000",
        **dict(kv.split("=", 1) for kv in args.node_env),
    }
    with tempfile.TemporaryDirectory(prefix="livecart-bench-chat-") as tmp:
        for side in sides:
            if side == "centrifugo":
                server = Centrifugo(centrifugo_binary(), Path(tmp))
                results[side] = await run_side(server, counts, load, args.idle, args.idle_seconds)
            else:
                results[side] = await our_side(
                    Path(tmp), counts, load, args.idle, args.idle_seconds, env,
                    args.node_processes,
                )  # fmt: skip
    if len(results) == 2:
        common = [n for n in counts if n in results["ours"] and n in results["centrifugo"]]
        for n in common:
            ratio = (
                results["ours"][n]["deliveries_per_s"]
                / results["centrifugo"][n]["deliveries_per_s"]
            )
            print(f"chat_vs_centrifugo_ratio_{label(n)}={ratio:.2f} x")
        if common:
            n = common[-1]
            ratio = (
                results["ours"][n]["deliveries_per_s"]
                / results["centrifugo"][n]["deliveries_per_s"]
            )
            print(f"chat_vs_centrifugo_ratio={ratio:.2f} x")
            print(f"ratio_at_viewers={results['ours'][n]['viewers']} viewers")


def child_main(mode: str, spec: dict[str, Any]) -> None:
    raise_fd_limit()
    uvloop.run(viewer_process(spec) if mode == "--viewers-process" else sender_process(spec))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] in ("--viewers-process", "--sender-process"):
        child_main(sys.argv[1], json.loads(sys.argv[2]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        parser.add_argument("--viewers", default="5000,10000,20000", help="comma-separated")
        parser.add_argument("--rate", type=float, default=200, help="comments per second in")
        parser.add_argument("--seconds", type=float, default=20, help="measured window")
        parser.add_argument("--warmup", type=float, default=3, help="sending before the window")
        parser.add_argument("--idle", type=int, default=50_000, help="idle viewers (0: skip)")
        parser.add_argument("--idle-seconds", type=float, default=30)
        parser.add_argument("--only", choices=["ours", "centrifugo"])
        parser.add_argument(
            "--node-processes", type=int, default=1, help="our node processes on one port"
        )
        parser.add_argument("--processes", type=int, default=2, help="viewer load processes")
        parser.add_argument("--senders", type=int, default=20, help="our chat users sending")
        parser.add_argument("--sampled", type=int, default=100, help="viewers that parse all")
        parser.add_argument(
            "--read-every-ms",
            type=float,
            default=200,
            help="other viewers read once a tick (0: eager)",
        )
        parser.add_argument(
            "--node-env", action="append", default=[], metavar="KEY=VALUE",
            help="extra environment for our node (e.g. a per-user rate limit)",
        )  # fmt: skip
        args = parser.parse_args()
        counts = [int(n) for n in args.viewers.split(",") if n]
        print_setup(args, counts)
        asyncio.run(main(args, counts))
