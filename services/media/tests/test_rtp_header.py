"""RTP header parsing, patching and header extensions against hand-built packets."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import pytest

from livecart_media.rtp import header
from livecart_media.rtp.errors import MalformedPacket


def rtp(
    *,
    payload: bytes = b"payload",
    marker: bool = False,
    payload_type: int = 96,
    sequence: int = 1000,
    timestamp: int = 90_000,
    ssrc: int = 0x11223344,
    csrcs: tuple[int, ...] = (),
    extension: tuple[int, bytes] | None = None,
    padding: int = 0,
) -> bytes:
    first = 0x80 | len(csrcs) | (0x20 if padding else 0) | (0x10 if extension else 0)
    second = (0x80 if marker else 0) | payload_type
    out = struct.pack("!BBHII", first, second, sequence, timestamp, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrcs)
    if extension is not None:
        profile, body = extension
        out += struct.pack("!HH", profile, len(body) // 4) + body
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes([padding])
    return out


def one_byte_extensions(*elements: tuple[int, bytes]) -> tuple[int, bytes]:
    body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in elements)
    return header.ONE_BYTE_PROFILE, body + bytes(-len(body) % 4)


def two_byte_extensions(*elements: tuple[int, bytes]) -> tuple[int, bytes]:
    body = b"".join(bytes([i, len(v)]) + v for i, v in elements)
    return header.TWO_BYTE_PROFILE, body + bytes(-len(body) % 4)


def test_parse_reads_every_fixed_field() -> None:
    packet = rtp(marker=True, payload_type=111, sequence=65535, timestamp=0xFFFFFFFF, ssrc=7)
    parsed = header.parse(packet)
    assert (parsed.version, parsed.marker, parsed.payload_type) == (2, True, 111)
    assert (parsed.sequence, parsed.timestamp, parsed.ssrc) == (65535, 0xFFFFFFFF, 7)
    assert (parsed.csrc_count, parsed.padding, parsed.extension_profile) == (0, False, None)
    assert packet[parsed.payload_offset : parsed.payload_end] == b"payload"


def test_parse_skips_csrcs_extension_and_padding_to_the_payload() -> None:
    packet = rtp(csrcs=(1, 2, 3), extension=one_byte_extensions((3, b"\x01\x02\x03")), padding=5)
    parsed = header.parse(packet)
    assert parsed.csrc_count == 3
    assert parsed.padding
    assert parsed.extension_profile == header.ONE_BYTE_PROFILE
    assert parsed.payload_offset == 12 + 3 * 4 + 4 + 4
    assert packet[parsed.payload_offset : parsed.payload_end] == b"payload"


def test_parse_accepts_an_empty_payload() -> None:
    parsed = header.parse(rtp(payload=b""))
    assert parsed.payload_offset == parsed.payload_end == 12


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x80\x60\x00", "shorter than the 12-byte header"),
        (b"\x40" + rtp()[1:], "version 1"),
        (b"\x00" + rtp()[1:], "version 0"),
        (rtp(payload=b"")[:12].replace(b"\x80", b"\x8f", 1), "CSRCs run past"),
        (bytes([0x90]) + rtp(payload=b"")[1:12] + b"\xbe\xde", "extension's header"),
        (bytes([0x90]) + rtp(payload=b"")[1:12] + b"\xbe\xde\x00\x02" + bytes(7), "extension of 2"),
        (bytes([0xA0]) + rtp(payload=b"abc\x00")[1:], "padding of 0"),
        (bytes([0xA0]) + rtp(payload=b"abc\x09")[1:], "padding of 9"),
    ],
)
def test_parse_refuses_malformed_packets(packet: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket, match=reason):
        header.parse(packet)


def test_parse_never_raises_anything_but_malformed_packet_on_random_bytes() -> None:
    generator = random.Random(3550)
    good = rtp(csrcs=(9,), extension=one_byte_extensions((1, b"ab")), padding=3)
    accepted = 0
    for _ in range(20_000):
        if generator.random() < 0.5:  # random bytes that mostly claim version 2
            data = bytearray(generator.randbytes(generator.randrange(40)))
            if data:
                data[0] = 0x80 | (data[0] & 0x3F)
        else:  # a good packet, truncated, with one byte changed
            data = bytearray(good[: generator.randrange(len(good) + 1)])
            if data:
                data[generator.randrange(len(data))] = generator.getrandbits(8)
        try:
            parsed = header.parse(data)
        except MalformedPacket:
            continue
        accepted += 1
        assert 12 <= parsed.payload_offset <= parsed.payload_end <= len(data)
        for element in range(16):
            try:
                where = header.find_extension(data, parsed, element)
            except MalformedPacket:
                continue
            if where is not None:
                assert parsed.extension_start <= where.start <= where.stop <= parsed.extension_end
    assert accepted > 500


def test_rewrite_patches_a_copy_and_keeps_the_marker_and_payload() -> None:
    original = rtp(marker=True, payload_type=96, csrcs=(5,), padding=2)
    out = header.rewrite(original, ssrc=0xAABBCCDD, payload_type=100, sequence=7, timestamp=12345)
    parsed = header.parse(out)
    assert (parsed.ssrc, parsed.payload_type, parsed.sequence, parsed.timestamp) == (
        0xAABBCCDD,
        100,
        7,
        12345,
    )
    assert parsed.marker
    assert out[12:] == original[12:]
    assert header.parse(original).ssrc == 0x11223344


def test_rewrite_keeps_a_clear_marker_clear() -> None:
    out = header.rewrite(rtp(marker=False), ssrc=1, payload_type=127, sequence=0, timestamp=0)
    parsed = header.parse(out)
    assert (parsed.marker, parsed.payload_type) == (False, 127)


def test_patch_rewrites_in_place() -> None:
    packet = bytearray(rtp(marker=True))
    header.patch(packet, ssrc=2, payload_type=97, sequence=65535, timestamp=1)
    parsed = header.parse(packet)
    assert (parsed.marker, parsed.ssrc, parsed.payload_type, parsed.sequence, parsed.timestamp) == (
        True,
        2,
        97,
        65535,
        1,
    )


def test_rewrite_refuses_a_packet_shorter_than_the_header() -> None:
    with pytest.raises(MalformedPacket):
        header.rewrite(b"\x80\x60", ssrc=1, payload_type=96, sequence=1, timestamp=1)


@pytest.mark.parametrize("layout", [one_byte_extensions, two_byte_extensions])
def test_find_read_and_write_extension_elements(
    layout: Callable[..., tuple[int, bytes]],
) -> None:
    packet = bytearray(rtp(extension=layout((1, b"\x10"), (3, b"\x01\x02\x03"), (5, b"capture!"))))
    parsed = header.parse(packet)
    assert header.read_extension(packet, parsed, 3) == b"\x01\x02\x03"
    assert header.read_extension(packet, parsed, 5) == b"capture!"
    assert header.read_extension(packet, parsed, 2) is None
    header.write_extension(packet, parsed, 3, b"\xaa\xbb\xcc")
    assert header.read_extension(packet, parsed, 3) == b"\xaa\xbb\xcc"
    assert header.read_extension(packet, parsed, 1) == b"\x10"
    assert packet[parsed.payload_offset :] == b"payload"


def test_one_byte_extension_padding_is_skipped_and_id_15_stops_parsing() -> None:
    body = b"\x00\x00" + bytes([(4 << 4) | 1]) + b"hi" + b"\xf0" + bytes([(6 << 4)]) + b"x"
    packet = rtp(extension=(header.ONE_BYTE_PROFILE, body + bytes(-len(body) % 4)))
    parsed = header.parse(packet)
    assert header.read_extension(packet, parsed, 4) == b"hi"
    assert header.read_extension(packet, parsed, 6) is None


def test_two_byte_extension_may_be_empty_and_follow_padding() -> None:
    body = b"\x00" + bytes([7, 0]) + bytes([8, 2]) + b"ok"
    packet = rtp(extension=(header.TWO_BYTE_PROFILE | 0x3, body + bytes(-len(body) % 4)))
    parsed = header.parse(packet)
    assert header.read_extension(packet, parsed, 7) == b""
    assert header.read_extension(packet, parsed, 8) == b"ok"


def test_extension_of_another_profile_or_absent_has_no_elements() -> None:
    foreign = rtp(extension=(0x1234, b"\x10abc"))
    assert header.read_extension(foreign, header.parse(foreign), 1) is None
    plain = rtp()
    assert header.read_extension(plain, header.parse(plain), 1) is None


def test_an_element_running_past_the_block_is_malformed() -> None:
    packet = rtp(extension=(header.ONE_BYTE_PROFILE, bytes([(2 << 4) | 7]) + b"abc"))
    with pytest.raises(MalformedPacket, match="element 2"):
        header.read_extension(packet, header.parse(packet), 2)


def test_write_extension_refuses_a_missing_element_or_another_length() -> None:
    packet = bytearray(rtp(extension=one_byte_extensions((3, b"\x01\x02\x03"))))
    parsed = header.parse(packet)
    with pytest.raises(KeyError):
        header.write_extension(packet, parsed, 4, b"\x00\x00\x00")
    with pytest.raises(ValueError, match="holds 3 bytes"):
        header.write_extension(packet, parsed, 3, b"\x00\x00")


def test_abs_send_time_is_6_18_fixed_point_wrapping_at_64_seconds() -> None:
    assert header.encode_abs_send_time(1.5) == (3 << 17).to_bytes(3, "big")
    assert header.decode_abs_send_time(header.encode_abs_send_time(12.25)) == 12.25
    assert header.decode_abs_send_time(header.encode_abs_send_time(64 + 3.0)) == 3.0
