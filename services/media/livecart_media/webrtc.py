"""WebRTC peers that carry RTP without decoding it: the relay's one coupling to aiortc.

aiortc does ICE, DTLS, SRTP and SDP for us; its media pipeline (jitter buffer, decoder,
encoder) is bypassed. It has no public hook for that, so this is the only module that
touches aiortc's private attributes, all written against the pinned aiortc==1.16.0
(aioice==0.13.0); re-check each of them before moving the pin:

- `RTCDtlsTransport._handle_rtp_data(data, arrival_time_ms)` and `._handle_rtcp_data(data)`,
  replaced on each transport instance: SRTP-decrypted packets reach us as bytes, and RTP
  never reaches `RTCRtpReceiver._handle_rtp_packet`, so the receiver's jitter buffer and
  decoder thread get no work (the thread exists, blocked on its empty queue).
- `RTCDtlsTransport._send_rtp(data)`: SRTP-protects RTP or RTCP and sends it; on the hot
  path, its `._tx_srtp` session, `._state` and its ICE transport's `._connection._nominated`
  pair (aioice), whose socket a forwarded packet is written to directly.
- `RTCRtpTransceiver._codecs` (narrowed to one codec and its RTX before answering: aiortc
  ignores setCodecPreferences when it answers), `._headerExtensions` (the mid's id) and
  `._offerDirection` (whether the publisher sends on that m-line at all; aiortc stores it
  reversed, as seen from our side).
- `RTCRtpSender._ssrc`, `._rtx_ssrc`: the SSRCs aiortc announces in our SDP.
- `RTCRtpSender._send_rtcp(packets)`, replaced per sender: its periodic sender reports
  carry our packet counts and the publisher's clock mapping instead of zeros.
- `aioice.ice.get_host_addresses`, replaced inside `pinned_host_addresses`;
  `aioice.ice.Connection.get_component_candidates` (its host half redone: `StunProtocol`,
  `candidate_foundation`, `candidate_priority`, `Connection._protocols`), inside
  `pinned_host_ports`.

A publisher's peer connection gets a `ReceiveTap` (`answer_publisher`): every RTP packet
comes out as bytes with its parsed header, already kept in its `ForwardedStream`'s NACK
cache. A subscriber's gets a `RawSender` per kind (`answer_subscriber`, WHEP style: the
client offers recvonly, we answer sendonly) that renumbers packets into the subscriber's
SSRC, payload type and sequence, starts video on a keyframe and answers NACKs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import time
from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import Any, Literal, TypeVar

import aioice
import aioice.candidate
import aioice.ice
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc import sdp as aiortc_sdp
from aiortc.exceptions import OperationError
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import AnyRtcpPacket, RtcpSrPacket
from av.frame import Frame

from livecart_core.errors import InvalidArgument, StartupError
from livecart_media.errors import Unavailable, UnsupportedCodecs
from livecart_media.offers import check_offer
from livecart_media.ports import PortRange
from livecart_media.rtp import header as rtp_header
from livecart_media.rtp import keyframe, rtcp
from livecart_media.rtp.cache import PacketCache
from livecart_media.rtp.errors import MalformedPacket
from livecart_media.rtp.header import RtpHeader
from livecart_media.rtp.rewriter import SequenceRewriter

logger = logging.getLogger(__name__)

Kind = Literal["audio", "video"]
SUPPORTED_MIMES = ("video/vp8", "video/h264", "audio/opus")
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"

_TS_MASK = 0xFFFFFFFF
_DTLS_CONNECTED = State.CONNECTED
_REPLAY_BURST = 16  # packets of a replayed GOP written back to back,
_REPLAY_GAP_S = 0.008  # then a pause: about 2,000 packets/s, 13 times a 720p stream
# A longer GOP is not replayed (the viewer waits for a keyframe asked by PLI): a receiver's
# jitter buffer (aiortc's holds 512 packets) must hold the replay with its holes until
# their retransmissions arrive, a round trip later.
_REPLAY_MAX = 256
_SENDER_REPORT = struct.Struct("!BBHIQIII")  # RFC 3550 §6.4.1, no report blocks
_NTP_UNIX_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970
_ICE_RECEIVE_BUFFER = 262144  # as aioice sets it (aioice.turn.UDP_SOCKET_BUFFER_SIZE)


class NegotiationError(ValueError):
    """An offer the relay cannot answer; the message says why (for a 400/406 reply)."""


# What aiortc raises for an offer it cannot parse or use: its SDP parser asserts and indexes;
# setRemoteDescription and createAnswer read attributes of the ICE/DTLS lines an offer may
# lack (AttributeError on None); a codec is looked up with next(), whose StopIteration a
# coroutine turns into RuntimeError.
_MALFORMED = (ValueError, AssertionError, IndexError, KeyError, TypeError, AttributeError)
_INCOMPLETE = "a media section lacks its ICE, DTLS or codec lines"
T = TypeVar("T")


def peer(connect_timeout_s: float | None = None) -> RTCPeerConnection:
    """A server-side peer connection: host candidates only (no STUN server needed to learn
    our own addresses).

    With `connect_timeout_s`, it is closed unless ICE and DTLS are up that soon: a client
    that posted an offer and vanished, or whose checks or handshake never finish, would
    otherwise hold its publisher or viewer slot until aioice gives up, a minute later.
    Closing shows as ``connectionState == "closed"``, which frees the slot."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if connect_timeout_s is not None:
        timer = asyncio.get_running_loop().call_later(connect_timeout_s, _give_up, pc)

        @pc.on("connectionstatechange")
        def settled() -> None:
            if pc.connectionState in ("connected", "closed"):
                timer.cancel()

    return pc


