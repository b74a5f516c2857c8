"""Keyframe starts in VP8 and H.264 payloads, and the VP8 descriptor fields a forwarder rewrites."""

from __future__ import annotations

import random
import struct

import pytest

from livecart_media.rtp import header
from livecart_media.rtp.errors import MalformedPacket
from livecart_media.rtp.keyframe import (
    is_h264_keyframe_start,
    is_vp8_keyframe_start,
    parse_vp8_descriptor,
    write_vp8_indices,
)

VP8_KEY_TAG = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A])  # P=0, show_frame, start code
VP8_DELTA_TAG = bytes([0x31, 0x02, 0x00])  # P=1


def vp8(
    *,
    start: bool = True,
    partition: int = 0,
    picture_id: int | None = None,
    long_picture_id: bool = True,
    tl0picidx: int | None = None,
    tid: int | None = None,
    keyidx: int | None = None,
    frame: bytes = VP8_KEY_TAG,
) -> bytes:
    extension = (
        (0x80 if picture_id is not None else 0)
        | (0x40 if tl0picidx is not None else 0)
        | (0x20 if tid is not None else 0)
        | (0x10 if keyidx is not None else 0)
    )
    out = bytes([(0x80 if extension else 0) | (0x10 if start else 0) | partition])
    if extension:
        out += bytes([extension])
    if picture_id is not None:
        out += struct.pack("!H", 0x8000 | picture_id) if long_picture_id else bytes([picture_id])
    if tl0picidx is not None:
        out += bytes([tl0picidx])
    if tid is not None or keyidx is not None:
        out += bytes([((tid or 0) << 6) | 0x20 | (keyidx or 0)])
    return out + frame


def nal(nal_type: int, body: bytes = b"\x88\x84") -> bytes:
    return bytes([0x60 | nal_type]) + body


def stap_a(*units: bytes) -> bytes:
    return bytes([0x78]) + b"".join(struct.pack("!H", len(u)) + u for u in units)


def fu_a(nal_type: int, *, start: bool, body: bytes = b"\x88\x84") -> bytes:
    return bytes([0x60 | 28, (0x80 if start else 0x40) | nal_type]) + body


def test_vp8_minimal_descriptor_keyframe_and_delta() -> None:
    assert is_vp8_keyframe_start(vp8())
    assert not is_vp8_keyframe_start(vp8(frame=VP8_DELTA_TAG))


def test_vp8_keyframe_start_needs_the_s_bit_and_partition_0() -> None:
    assert not is_vp8_keyframe_start(vp8(start=False))
    assert not is_vp8_keyframe_start(vp8(partition=1))


@pytest.mark.parametrize("long_picture_id", [True, False])
def test_vp8_keyframe_behind_every_extension_field(long_picture_id: bool) -> None:
    payload = vp8(picture_id=100, long_picture_id=long_picture_id, tl0picidx=3, tid=2, keyidx=5)
    assert is_vp8_keyframe_start(payload)
    delta = vp8(picture_id=100, tl0picidx=3, tid=2, keyidx=5, frame=VP8_DELTA_TAG)
    assert not is_vp8_keyframe_start(delta)


def test_vp8_truncated_payloads_are_not_keyframe_starts() -> None:
    payload = vp8(picture_id=300, tl0picidx=1, tid=0)
    for end in range(5):
        assert not is_vp8_keyframe_start(payload[:end])


def test_vp8_descriptor_fields() -> None:
    descriptor = parse_vp8_descriptor(vp8(picture_id=0x1234, tl0picidx=9, tid=3, keyidx=17))
    assert descriptor.start_of_partition
    assert (descriptor.picture_id, descriptor.picture_id_bits) == (0x1234, 15)
    assert (descriptor.tl0picidx, descriptor.temporal_layer, descriptor.key_index) == (9, 3, 17)
    assert descriptor.layer_sync
    assert descriptor.size == 6
    short = parse_vp8_descriptor(vp8(picture_id=77, long_picture_id=False, start=False))
    assert (short.picture_id, short.picture_id_bits, short.tl0picidx, short.size) == (
        77,
        7,
        None,
        3,
    )
    assert not short.start_of_partition
    bare = parse_vp8_descriptor(vp8(partition=2))
    assert (bare.picture_id, bare.picture_id_bits, bare.partition_id, bare.size) == (None, 0, 2, 1)


