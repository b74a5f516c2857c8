"""Properties of the pipe's packet handling: the ingest-time stamp round trip, and both ends
of a real UDP pipe fed arbitrary, corrupted and well-formed datagrams.

Contract (see `livecart_media.pipe`): neither end ever raises on what arrives; each datagram
is either taken or counted in `dropped`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from hypothesis import example, given, settings
from hypothesis import strategies as st

from livecart_media import strategies as media_st
from livecart_media.pipe import (
    INGEST_TIME_EXTENSION_ID,
    PipeIn,
    PipeOut,
    ingest_time_us,
    stamp,
)
from livecart_media.rtp import header as rtp_header
from livecart_media.rtp import rtcp
from livecart_media.rtp.errors import MalformedPacket
from livecart_media.strategies import RtpSpec
from livecart_media.webrtc import ForwardedStream, Kind

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111)
routed = st.sampled_from([96, 111, 0, 127])
datagrams = st.one_of(
    st.binary(max_size=200),
    media_st.rtp_specs(payload_types=routed).map(RtpSpec.to_bytes),
    media_st.corrupted(media_st.rtp_specs(payload_types=routed).map(RtpSpec.to_bytes)),
    media_st.compound_rtcp().map(lambda pair: pair[1]),
    media_st.corrupted(media_st.compound_rtcp().map(lambda pair: pair[1])),
)
# A marked video packet whose one-byte extension element (id 2, 16 bytes) runs past its block.
EXTENSION_PAST_ITS_BLOCK = bytes.fromhex("90e00001000003e8") + bytes(4) + b"\xbe\xde\x00\x01\x2f"
EXTENSION_PAST_ITS_BLOCK += bytes(3) + b"\x10\x00\x00\x00\x9d\x01\x2a"


@given(media_st.rtp_specs(), st.integers(0, 2**64 - 1))
def test_a_stamped_packet_says_what_it_said_and_when_it_entered(spec: RtpSpec, now: int) -> None:
    packet = spec.to_bytes()
    stamped = stamp(packet, rtp_header.parse(packet), now)
    parsed = rtp_header.parse(stamped)
    assert (parsed.marker, parsed.payload_type, parsed.sequence, parsed.timestamp) == (
        spec.marker,
        spec.payload_type,
        spec.sequence,
        spec.timestamp,
    )
    assert parsed.ssrc == spec.ssrc and parsed.csrc_count == len(spec.csrcs)
    assert parsed.extension_profile == rtp_header.ONE_BYTE_PROFILE
    assert stamped[parsed.payload_offset : parsed.payload_end] == spec.payload
    assert ingest_time_us(stamped, parsed, INGEST_TIME_EXTENSION_ID) == now


@given(st.one_of(media_st.rtp_packets(), media_st.corrupted(media_st.rtp_packets())))
@example(EXTENSION_PAST_ITS_BLOCK)
def test_ingest_time_of_any_packet_is_a_time_or_none(data: bytes) -> None:
    try:
        parsed = rtp_header.parse(data)
    except MalformedPacket:
        return
    for extension_id in (0, 1, 2, 14, 15):
        entered = ingest_time_us(data, parsed, extension_id)
        assert entered is None or 0 <= entered < 2**64


class Trouble(logging.Handler):
    """What the pipe logs at ERROR and what reaches the event loop's exception handler."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.seen.append(str(context.get("exception") or context["message"]))


@pytest.fixture
def trouble() -> Iterator[Trouble]:
    handler = Trouble()
    logger = logging.getLogger("livecart_media.pipe")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


class Markers:
    """A well-formed packet after each datagram, numbered: once it is taken, the datagram
    before it was handled (datagrams are handled in order)."""

    def __init__(self) -> None:
        self._next = 0xABC00000
        self.expected = 0
        self.arrived = asyncio.Event()

    def rtp(self) -> bytes:
        self._next += 1
        self.expected, self.arrived = self._next, asyncio.Event()
        return RtpSpec(False, 96, 1, 1, self._next, (), None, (), b"", b"\x10", 0).to_bytes()

    def pli(self) -> bytes:
        self._next += 1
        self.expected, self.arrived = self._next, asyncio.Event()
        return rtcp.build_pli(self._next, 42)

    def saw(self, ssrc: int) -> None:
        if ssrc == self.expected:
            self.arrived.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.arrived.wait(), 10)