_closing: set[asyncio.Task[None]] = set()


def _give_up(pc: RTCPeerConnection) -> None:
    if pc.connectionState in ("connected", "closed"):
        return
    logger.info("closing a peer connection not connected in time (%s)", pc.connectionState)
    task = asyncio.ensure_future(pc.close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def negotiate(answering: Awaitable[T]) -> T:
    """Await an answer_* call, turning an unusable offer into UnsupportedCodecs (406) or
    InvalidArgument (400) with the reason."""
    try:
        return await answering
    except NegotiationError as exc:
        raise UnsupportedCodecs(str(exc)) from None
    except OperationError:
        # aiortc's refusal of an m-line none of whose codecs it knows (AV1 only, say).
        raise UnsupportedCodecs(
            f"the offer has a track in none of {', '.join(SUPPORTED_MIMES)}"
        ) from None
    except AttributeError:
        raise InvalidArgument(f"malformed SDP offer: {_INCOMPLETE}") from None
    except _MALFORMED as exc:
        raise InvalidArgument(f"malformed SDP offer: {exc or type(exc).__name__}") from None
    except RuntimeError as exc:
        if not isinstance(exc.__cause__, StopIteration):
            raise
        raise InvalidArgument(f"malformed SDP offer: {_INCOMPLETE}") from None


class IceGathering:
    """Where a server's peer connections gather ICE host candidates.

    With configured addresses, gathering is pinned to them (`pinned_host_addresses`);
    with a port range, host candidates bind inside it (`pinned_host_ports`). Both patch
    aioice for the whole process, so then one negotiation gathers at a time; without
    either, aioice offers every interface it finds, on ports the OS picks.
    """

    def __init__(self, addresses: Sequence[str] = (), ports: PortRange | None = None) -> None:
        self.addresses = tuple(addresses)
        self.ports = ports
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        if not self.addresses and self.ports is None:
            yield
            return
        async with self._lock:
            with ExitStack() as pinned:
                if self.addresses:
                    pinned.enter_context(pinned_host_addresses(self.addresses))
                if self.ports is not None:
                    pinned.enter_context(pinned_host_ports(self.ports))
                yield


@contextmanager
def pinned_host_ports(ports: PortRange) -> Iterator[None]:
    """Bind ICE host candidates on ports of `ports` inside the block (aioice 0.13 has no
    port range of its own: it binds port 0).

    Replaces `aioice.ice.Connection.get_component_candidates` for connections without
    STUN or TURN servers (a server's peers: `peer()`), doing what its host half does."""
    original = aioice.ice.Connection.get_component_candidates

    async def in_range(
        self: aioice.ice.Connection,
        component: int,
        addresses: list[str],
        timeout: int = 5,  # noqa: ASYNC109 (aioice's signature)
    ) -> list[aioice.Candidate]:
        if self.stun_server or self.turn_server:
            return await original(self, component, addresses, timeout)
        loop = asyncio.get_running_loop()
        candidates = []
        for address in addresses:
            try:
                sock = ports.bind_udp(address)
            except OSError as exc:
                logger.warning("no ICE host candidate on %s: %s", address, exc)
                continue
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _ICE_RECEIVE_BUFFER)
            _, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(self), sock=sock
            )
            host, port = sock.getsockname()[:2]
            protocol.local_candidate = aioice.Candidate(
                foundation=aioice.candidate.candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=aioice.candidate.candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            candidates.append(protocol.local_candidate)
            self._protocols.append(protocol)
        return candidates

    aioice.ice.Connection.get_component_candidates = in_range  # type: ignore[method-assign]
    try:
        yield
    finally:
        aioice.ice.Connection.get_component_candidates = original  # type: ignore[method-assign]


def check_host_addresses(addresses: Sequence[str], setting: str) -> None:
    """At start-up: raise StartupError naming `setting` unless ICE can use `addresses`
    (each one bindable here) or, when empty, aioice finds an interface of its own.

    Without, every answer would carry no candidate: sessions that can never connect."""
    if not addresses:
        if not aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True):
            raise StartupError(
                f"no network interface for ICE host candidates (aioice skips loopback): "
                f"set {setting} to the addresses clients reach this host on"
            )
        return
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((address, 0))
        except OSError as exc:
            raise StartupError(
                f"{setting}: {address!r} is not an address of this host ({exc.strerror})"
            ) from None