@pytest.mark.parametrize(
    "payload", [b"", b"\x90", b"\x90\x80", b"\x90\x80\x81", b"\x90\x40", b"\x90\x20"]
)
def test_vp8_descriptor_running_past_the_payload_is_malformed(payload: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse_vp8_descriptor(payload)


def test_write_vp8_indices_rewrites_in_place_keeping_widths() -> None:
    rtp_header = struct.pack("!BBHII", 0x80, 96, 1, 2, 3)
    for long_picture_id in (True, False):
        packet = bytearray(
            rtp_header + vp8(picture_id=5, long_picture_id=long_picture_id, tl0picidx=1, tid=1)
        )
        offset = header.parse(packet).payload_offset
        write_vp8_indices(
            packet, offset, parse_vp8_descriptor(packet[offset:]), picture_id=0x4321, tl0picidx=258
        )
        rewritten = parse_vp8_descriptor(packet[offset:])
        expected = 0x4321 if long_picture_id else 0x21
        assert (rewritten.picture_id, rewritten.tl0picidx) == (expected, 2)
        assert rewritten.temporal_layer == 1
        assert packet[offset + rewritten.size :] == VP8_KEY_TAG


def test_write_vp8_indices_leaves_absent_fields_alone() -> None:
    packet = bytearray(vp8())
    write_vp8_indices(packet, 0, parse_vp8_descriptor(packet), picture_id=9, tl0picidx=9)
    assert bytes(packet) == vp8()


@pytest.mark.parametrize("nal_type", [7, 8])
def test_h264_parameter_sets_start_a_keyframe(nal_type: int) -> None:
    assert is_h264_keyframe_start(nal(nal_type))


def test_h264_idr_starts_only_at_its_first_slice() -> None:
    assert is_h264_keyframe_start(nal(5, b"\x88"))  # first_mb_in_slice = 0
    assert not is_h264_keyframe_start(nal(5, b"\x4c"))  # first_mb_in_slice = 1
    assert not is_h264_keyframe_start(nal(5, b""))


@pytest.mark.parametrize("nal_type", [1, 6, 9, 0, 29, 30, 31])
def test_h264_other_nal_units_are_not_keyframe_starts(nal_type: int) -> None:
    assert not is_h264_keyframe_start(nal(nal_type))


def test_h264_stap_a_with_sps_or_idr_starts_a_keyframe() -> None:
    assert is_h264_keyframe_start(stap_a(nal(7), nal(8), nal(5)))
    assert is_h264_keyframe_start(stap_a(nal(6), nal(5)))
    assert not is_h264_keyframe_start(stap_a(nal(6), nal(1)))
    assert not is_h264_keyframe_start(stap_a(nal(6), nal(5, b"\x4c")))


def test_h264_malformed_stap_a_is_not_a_keyframe_start() -> None:
    assert not is_h264_keyframe_start(stap_a(nal(6))[:-1] + b"\x00\x40" + nal(7))
    assert not is_h264_keyframe_start(bytes([0x78, 0x00, 0x00]) + nal(7))
    assert not is_h264_keyframe_start(bytes([0x78, 0x00, 0x09]) + nal(7))


def test_h264_fu_a_starts_a_keyframe_only_on_the_first_fragment_of_an_idr() -> None:
    assert is_h264_keyframe_start(fu_a(5, start=True))
    assert not is_h264_keyframe_start(fu_a(5, start=False))
    assert not is_h264_keyframe_start(fu_a(1, start=True))
    assert not is_h264_keyframe_start(fu_a(5, start=True, body=b"\x4c"))
    assert not is_h264_keyframe_start(fu_a(5, start=True, body=b""))


def test_h264_empty_payload_is_not_a_keyframe_start() -> None:
    assert not is_h264_keyframe_start(b"")


def test_random_payloads_never_raise_and_the_vp8_check_agrees_with_the_descriptor() -> None:
    generator = random.Random(7741)
    for _ in range(5_000):
        payload = generator.randbytes(generator.randrange(12))
        is_h264_keyframe_start(payload)
        keyframe = is_vp8_keyframe_start(payload)
        try:
            descriptor = parse_vp8_descriptor(payload)
        except MalformedPacket:
            assert not keyframe
            continue
        assert descriptor.size <= len(payload)
        assert keyframe == (
            descriptor.start_of_partition
            and descriptor.partition_id == 0
            and descriptor.size < len(payload)
            and not payload[descriptor.size] & 0x01
        )


def test_keyframe_checks_accept_a_memoryview_of_the_packet() -> None:
    packet = struct.pack("!BBHII", 0x80, 96, 1, 2, 3) + vp8(picture_id=1)
    parsed = header.parse(packet)
    assert is_vp8_keyframe_start(memoryview(packet)[parsed.payload_offset : parsed.payload_end])
