"""The RTP fixed header and its header extensions, read and patched in place.

Follows RFC 3550 §5.1 (fixed header, CSRC list, padding), §5.3.1 (the extension block) and
RFC 8285 §4.2/§4.3 (one-byte and two-byte extension elements). `parse` validates once; the
offsets it returns let callers reach the payload and extension elements without copying.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from livecart_media.rtp.errors import MalformedPacket

Buffer = bytes | bytearray | memoryview
"""What the functions here read from (collections.abc.Buffer is Python 3.12+)."""

FIXED_HEADER_SIZE = 12
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE_MASK = 0xFFF0
TWO_BYTE_PROFILE = 0x1000

_FIXED = struct.Struct("!BBHII")
_SEQ_TS_SSRC = struct.Struct("!HII")
_EXTENSION_HEADER = struct.Struct("!HH")


# Not frozen: a frozen dataclass costs about 1 µs more per packet to build.
@dataclass(slots=True)
class RtpHeader:
    """One RTP packet's header fields and where its parts lie in the packet bytes."""

    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrc_count: int
    padding: bool
    extension_profile: int | None
    """0xBEDE (one-byte elements), 0x100X (two-byte elements), other profiles, or None."""
    extension_start: int
    """Offset of the first extension element; equals extension_end when there is none."""
    extension_end: int
    payload_offset: int
    payload_end: int
    """Offset just past the payload: the packet length less any padding."""

    @property
    def version(self) -> int:
        """Always 2: `parse` refuses anything else."""
        return 2


def parse(packet: Buffer) -> RtpHeader:
    """Read and validate the RTP header of `packet`; raise MalformedPacket if it is not RTP."""
    size = len(packet)
    if size < FIXED_HEADER_SIZE:
        raise MalformedPacket(f"RTP packet of {size} bytes is shorter than the 12-byte header")
    first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(packet)
    if first >> 6 != 2:
        raise MalformedPacket(f"RTP version {first >> 6}, expected 2")
    csrc_count = first & 0x0F
    offset = FIXED_HEADER_SIZE + 4 * csrc_count
    if offset > size:
        raise MalformedPacket(f"{csrc_count} CSRCs run past the end of a {size}-byte packet")
    profile: int | None = None
    extension_start = extension_end = offset
    if first & 0x10:
        if offset + 4 > size:
            raise MalformedPacket("the header extension's header runs past the end of the packet")
        profile, words = _EXTENSION_HEADER.unpack_from(packet, offset)
        extension_start = offset + 4
        extension_end = offset = extension_start + 4 * words
        if offset > size:
            raise MalformedPacket(f"a header extension of {words} words runs past the end")
    payload_end = size
    padding = bool(first & 0x20)
    if padding:
        count = packet[size - 1]
        if count == 0 or count > size - offset:
            raise MalformedPacket(f"padding of {count} bytes with {size - offset} after the header")
        payload_end -= count
    return RtpHeader(
        marker=bool(second & 0x80),
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        csrc_count=csrc_count,
        padding=padding,
        extension_profile=profile,
        extension_start=extension_start,
        extension_end=extension_end,
        payload_offset=offset,
        payload_end=payload_end,
    )


def patch(
    packet: bytearray, *, ssrc: int, payload_type: int, sequence: int, timestamp: int
) -> None:
    """Overwrite SSRC, payload type, sequence and timestamp in place, keeping the marker bit.

    For the serialize-once, patch-per-subscriber path: one bytearray is patched for each
    subscriber just before it is protected (SRTP copies it out). `packet` must be at least
    the 12-byte fixed header (`parse` checked it).
    """
    packet[1] = (packet[1] & 0x80) | payload_type
    _SEQ_TS_SSRC.pack_into(packet, 2, sequence, timestamp, ssrc)


def rewrite(
    packet: Buffer, *, ssrc: int, payload_type: int, sequence: int, timestamp: int
) -> bytearray:
    """A copy of `packet` with SSRC, payload type, sequence and timestamp replaced."""
    copy = bytearray(packet)
    if len(copy) < FIXED_HEADER_SIZE:
        raise MalformedPacket(f"RTP packet of {len(copy)} bytes is shorter than the 12-byte header")
    patch(copy, ssrc=ssrc, payload_type=payload_type, sequence=sequence, timestamp=timestamp)
    return copy


def find_extension(packet: Buffer, header: RtpHeader, extension_id: int) -> slice | None:
    """Where the data of header extension element `extension_id` lies, or None if absent.

    Understands the RFC 8285 one-byte (profile 0xBEDE) and two-byte (0x100X) forms; other
    profiles hold no elements it can name. Raises MalformedPacket for an element that runs
    past the extension block.
    """
    profile = header.extension_profile
    if profile is None:
        return None
    offset, end = header.extension_start, header.extension_end
    if profile == ONE_BYTE_PROFILE:
        while offset < end:
            byte = packet[offset]
            element_id = byte >> 4
            if element_id == 0:  # padding byte
                offset += 1
                continue
            if element_id == 15:  # RFC 8285 §4.2: stop parsing
                return None
            length = (byte & 0x0F) + 1
            offset += 1
            if offset + length > end:
                raise MalformedPacket(f"extension element {element_id} runs past the block")
            if element_id == extension_id:
                return slice(offset, offset + length)
            offset += length
        return None
    if profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
        while offset < end:
            element_id = packet[offset]
            if element_id == 0:  # padding byte
                offset += 1
                continue
            if offset + 2 > end:
                raise MalformedPacket(f"extension element {element_id} runs past the block")
            length = packet[offset + 1]
            offset += 2
            if offset + length > end:
                raise MalformedPacket(f"extension element {element_id} runs past the block")
            if element_id == extension_id:
                return slice(offset, offset + length)
            offset += length
        return None
    return None


def read_extension(packet: Buffer, header: RtpHeader, extension_id: int) -> bytes | None:
    """The data of header extension element `extension_id`, or None if the packet has none."""
    where = find_extension(packet, header, extension_id)
    return None if where is None else bytes(packet[where])


def write_extension(packet: bytearray, header: RtpHeader, extension_id: int, value: Buffer) -> None:
    """Overwrite extension element `extension_id` in place with `value` of the same length.

    Raises KeyError if the packet carries no such element and ValueError if the length
    differs (growing an element would move the payload: that is a rebuild, not a patch).
    """
    where = find_extension(packet, header, extension_id)
    if where is None:
        raise KeyError(f"no header extension element {extension_id}")
    data = memoryview(value)
    if len(data) != where.stop - where.start:
        raise ValueError(
            f"extension element {extension_id} holds {where.stop - where.start} bytes, "
            f"not {len(data)}"
        )
    packet[where] = data


def encode_abs_send_time(seconds: float) -> bytes:
    """The 3-byte abs-send-time value: seconds as 6.18 fixed point, wrapping every 64 s."""
    return (round(seconds * (1 << 18)) & 0xFFFFFF).to_bytes(3, "big")


def decode_abs_send_time(value: Buffer) -> float:
    """Seconds (modulo 64) from a 3-byte abs-send-time value."""
    return int.from_bytes(value, "big") / (1 << 18)