def require_candidates(pc: RTCPeerConnection) -> None:
    """Refuse (503) an answer without ICE candidates: nothing could ever connect to it."""
    if "\na=candidate:" not in pc.localDescription.sdp:
        raise Unavailable(
            "this server gathered no ICE candidate: no usable address (its "
            "LIVECART_ICE_HOST_ADDRESSES setting) or no free port in its "
            "LIVECART_ICE_PORT_MIN..LIVECART_ICE_PORT_MAX",
            retry_after_s=30,
        )


@contextmanager
def pinned_host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Gather ICE host candidates on exactly `addresses` inside the block.

    aioice offers every interface but never 127.0.0.1: a relay announces the addresses it
    is configured with, and loopback tests need 127.0.0.1. Gathering happens in
    setLocalDescription, so the answer_* calls belong inside the block.
    """
    original = aioice.ice.get_host_addresses

    def pinned(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return list(addresses)

    aioice.ice.get_host_addresses = pinned
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


class IdleTrack(MediaStreamTrack):
    """A track that never produces a frame.

    aiortc answers sendonly only for a transceiver with a track, and its sender pulls
    frames from that track to encode them. This one parks the sender's encode loop forever
    (no CPU) while `RawSender` writes the already-encoded RTP itself.
    """

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Frame:
        await asyncio.get_running_loop().create_future()  # never resolved
        raise AssertionError("unreachable")


class ForwardedStream:
    """One kind of one publisher: codec, current SSRC, recent packets, clock mapping."""

    __slots__ = (
        "cache",
        "clock_rate",
        "keyframe_sequence",
        "keyframe_timestamp",
        "kind",
        "mime",
        "payload_type",
        "sender_report",
        "ssrc",
    )

    def __init__(
        self, kind: Kind, codec: RTCRtpCodecParameters, cache_size: int | None = None
    ) -> None:
        self.kind: Kind = kind
        self.mime = codec.mimeType.lower()
        self.clock_rate = codec.clockRate
        self.payload_type = codec.payloadType or 0
        # Video keeps about 7 s of a 1.5 Mbps stream: NACK answers and a whole GOP to replay.
        self.cache = PacketCache(cache_size or (1024 if kind == "video" else 256))
        """The current SSRC's packets by source sequence number, for NACK answers."""
        self.ssrc: int | None = None
        self.sender_report: tuple[int, int, float] | None = None
        """The publisher's last (NTP time, RTP timestamp, monotonic arrival) for `ssrc`."""
        self.keyframe_sequence: int | None = None
        """Where the current SSRC's latest keyframe starts (video)."""
        self.keyframe_timestamp: int | None = None

    def take(self, packet: bytes, header: RtpHeader) -> bool:
        """Keep a source packet (a new SSRC starts afresh); whether a subscriber can start
        on it."""
        if header.ssrc != self.ssrc:
            self.ssrc = header.ssrc  # the publisher started or came back: new numbers
            self.cache.clear()
            self.sender_report = None
            self.keyframe_sequence = self.keyframe_timestamp = None
        self.cache.put(header.sequence, packet)
        start = self.is_keyframe_start(packet, header)
        if start and self.kind == "video" and header.timestamp != self.keyframe_timestamp:
            # The first start of an access unit (H.264: SPS, PPS and IDR share a timestamp),
            # never a late retransmission of an older one.
            latest = self.keyframe_sequence
            if latest is None or 0 < (header.sequence - latest) & 0xFFFF < 0x8000:
                self.keyframe_sequence = header.sequence
                self.keyframe_timestamp = header.timestamp
        return start

    def note_sender_report(self, report: rtcp.SenderReport) -> None:
        """Keep the publisher's clock mapping if `report` is about this stream's SSRC."""
        if report.ssrc == self.ssrc:
            self.sender_report = (report.ntp_timestamp, report.rtp_timestamp, time.monotonic())

    def is_keyframe_start(self, packet: bytes, header: RtpHeader) -> bool:
        """Whether a subscriber can start on this packet (on any audio packet)."""
        if self.kind == "audio":
            return True
        payload = memoryview(packet)[header.payload_offset : header.payload_end]
        if self.mime == "video/vp8":
            return keyframe.is_vp8_keyframe_start(payload)
        return keyframe.is_h264_keyframe_start(payload)


OnRtp = Callable[[ForwardedStream, bytes, RtpHeader, bool], Awaitable[object]]
"""Called with (stream, packet, its header, whether a subscriber can start on it)."""
OnKeyframeRequest = Callable[["RawSender"], Awaitable[None]]
_RtcpHandler = Callable[[bytes], Coroutine[Any, Any, None]]


