"""ForwardedStream.take: the cache, a new SSRC, and where the latest keyframe starts."""

from __future__ import annotations

import struct

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from livecart_media.rtp import header as rtp_header
from livecart_media.webrtc import ForwardedStream

H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
SPS, PPS, IDR, SLICE = b"\x67\x42\xe0\x1f", b"\x68\xce\x3c\x80", b"\x65\x88\x84", b"\x41\x9a"


def packet(sequence: int, timestamp: int, payload: bytes, ssrc: int = 7) -> bytes:
    return struct.pack("!BBHII", 0x80, 102, sequence, timestamp, ssrc) + payload


def take(stream: ForwardedStream, data: bytes) -> bool:
    return stream.take(data, rtp_header.parse(data))


def test_the_keyframe_starts_at_its_sps_not_at_its_idr_slice() -> None:
    stream = ForwardedStream("video", H264)
    assert take(stream, packet(10, 1000, SLICE)) is False
    assert stream.keyframe_sequence is None
    for sequence, payload in ((11, SPS), (12, PPS), (13, IDR)):
        assert take(stream, packet(sequence, 4000, payload)) is True
    assert stream.keyframe_sequence == 11  # SPS, PPS and IDR are one access unit
    take(stream, packet(14, 7000, SLICE))
    take(stream, packet(20, 9000, SPS))
    assert stream.keyframe_sequence == 20
    take(stream, packet(11, 4000, SPS))  # a late retransmission of the older keyframe
    assert stream.keyframe_sequence == 20
    assert stream.cache.get(14) == packet(14, 7000, SLICE)


def test_a_new_ssrc_starts_afresh() -> None:
    stream = ForwardedStream("video", H264)
    take(stream, packet(11, 4000, SPS))
    take(stream, packet(500, 100, SLICE, ssrc=8))
    assert (stream.ssrc, stream.keyframe_sequence, stream.cache.get(11)) == (8, None, None)