def test_the_relays_end_takes_or_counts_every_datagram_and_never_fails(trouble: Trouble) -> None:
    # One pipe for all examples: a runner of its own, since Hypothesis drives sync tests.
    with asyncio.Runner() as runner, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ingest:
        runner.get_loop().set_exception_handler(trouble.loop_exception)
        video, audio = ForwardedStream("video", VP8), ForwardedStream("audio", OPUS)
        markers = Markers()

        async def on_rtp(
            stream: ForwardedStream, packet: bytes, header: rtp_header.RtpHeader, start: bool
        ) -> int:
            markers.saw(header.ssrc)
            return 1

        pipe = runner.run(
            PipeIn.open(
                "127.0.0.1",
                {96: video, 111: audio},
                on_rtp,
                ingest_time_extension_id=INGEST_TIME_EXTENSION_ID,
                observe_latency=lambda seconds: None,
            )
        )

        async def send(datagram: bytes) -> None:
            received, dropped = pipe.received, pipe.dropped
            ingest.sendto(datagram, pipe.address)
            ingest.sendto(markers.rtp(), pipe.address)
            await markers.wait()
            taken = pipe.received - received - 1  # less the marker
            if rtcp.is_rtcp(datagram) and pipe.dropped == dropped:
                rtcp.parse(datagram)  # RTCP from the pipe's owner is read, not counted
            else:
                assert taken + pipe.dropped - dropped == 1

        @settings(max_examples=300)
        @given(datagrams)
        @example(EXTENSION_PAST_ITS_BLOCK)
        def check(datagram: bytes) -> None:
            runner.run(send(datagram))
            assert trouble.seen == []

        try:
            check()
        finally:
            pipe.close()


def test_ingests_end_drops_what_it_cannot_use_and_never_fails(trouble: Trouble) -> None:
    with asyncio.Runner() as runner, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as relay:
        runner.get_loop().set_exception_handler(trouble.loop_exception)
        relay.bind(("127.0.0.1", 0))
        markers = Markers()
        byes: list[bool] = []

        def on_feedback(kind: Kind, message: rtcp.RtcpMessage) -> None:
            if isinstance(message, rtcp.Pli):
                markers.saw(message.sender_ssrc)

        pipe = runner.run(PipeOut.open(relay.getsockname(), on_feedback, lambda: byes.append(True)))
        assert pipe.transport is not None
        ingest_address = pipe.transport.get_extra_info("sockname")
        sent: tuple[tuple[int, Kind], ...] = ((42, "video"), (43, "audio"))
        for ssrc, kind in sent:
            packet = RtpSpec(False, 96, 1, 1, ssrc, (), None, (), b"", b"\x10", 0).to_bytes()
            pipe.send_rtp(kind, packet, rtp_header.parse(packet))
        # Feedback about what was sent, so that the callbacks run too.
        about_ours = st.sampled_from(
            [
                rtcp.build_pli(1, 42),
                rtcp.build_nack(1, 43, [1, 2, 3]),
                rtcp.build_fir(1, 42, 7),
                rtcp.build_remb(1, 500_000, [43, 42]),
                rtcp.build_bye([42]),
            ]
        )

        async def send(datagram: bytes) -> None:
            relay.sendto(datagram, ingest_address)
            relay.sendto(markers.pli(), ingest_address)
            await markers.wait()

        @settings(max_examples=200)
        @given(st.one_of(datagrams, about_ours, media_st.corrupted(about_ours)))
        def check(datagram: bytes) -> None:
            runner.run(send(datagram))
            assert trouble.seen == []

        try:
            check()
        finally:
            pipe.close()