async def _apply_offer(pc: RTCPeerConnection, offer: RTCSessionDescription) -> None:
    # A BUNDLE group naming a mid that no audio, video or application m-line has leaves
    # aiortc's transceivers without a transport: the answer fails and so does pc.close(), in
    # the caller's clean-up. Refuse it (ValueError, a 400 through `negotiate`) before aiortc
    # applies anything.
    description = aiortc_sdp.SessionDescription.parse(offer.sdp)
    mids = {
        media.rtp.muxId
        for media in description.media
        if media.kind in ("audio", "video", "application")
    }
    for group in description.group:
        if group.semantic == "BUNDLE" and not set(group.items) <= mids:
            raise ValueError("a=group:BUNDLE names a mid that no media m-line has")
    await pc.setRemoteDescription(offer)


async def answer_publisher(
    pc: RTCPeerConnection, offer: RTCSessionDescription, on_rtp: OnRtp
) -> ReceiveTap:
    """Answer a publisher's offer, receive-only, with the tap in place; the answer is
    `pc.localDescription`. Raises InvalidArgument for an offer that breaks the WebRTC rules
    (`check_offer`), NegotiationError if no track has a supported codec."""
    check_offer(offer, "publish", SUPPORTED_MIMES)
    await _apply_offer(pc, offer)
    taken: set[str] = set()
    for transceiver in pc.getTransceivers():
        codecs = _one_codec(transceiver._codecs, SUPPORTED_MIMES)
        # aiortc keeps the offer's direction from our side: a publisher's sendonly is ours
        # recvonly.
        sends = transceiver._offerDirection in ("recvonly", "sendrecv")
        if codecs and sends and transceiver.kind not in taken:  # one track per kind
            transceiver._codecs = codecs
            transceiver.direction = "recvonly"
            taken.add(transceiver.kind)
        else:
            transceiver.direction = "inactive"
    if not taken:
        raise NegotiationError(f"the offer sends none of {', '.join(SUPPORTED_MIMES)}")
    tap = ReceiveTap(pc, on_rtp)
    await pc.setLocalDescription(await pc.createAnswer())
    require_candidates(pc)
    return tap


class ReceiveTap:
    """Raw RTP out of a peer connection's receivers, RTCP feedback back to their sender.

    Install it once the remote description is set (codecs negotiated) and before DTLS
    connects: `answer_publisher` does so for a publisher; a load generator may tap a
    subscriber's connection the same way. Packets go to `on_rtp` in arrival order, RTX
    retransmissions unwrapped first; what cannot be used is counted in `dropped`.
    """

    def __init__(self, pc: RTCPeerConnection, on_rtp: OnRtp) -> None:
        self.streams: dict[Kind, ForwardedStream] = {}
        self.received = 0
        self.dropped = 0
        self.keyframe_requests = 0
        self.on_sender_report: Callable[[bytes], None] | None = None
        """Called with each compound RTCP packet that holds a publisher's sender report."""
        self._on_rtp = on_rtp
        self._routes: dict[int, tuple[ForwardedStream, bool]] = {}  # PT: (stream, is RTX)
        self._feedback: dict[Kind, tuple[RTCDtlsTransport, int]] = {}  # transport, our SSRC
        transports: set[RTCDtlsTransport] = set()
        for transceiver in pc.getTransceivers():
            inactive = transceiver.direction == "inactive"
            if inactive or not transceiver._codecs or transceiver.kind in self.streams:
                continue
            kind: Kind = "video" if transceiver.kind == "video" else "audio"
            stream = ForwardedStream(kind, transceiver._codecs[0])
            self.streams[kind] = stream
            for codec in transceiver._codecs:
                if codec.payloadType is not None:
                    self._routes[codec.payloadType] = (stream, codec.name.lower() == "rtx")
            transport = transceiver.receiver.transport
            self._feedback[kind] = (transport, transceiver.sender._ssrc)
            transports.add(transport)
        for transport in transports:
            aiortc_rtcp = transport._handle_rtcp_data
            transport._handle_rtp_data = self.handle_rtp  # type: ignore[method-assign]
            transport._handle_rtcp_data = self._rtcp_handler(aiortc_rtcp)  # type: ignore[method-assign,assignment]

    async def handle_rtp(self, data: bytes, arrival_time_ms: int = 0) -> None:
        """Take one decrypted RTP packet (the DTLS transport calls this); never raises."""
        try:
            header = rtp_header.parse(data)
        except MalformedPacket:
            self.dropped += 1
            return
        route = self._routes.get(header.payload_type)
        if route is None:
            self.dropped += 1
            return
        stream, is_rtx = route
        if is_rtx:
            unwrapped = _unwrap_rtx(data, header, stream)
            if unwrapped is None:
                self.dropped += 1
                return
            data, header = unwrapped
        start = stream.take(data, header)
        self.received += 1
        try:
            await self._on_rtp(stream, data, header, start)
        except Exception:
            # aiortc's receive loop ends on any exception: keep the publisher connected.
            logger.exception("forwarding an RTP packet failed")

    async def request_keyframe(self, kind: Kind = "video") -> bool:
        """Send a PLI to the publisher; False if that stream has not started."""
        stream = self.streams.get(kind)
        if stream is None or stream.ssrc is None:
            return False
        transport, ours = self._feedback[kind]
        self.keyframe_requests += 1
        return await _send(transport, rtcp.build_pli(ours, stream.ssrc))

    async def send_nack(self, kind: Kind, lost: Iterable[int]) -> bool:
        """Ask the publisher to retransmit `lost` sequence numbers of its `kind` stream."""
        stream = self.streams.get(kind)
        lost = list(lost)
        if stream is None or stream.ssrc is None or not lost:
            return False
        transport, ours = self._feedback[kind]
        return await _send(transport, rtcp.build_nack(ours, stream.ssrc, lost))

    async def send_remb(self, bitrate: int) -> bool:
        """Tell the publisher the most it should send, in bits per second, over all streams.

        The tap bypasses aiortc's receive-side bandwidth estimate, so without this a
        publisher gets no REMB and stays at its starting bitrate.
        """
        ssrcs = [s.ssrc for s in self.streams.values() if s.ssrc is not None]
        if not ssrcs:
            return False
        transport, ours = next(iter(self._feedback.values()))
        return await _send(transport, rtcp.build_remb(ours, bitrate, ssrcs))

    def _rtcp_handler(self, aiortc_rtcp: _RtcpHandler) -> _RtcpHandler:
        async def handle_rtcp(data: bytes) -> None:
            try:
                messages = rtcp.parse(data)
            except MalformedPacket:
                self.dropped += 1
                return
            reported = False
            for message in messages:
                if isinstance(message, rtcp.SenderReport):
                    reported = True
                    for stream in self.streams.values():
                        stream.note_sender_report(message)
            if reported and self.on_sender_report is not None:
                self.on_sender_report(data)
            await aiortc_rtcp(data)  # aiortc still handles BYE (it stops the idle decoder)

        return handle_rtcp


