"""The plain RTP/UDP pipe that carries one room's media from ingest to a relay.

The relay's `RelayService.OpenPipe` (gRPC) answers a UDP address; ingest sends each RTP
packet of the publisher there as one datagram, unencrypted, with the payload types it
declared, and forwards the publisher's RTCP sender reports (audio/video sync). The relay
sends RTCP feedback (PLI, FIR, NACK, REMB for what its viewers take, and BYE when the pipe
was taken over) back to where the datagrams come from. Media never travels over gRPC or
Kafka; this is the shape of mediasoup's PipeTransport and Janus's RTP forwarders.

Each packet leaving ingest carries one RFC 8285 one-byte header extension (the publisher's
own extensions mean nothing downstream): 8 bytes, the microseconds since the Unix epoch at
which the packet entered ingest. The relay turns it into its platform-latency histogram.

`PipeOut` is ingest's end, `PipeIn` the relay's. Neither ever raises on what arrives: a
datagram that is not RTP/RTCP, or comes from another address, is counted and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping
from typing import Any, cast

from livecart_media.rtp import header as rtp_header
from livecart_media.rtp import rtcp
from livecart_media.rtp.errors import MalformedPacket
from livecart_media.rtp.header import RtpHeader
from livecart_media.webrtc import ForwardedStream, Kind

logger = logging.getLogger(__name__)

INGEST_TIME_EXTENSION_ID = 1
_INGEST_TIME = struct.Struct("!Q")
# One-byte form: profile, 3 words: the element (id, len-1), 8 bytes of time, 3 of padding.
_EXTENSION = struct.Struct("!HHB8s3x")
_PIPE_SSRC = 0x4C435049  # "LCPI": the sender SSRC of the relay's feedback
Address = tuple[str, int]


def stamp(packet: bytes, header: RtpHeader, now_us: int) -> bytes:
    """`packet` with its extensions replaced by the ingest-time extension."""
    csrc_end = rtp_header.FIXED_HEADER_SIZE + 4 * header.csrc_count
    extension = _EXTENSION.pack(
        rtp_header.ONE_BYTE_PROFILE,
        3,
        INGEST_TIME_EXTENSION_ID << 4 | 7,
        _INGEST_TIME.pack(now_us),
    )
    first = bytes([packet[0] | 0x10])
    return b"".join((first, packet[1:csrc_end], extension, packet[header.payload_offset :]))


def ingest_time_us(packet: bytes, header: RtpHeader, extension_id: int) -> int | None:
    """When the packet entered ingest (µs since the epoch), if it carries the extension.

    None too for an extension block whose elements run past it: ingest never writes one,
    and the packet was already forwarded (only its latency goes unmeasured).
    """
    if not extension_id:
        return None
    try:
        value = rtp_header.read_extension(packet, header, extension_id)
    except MalformedPacket:
        return None
    if value is None or len(value) != 8:
        return None
    return cast(int, _INGEST_TIME.unpack(value)[0])


def may_own(datagram: bytes, payload_types: Container[int]) -> bool:
    """Whether `datagram` may take a pipe nobody owns yet: RTP of a declared payload type.

    `PipeIn` applies this rule to the header it parses anyway; the relay front's tee, which
    forwards without parsing, asks here so that a stray datagram cannot take the port first.
    """
    if rtcp.is_rtcp(datagram):
        return False
    try:
        return rtp_header.parse(datagram).payload_type in payload_types
    except MalformedPacket:
        return False


class _Endpoint(asyncio.DatagramProtocol):
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the other end restarts: keep going.
        logger.debug("pipe socket error: %s", exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class PipeOut(_Endpoint):
    """Ingest's end: the publisher's RTP and sender reports out, the relay's feedback in.

    `on_feedback(kind, message)` gets each PLI, FIR, NACK or REMB for a stream (by the
    SSRCs of what was sent), `on_bye()` a BYE: the relay closed the pipe (taken over),
    `on_refused()` an ICMP port unreachable: nothing listens at the relay's end any more.
    """

    def __init__(
        self,
        relay: Address,
        on_feedback: Callable[[Kind, rtcp.RtcpMessage], None],
        on_bye: Callable[[], None],
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self.relay = relay
        self.sent = 0
        self.dropped = 0
        self._on_feedback = on_feedback
        self._on_bye = on_bye
        self._on_refused = on_refused
        self._kinds: dict[int, Kind] = {}  # SSRC: kind, as sent

    @classmethod
    async def open(
        cls,
        relay: Address,
        on_feedback: Callable[[Kind, rtcp.RtcpMessage], None],
        on_bye: Callable[[], None],
        *,
        on_refused: Callable[[], None] | None = None,
    ) -> PipeOut:
        loop = asyncio.get_running_loop()
        _, pipe = await loop.create_datagram_endpoint(
            lambda: cls(relay, on_feedback, on_bye, on_refused), remote_addr=relay
        )
        return pipe

    def error_received(self, exc: Exception) -> None:
        # The socket is connected to the relay, so the kernel reports its ICMP port
        # unreachable: nothing listens there any more (the relay restarted).
        if isinstance(exc, ConnectionRefusedError) and self._on_refused is not None:
            self._on_refused()
        else:
            super().error_received(exc)

    def send_rtp(self, kind: Kind, packet: bytes, header: RtpHeader) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self._kinds[header.ssrc] = kind
        self.transport.sendto(stamp(packet, header, time.time_ns() // 1000))
        self.sent += 1

    def send_rtcp(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if addr[1] != self.relay[1] or not rtcp.is_rtcp(data):
            self.dropped += 1
            return
        try:
            messages = rtcp.parse(data)
        except MalformedPacket:
            self.dropped += 1
            return
        for message in messages:
            if isinstance(message, rtcp.Bye):
                self._on_bye()
            elif isinstance(message, rtcp.Remb):
                kind = next((self._kinds[s] for s in message.ssrcs if s in self._kinds), None)
                if kind is not None:
                    self._on_feedback(kind, message)
            elif isinstance(message, rtcp.Pli | rtcp.Nack):
                kind = self._kinds.get(message.media_ssrc)
                if kind is not None:
                    self._on_feedback(kind, message)
            elif isinstance(message, rtcp.Fir):
                for target, _ in message.entries:
                    kind = self._kinds.get(target)
                    if kind is not None:
                        self._on_feedback(kind, message)


OnPipeRtp = Callable[[ForwardedStream, bytes, RtpHeader, bool], Awaitable[int]]
"""(stream, packet, header, keyframe start) -> how many subscribers it went to."""


class PipeIn(_Endpoint):
    """The relay's end of one room's pipe: RTP in, routed by payload type to its stream.

    Packets are handed to `on_rtp` in arrival order from one task, so a slow await never
    reorders them. The first address that sends a valid packet owns the pipe; datagrams
    from anywhere else are dropped. `observe_latency(seconds)` gets the time from ingest
    to the last subscriber for each video frame's last packet that reached a subscriber.
    """

    def __init__(
        self,
        routes: Mapping[int, ForwardedStream],
        on_rtp: OnPipeRtp,
        *,
        ingest_time_extension_id: int = 0,
        observe_latency: Callable[[float], None] | None = None,
    ) -> None:
        self.routes = dict(routes)
        self.received = 0
        self.dropped = 0
        self.source: Address | None = None
        self.last_packet = time.monotonic()
        self.opened = self.last_packet
        self._on_rtp = on_rtp
        self._extension_id = ingest_time_extension_id
        self._observe = observe_latency
        self._queue: deque[tuple[bytes, Address]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, where: str | socket.socket, *args: object, **kwargs: object) -> PipeIn:
        """A pipe listening on `where`: a host (any free port) or a bound UDP socket."""
        loop = asyncio.get_running_loop()
        bind: dict[str, Any] = (
            {"local_addr": (where, 0)} if isinstance(where, str) else {"sock": where}
        )
        _, pipe = await loop.create_datagram_endpoint(
            lambda: cls(*args, **kwargs),  # type: ignore[arg-type]
            **bind,
        )
        pipe._task = asyncio.create_task(pipe._drain())
        return pipe

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.source is not None and addr != self.source:
            self.dropped += 1
            return
        self._queue.append((data, addr))
        self._wake.set()

    async def request_keyframe(self, kind: Kind = "video") -> bool:
        stream = self._stream(kind)
        if stream is None or stream.ssrc is None:
            return False
        return self._send(rtcp.build_pli(_PIPE_SSRC, stream.ssrc))

    async def send_nack(self, kind: Kind, lost: Iterable[int]) -> bool:
        stream = self._stream(kind)
        lost = list(lost)
        if stream is None or stream.ssrc is None or not lost:
            return False
        return self._send(rtcp.build_nack(_PIPE_SSRC, stream.ssrc, lost))

    def send_remb(self, bitrate: int) -> bool:
        """Tell ingest the most the room's viewers take, bits per second, for all streams."""
        ssrcs = [s.ssrc for s in self.routes.values() if s.ssrc is not None]
        return bool(ssrcs) and self._send(rtcp.build_remb(_PIPE_SSRC, bitrate, ssrcs))

    def send_bye(self) -> None:
        ssrcs = [s.ssrc for s in self.routes.values() if s.ssrc is not None] or [_PIPE_SSRC]
        self._send(rtcp.build_bye(ssrcs))

    def close(self) -> None:
        super().close()
        if self._task is not None:
            self._task.cancel()

    def _stream(self, kind: Kind) -> ForwardedStream | None:
        return next((s for s in self.routes.values() if s.kind == kind), None)

    def _send(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing() or self.source is None:
            return False
        self.transport.sendto(data, self.source)
        return True

    async def _drain(self) -> None:
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                data, addr = queue.popleft()
                try:
                    await self._handle(data, addr)
                except Exception:
                    logger.exception("forwarding a pipe packet failed")

    async def _handle(self, data: bytes, addr: Address) -> None:
        if rtcp.is_rtcp(data):
            if self.source is not None:
                self._handle_rtcp(data)
            else:
                self.dropped += 1
            return
        try:
            header = rtp_header.parse(data)
        except MalformedPacket:
            self.dropped += 1
            return
        stream = self.routes.get(header.payload_type)
        if stream is None:
            self.dropped += 1
            return
        self.source = addr
        self.last_packet = time.monotonic()
        start = stream.take(data, header)
        self.received += 1
        delivered = await self._on_rtp(stream, data, header, start)
        if delivered and header.marker and self._observe is not None and stream.kind == "video":
            entered = ingest_time_us(data, header, self._extension_id)
            if entered is not None:
                self._observe(max(0.0, time.time() - entered / 1e6))

    def _handle_rtcp(self, data: bytes) -> None:
        try:
            messages = rtcp.parse(data)
        except MalformedPacket:
            self.dropped += 1
            return
        for message in messages:
            if isinstance(message, rtcp.SenderReport):
                for stream in self.routes.values():
                    stream.note_sender_report(message)
