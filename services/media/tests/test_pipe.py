"""The RTP/UDP pipe on real sockets: ingest's end (PipeOut) to the relay's (PipeIn)."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from livecart_media.pipe import INGEST_TIME_EXTENSION_ID, PipeIn, PipeOut, ingest_time_us
from livecart_media.rtp import header as rtp_header
from livecart_media.rtp import rtcp
from livecart_media.testing import until
from livecart_media.webrtc import ForwardedStream, Kind

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
KEYFRAME = b"\x10\x00\x00\x00\x9d\x01\x2a"  # VP8 descriptor S=1, then a keyframe header


def rtp(sequence: int, payload: bytes = KEYFRAME, *, marker: bool = True) -> bytes:
    # With a publisher's own extension (id 3), which the pipe replaces by its own.
    first = struct.pack("!BBHII", 0x90, 96 | (0x80 if marker else 0), sequence, 1000, 42)
    return first + b"\xbe\xde\x00\x01\x30\xaa\x00\x00" + payload


async def test_packets_cross_the_pipe_stamped_and_feedback_comes_back() -> None:
    stream = ForwardedStream("video", VP8)
    got: list[tuple[bytes, bool]] = []
    latencies: list[float] = []

    async def on_rtp(
        s: ForwardedStream, packet: bytes, header: rtp_header.RtpHeader, start: bool
    ) -> int:
        got.append((packet, start))
        return 1

    relay = await PipeIn.open(
        "127.0.0.1",
        {96: stream},
        on_rtp,
        ingest_time_extension_id=INGEST_TIME_EXTENSION_ID,
        observe_latency=latencies.append,
    )
    feedback: list[tuple[Kind, rtcp.RtcpMessage]] = []
    byes: list[bool] = []
    ingest = await PipeOut.open(
        relay.address, lambda kind, m: feedback.append((kind, m)), lambda: byes.append(True)
    )
    try:
        for sequence in (1, 2):
            packet = rtp(sequence)
            ingest.send_rtp("video", packet, rtp_header.parse(packet))
        await until(lambda: len(got) == 2, "both packets at the relay")
        packet, start = got[0]
        header = rtp_header.parse(packet)
        assert start and header.sequence == 1 and packet.endswith(KEYFRAME)
        entered = ingest_time_us(packet, header, INGEST_TIME_EXTENSION_ID)
        assert entered is not None and abs(entered / 1e6 - time.time()) < 5
        assert rtp_header.read_extension(packet, header, 3) is None  # the publisher's is gone
        assert stream.cache.get(2) is not None and len(latencies) == 2

        assert await relay.request_keyframe("video")
        assert await relay.send_nack("video", [1])
        assert relay.send_remb(800_000)
        relay.send_bye()
        await until(lambda: len(feedback) == 3 and byes, "PLI, NACK, REMB and BYE at ingest")
        pli, nack, remb = (message for _, message in feedback)
        assert isinstance(pli, rtcp.Pli) and isinstance(nack, rtcp.Nack)
        assert isinstance(remb, rtcp.Remb) and remb.bitrate == 800_000
    finally:
        ingest.close()
        relay.close()


async def test_garbage_and_strangers_are_dropped_at_both_ends() -> None:
    stream = ForwardedStream("video", VP8)
    got: list[bytes] = []

    async def on_rtp(
        s: ForwardedStream, packet: bytes, header: rtp_header.RtpHeader, start: bool
    ) -> int:
        got.append(packet)
        return 0

    relay = await PipeIn.open("127.0.0.1", {96: stream}, on_rtp)
    feedback: list[object] = []
    ingest = await PipeOut.open(relay.address, lambda k, m: feedback.append(m), lambda: None)
    # Random bytes with version 0, so none is by chance an RTP packet of the pipe's payload
    # type (which would claim the pipe for the stranger: about one run in 170 did).
    noise = [os.urandom(n) for n in (0, 1, 12, 40, 1400)]
    garbage = [bytes([d[0] & 0x3F]) + d[1:] if d else d for d in noise] + [
        b"\x80\xc8" + os.urandom(20),
        b"\x80\x21" + os.urandom(40),  # an undeclared payload type
        b"\x90\x60\x00\x01" + bytes(8) + b"\xbe\xde\xff\xff",  # extension past the end
    ]
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for datagram in garbage:
            stranger.sendto(datagram, relay.address)
            await asyncio.sleep(0.005)
        await until(lambda: relay.dropped == len(garbage), "every bad datagram counted")
        packet = rtp(7)
        ingest.send_rtp("video", packet, rtp_header.parse(packet))
        await until(lambda: len(got) == 1, "the real packet")
        stranger.sendto(rtp(8), relay.address)  # valid, but not from the pipe's owner
        await until(lambda: relay.dropped == len(garbage) + 1, "the stranger's packet dropped")
        assert len(got) == 1

        # Ingest's socket is connected to the relay: the kernel keeps strangers out, and
        # what comes from the relay's port must be RTCP it can parse.
        assert ingest.transport is not None and relay.transport is not None
        ingest_address = ingest.transport.get_extra_info("sockname")
        stranger.sendto(rtcp.build_pli(1, 42), ingest_address)
        bad = [
            d for d in garbage if d and not rtcp.is_rtcp(d)
        ]  # asyncio sends no empty ones + [b"\x80\xcd\x00\x09" + bytes(4)]
        for datagram in bad:
            relay.transport.sendto(datagram, ingest_address)
        await until(lambda: ingest.dropped == len(bad), "garbage from the relay's port dropped")
        assert feedback == []
    finally:
        stranger.close()
        ingest.close()
        relay.close()