def _unwrap_rtx(
    data: bytes, header: RtpHeader, stream: ForwardedStream
) -> tuple[bytes, RtpHeader] | None:
    # RFC 4588 §4: the original sequence number leads the RTX payload.
    if stream.ssrc is None or header.payload_end - header.payload_offset < 2:
        return None
    start = header.payload_offset
    packet = bytearray(data[:start])
    packet += data[start + 2 : header.payload_end]
    packet[0] &= ~0x20  # the padding went with the RTX payload
    original = data[start] << 8 | data[start + 1]
    rtp_header.patch(
        packet,
        ssrc=stream.ssrc,
        payload_type=stream.payload_type,
        sequence=original,
        timestamp=header.timestamp,
    )
    return bytes(packet), rtp_header.parse(packet)


async def answer_subscriber(
    pc: RTCPeerConnection,
    offer: RTCSessionDescription,
    streams: Mapping[Kind, ForwardedStream],
    on_keyframe_request: OnKeyframeRequest,
) -> Subscriber:
    """Answer a WHEP client's recvonly offer with one `RawSender` per stream it can take.

    The answer is `pc.localDescription`. `on_keyframe_request` is awaited when the
    subscriber sends PLI/FIR and for each video packet dropped while waiting for a
    keyframe: rate-limit it (`KeyframeRequests`) before asking the publisher. Raises
    InvalidArgument for an offer that breaks the WebRTC rules or receives nothing
    (`check_offer`), NegotiationError if it takes none of the streams' codecs.
    """
    check_offer(offer, "play", [s.mime for s in streams.values()])
    await _apply_offer(pc, offer)
    wanted: list[tuple[RTCRtpTransceiver, ForwardedStream]] = []
    for transceiver in pc.getTransceivers():
        stream = streams.get("video" if transceiver.kind == "video" else "audio")
        taken = any(s is stream for _, s in wanted)
        codecs = [] if stream is None or taken else _one_codec(transceiver._codecs, (stream.mime,))
        # Reversed, as aiortc keeps it: a viewer's recvonly is our sendonly.
        receives = transceiver._offerDirection in ("sendonly", "sendrecv")
        if stream is not None and codecs and receives:
            transceiver._codecs = codecs
            transceiver.sender.replaceTrack(IdleTrack(stream.kind))
            transceiver.direction = "sendonly"
            wanted.append((transceiver, stream))
        else:
            transceiver.direction = "inactive"
    if not wanted:
        raise NegotiationError(
            "the offer takes none of " + ", ".join(s.mime for s in streams.values())
        )
    await pc.setLocalDescription(await pc.createAnswer())
    require_candidates(pc)
    return Subscriber([RawSender(t, stream, on_keyframe_request) for t, stream in wanted])


class Subscriber:
    """One subscriber's senders, and the RTCP it sends back, dispatched to them."""

    def __init__(self, senders: Sequence[RawSender]) -> None:
        self.senders: dict[Kind, RawSender] = {s.stream.kind: s for s in senders}
        self.remb_bitrate: int | None = None
        """The subscriber's last receiver-estimated maximum bitrate, bits per second."""
        self.losses: deque[tuple[float, int]] = deque(maxlen=8)
        """(monotonic arrival, fraction lost in 1/256ths) of its recent receiver reports."""
        self.malformed_rtcp = 0
        self._by_ssrc = {s.ssrc: s for s in senders}
        for transport in {s.transport for s in senders}:
            aiortc_rtcp = transport._handle_rtcp_data
            transport._handle_rtcp_data = self._rtcp_handler(aiortc_rtcp)  # type: ignore[method-assign,assignment]

    def _rtcp_handler(self, aiortc_rtcp: _RtcpHandler) -> _RtcpHandler:
        async def handle_rtcp(data: bytes) -> None:
            await self.handle_rtcp(data)
            await aiortc_rtcp(data)  # receiver reports feed aiortc's getStats

        return handle_rtcp

    async def handle_rtcp(self, data: bytes) -> None:
        """Act on one decrypted compound RTCP packet from the subscriber; never raises."""
        try:
            messages = rtcp.parse(data)
        except MalformedPacket:
            self.malformed_rtcp += 1
            return
        for message in messages:
            if isinstance(message, rtcp.Nack):
                sender = self._by_ssrc.get(message.media_ssrc)
                if sender is not None:
                    await sender.retransmit(message.lost)
            elif isinstance(message, rtcp.Pli):
                sender = self._by_ssrc.get(message.media_ssrc)
                if sender is not None:
                    await sender.request_keyframe()
            elif isinstance(message, rtcp.Fir):
                for target, _ in message.entries:
                    sender = self._by_ssrc.get(target)
                    if sender is not None:
                        await sender.request_keyframe()
            elif isinstance(message, rtcp.Remb):
                self.remb_bitrate = message.bitrate
            elif isinstance(message, rtcp.ReceiverReport | rtcp.SenderReport):
                for block in message.reports:
                    sender = self._by_ssrc.get(block.ssrc)
                    if sender is not None and sender.stream.kind == "video":
                        self.losses.append((time.monotonic(), block.fraction_lost))

    def hopelessly_behind(self, now: float, *, reports: int = 3, within_s: float = 8.0) -> bool:
        """Whether its last `reports` reports, all recent, each say it lost half or more."""
        recent = [lost for at, lost in self.losses if now - at <= within_s][-reports:]
        return len(recent) == reports and min(recent) >= 128


class RawSender:
    """Writes a `ForwardedStream`'s RTP to one subscriber, renumbered and SRTP-protected.

    Built by `answer_subscriber`. It starts on a keyframe (on any packet, for audio); when
    the source's SSRC changes (the publisher reconnected) it drops packets until the new
    SSRC's first keyframe and continues the numbering from there.
    """

    def __init__(
        self,
        transceiver: RTCRtpTransceiver,
        stream: ForwardedStream,
        on_keyframe_request: OnKeyframeRequest,
    ) -> None:
        sender = transceiver.sender
        codecs = transceiver._codecs
        self.stream = stream
        self.transport = sender.transport
        self.ssrc = sender._ssrc
        self.payload_type = codecs[0].payloadType or 0
        rtx = next((c for c in codecs[1:] if c.name.lower() == "rtx"), None)
        self._rtx = None if rtx is None else (sender._rtx_ssrc, rtx.payloadType or 0)
        self._rtx_sequence = int.from_bytes(os.urandom(2)) & 0x7FFF
        self._extension = _mid_extension(transceiver)
        self._rewriter = SequenceRewriter(
            first_sequence=int.from_bytes(os.urandom(2)) & 0x7FFF,  # low half: no early wrap
            first_timestamp=int.from_bytes(os.urandom(4)),
        )
        self._ts_offset = 0
        self._last_sent = 0.0
        self._on_keyframe_request = on_keyframe_request
        self.sent = 0
        self.octets = 0
        self.retransmitted = 0
        self.replayed = 0
        self._direct: Callable[[bytes], None] | None = None
        self._backlog: deque[bytes] = deque()
        self._replaying: asyncio.Future[None] | None = None
        sender._send_rtcp = self._send_rtcp_reports  # type: ignore[method-assign]
        if stream.kind == "video":
            self.transport.on("statechange", self._replay_once_connected)

    @property
    def waiting_for_keyframe(self) -> bool:
        """True until the first packet went out (video waits for a keyframe)."""
        return self._rewriter.source is None

    def forward_now(self, packet: bytes, header: RtpHeader) -> bool:
        """The hot path: send a packet of the source this subscriber is on, synchronously,
        SRTP-protected straight onto the ICE pair's socket. False when the packet needs
        `forward` (a new source, a keyframe wait, a replay under way, no direct path yet)."""
        send = self._direct
        if send is None or header.ssrc != self._rewriter.source or self._replaying is not None:
            return False
        if self.transport._state is not _DTLS_CONNECTED:
            self._direct = None
            return False
        numbers = self._rewriter.rewrite(header.ssrc, header.sequence, header.timestamp)
        if numbers is not None:  # None: too old to renumber, dropped
            send(self._build(packet, header, *numbers))
        return True

    async def forward(self, packet: bytes, header: RtpHeader, keyframe_start: bool) -> bool:
        """Send one source packet (validated by `rtp.header.parse`); False if dropped."""
        if self._replaying is not None:
            self._backlog.append(packet)  # in order, behind the replay
            return True
        return await self._forward_one(packet, header, keyframe_start, may_replay=True)

    async def _forward_one(
        self, packet: bytes, header: RtpHeader, keyframe_start: bool, *, may_replay: bool
    ) -> bool:
        rewriter = self._rewriter
        if header.ssrc != rewriter.source:
            if self.transport.state != "connected":
                return False  # keep the keyframe wait for when it can be sent
            # A later start of the keyframe (H.264: the IDR slice after the packet with its
            # SPS and PPS) is no place to begin: the decoder would lack the parameter sets
            # and the viewer would wait for the next keyframe. It replays from the first.
            first = self.stream.keyframe_sequence
            late_start = keyframe_start and first is not None and header.sequence != first
            replay = (late_start or not keyframe_start) and may_replay
            if replay and self._replay_gop(header.ssrc, header.sequence):
                return True
            if not keyframe_start:
                await self._on_keyframe_request(self)
                return False
            delta = 0 if rewriter.source is None else self._elapsed_units()
            sequence, timestamp = rewriter.switch(
                header.ssrc, header.sequence, header.timestamp, timestamp_delta=delta
            )
            self._ts_offset = (timestamp - header.timestamp) & _TS_MASK
        else:
            numbers = rewriter.rewrite(header.ssrc, header.sequence, header.timestamp)
            if numbers is None:
                return False
            sequence, timestamp = numbers
        out = self._build(packet, header, sequence, timestamp)
        if self.transport._state is not _DTLS_CONNECTED:
            self._direct = None
        elif self._direct is None:
            self._direct = _direct_sender(self.transport)
        if self._direct is not None:
            self._direct(out)
            return True
        return await _send(self.transport, out)

    def _build(self, packet: bytes, header: RtpHeader, sequence: int, timestamp: int) -> bytes:
        out = self._header(packet, header)
        out += memoryview(packet)[header.payload_offset :]
        rtp_header.patch(
            out,
            ssrc=self.ssrc,
            payload_type=self.payload_type,
            sequence=sequence,
            timestamp=timestamp,
        )
        self._last_sent = time.monotonic()
        self.sent += 1
        self.octets += header.payload_end - header.payload_offset
        return bytes(out)

    def _replay_once_connected(self) -> None:
        # The transport's state changed. Once it is up, replay at once rather than at the
        # source's next packet, which may be a frame interval (or an audio-only lull) away.
        stream, newest = self.stream, self.stream.cache.newest
        if (
            self.transport._state is _DTLS_CONNECTED
            and self.waiting_for_keyframe
            and self._replaying is None
            and stream.ssrc is not None
            and newest is not None
        ):
            self._replay_gop(stream.ssrc, newest)

    def _replay_gop(self, ssrc: int, through: int) -> bool:
        """Start a video subscriber at once on the cached packets from the latest keyframe
        through sequence number `through` of source `ssrc`, rather than waiting for the
        next keyframe: its first picture comes within a round trip, not within a keyframe
        interval.

        The replay is paced (`_REPLAY_BURST` packets, then `_REPLAY_GAP_S`): a whole GOP at
        once would overflow the viewer's receive buffer. Live packets queue behind it."""
        stream = self.stream
        first = stream.keyframe_sequence
        if first is None or ssrc != stream.ssrc:
            return False
        count = (through - first) & 0xFFFF
        if count >= _REPLAY_MAX or stream.cache.get(first) is None:
            return False
        cached = (stream.cache.get((first + offset) & 0xFFFF) for offset in range(count + 1))
        # One lost upstream is skipped: the subscriber NACKs it.
        self._backlog = deque(packet for packet in cached if packet is not None)
        self.replayed += len(self._backlog)
        self._replaying = asyncio.ensure_future(self._drain_backlog())
        return True

    async def _drain_backlog(self) -> None:
        backlog, sent = self._backlog, 0
        try:
            while backlog:
                packet = backlog.popleft()
                header = rtp_header.parse(packet)
                await self._forward_one(packet, header, sent == 0, may_replay=False)
                sent += 1
                if sent % _REPLAY_BURST == 0 and backlog:
                    await asyncio.sleep(_REPLAY_GAP_S)
        finally:
            self._replaying = None

    async def retransmit(self, lost: Iterable[int]) -> None:
        """Resend what the subscriber NACKed from the stream's cache (as RTX if negotiated).

        Every NACK is answered, even for a number resent a moment ago: some receivers
        (aiortc) NACK a number only for its next 128 packets, so skipping repeats within a
        round trip loses packets whose one resend was lost too."""
        for sequence in lost:
            source_sequence = self._rewriter.source_sequence(sequence)
            if source_sequence is None:
                continue
            packet = self.stream.cache.get(source_sequence)
            if packet is None:
                continue
            header = rtp_header.parse(packet)  # the cache holds parsed packets only
            if header.ssrc != self._rewriter.source:
                continue
            timestamp = (header.timestamp + self._ts_offset) & _TS_MASK
            out = self._header(packet, header)
            if self._rtx is None:
                out += memoryview(packet)[header.payload_offset :]
                ssrc, payload_type = self.ssrc, self.payload_type
            else:
                # RFC 4588 §4: RTX payload = original sequence number + original payload.
                out[0] &= ~0x20  # without the padding
                out += sequence.to_bytes(2, "big")
                out += memoryview(packet)[header.payload_offset : header.payload_end]
                ssrc, payload_type = self._rtx
                sequence = self._rtx_sequence
                self._rtx_sequence = (sequence + 1) & 0xFFFF
            rtp_header.patch(
                out,
                ssrc=ssrc,
                payload_type=payload_type,
                sequence=sequence & 0xFFFF,
                timestamp=timestamp,
            )
            if await _send(self.transport, out):
                self.retransmitted += 1

    async def request_keyframe(self) -> None:
        """The subscriber asked for a keyframe (PLI/FIR): let the caller forward it."""
        await self._on_keyframe_request(self)

    def _header(self, packet: bytes, header: RtpHeader) -> bytearray:
        # The fixed header and CSRCs, then our own extension block: the publisher's
        # extension ids and mid mean other things to this subscriber. Only the mid is
        # carried (it tells the subscriber which m-line a packet is for).
        csrc_end = rtp_header.FIXED_HEADER_SIZE + 4 * header.csrc_count
        out = bytearray(packet[:csrc_end])
        if self._extension:
            out[0] |= 0x10
            out += self._extension
        else:
            out[0] &= ~0x10
        return out

    def _elapsed_units(self) -> int:
        return int((time.monotonic() - self._last_sent) * self.stream.clock_rate)

    def _sender_report(self) -> bytes | None:
        report = self.stream.sender_report
        if report is None or self._rewriter.source is None:
            return None
        ntp, rtp_timestamp, arrived = report
        elapsed = time.monotonic() - arrived
        return _SENDER_REPORT.pack(
            0x80,
            rtcp.SR,
            6,
            self.ssrc,
            (ntp + int(elapsed * (1 << 32))) & 0xFFFFFFFFFFFFFFFF,
            (rtp_timestamp + self._ts_offset + int(elapsed * self.stream.clock_rate)) & _TS_MASK,
            self.sent & 0xFFFFFFFF,
            self.octets & 0xFFFFFFFF,
        )

    async def _send_rtcp_reports(self, packets: list[AnyRtcpPacket]) -> None:
        # aiortc's sender reports would say nothing was sent (its encoder never ran):
        # replace them with ours, mapped from the publisher's, or send none yet.
        out = bytearray()
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                report = self._sender_report()
                if report is None:
                    return
                out += report
            else:
                out += bytes(packet)
        await _send(self.transport, out)


def _one_codec(
    codecs: list[RTCRtpCodecParameters], mimes: Sequence[str]
) -> list[RTCRtpCodecParameters]:
    # The first codec (in the offerer's order) we can forward, and its RTX if offered.
    main = next((c for c in codecs if c.mimeType.lower() in mimes), None)
    if main is None:
        return []
    rtx = [
        c for c in codecs if c.name.lower() == "rtx" and c.parameters.get("apt") == main.payloadType
    ]
    return [main, *rtx[:1]]


def _mid_extension(transceiver: RTCRtpTransceiver) -> bytes:
    # RFC 8285 §4.2 one-byte form holding only the mid, padded to whole words.
    ids = [e.id for e in transceiver._headerExtensions if e.uri == MID_URI]
    mid = (transceiver.mid or "").encode()
    if not ids or not 1 <= len(mid) <= 16:
        return b""
    element = bytes([ids[0] << 4 | (len(mid) - 1)]) + mid
    element += bytes(-len(element) % 4)
    return struct.pack("!HH", rtp_header.ONE_BYTE_PROFILE, len(element) // 4) + element


def _direct_sender(transport: RTCDtlsTransport) -> Callable[[bytes], None] | None:
    """SRTP-protect and write to the nominated ICE pair's socket, skipping the four
    coroutine layers of aiortc's and aioice's send path (most of a forward's cost); None
    until DTLS and ICE are both up. aiortc's sent-bytes statistics do not count these
    packets; `RawSender` keeps its own."""
    try:
        session = transport._tx_srtp
        pair = transport.transport._connection._nominated[1]
    except (AttributeError, KeyError):
        return None
    socket, address = pair.protocol.transport, pair.remote_addr
    if session is None or socket is None or transport._state is not _DTLS_CONNECTED:
        return None
    protect, sendto = session.protect, socket.sendto

    def send(data: bytes) -> None:
        sendto(protect(data), address)

    return send


async def _send(transport: RTCDtlsTransport, data: bytes | bytearray) -> bool:
    try:
        await transport._send_rtp(bytes(data))
    except ConnectionError:
        return False
    return True
