"""Where a decoder can start: keyframe detection for VP8 and H.264 RTP payloads.

VP8 follows RFC 7741 §4.2 (payload descriptor: X/N/S bits, partition id, the I/L/T/K
extension with picture id, TL0PICIDX, TID/KEYIDX) and §4.3 / RFC 6386 §9.1 (the frame tag's
P bit, 0 on a keyframe). H.264 follows RFC 6184 §5.6 (single NAL unit), §5.7.1 (STAP-A) and
§5.8 (FU-A), with NAL unit types from H.264 §7.4.1.2. The functions take the RTP payload
(e.g. `memoryview(packet)[header.payload_offset:header.payload_end]`).
"""

from __future__ import annotations

from dataclasses import dataclass

from livecart_media.rtp.errors import MalformedPacket
from livecart_media.rtp.header import Buffer

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
NAL_STAP_A = 24
NAL_FU_A = 28


# Not frozen, like RtpHeader: it is built for every packet.
@dataclass(slots=True)
class Vp8Descriptor:
    """The fields of a VP8 payload descriptor and where the rewritable ones lie."""

    start_of_partition: bool
    partition_id: int
    non_reference: bool
    picture_id: int | None
    picture_id_bits: int
    """7 or 15 (the M bit); 0 when there is no picture id."""
    picture_id_offset: int
    tl0picidx: int | None
    tl0picidx_offset: int
    temporal_layer: int | None
    """TID, when the T bit is set."""
    layer_sync: bool
    key_index: int | None
    """KEYIDX, when the K bit is set."""
    size: int
    """Descriptor length: the VP8 payload starts this many bytes into the RTP payload."""


def parse_vp8_descriptor(payload: Buffer) -> Vp8Descriptor:
    """Read the VP8 payload descriptor; raise MalformedPacket if it runs past the payload."""
    size = len(payload)
    if size < 1:
        raise MalformedPacket("empty VP8 payload")
    first = payload[0]
    offset = 1
    picture_id: int | None = None
    picture_id_bits = picture_id_offset = tl0picidx_offset = 0
    tl0picidx: int | None = None
    temporal_layer: int | None = None
    key_index: int | None = None
    layer_sync = False
    if first & 0x80:
        if size < 2:
            raise MalformedPacket("VP8 descriptor extension byte missing")
        extension = payload[1]
        offset = 2
        if extension & 0x80:  # I: picture id
            if offset >= size:
                raise MalformedPacket("VP8 picture id missing")
            picture_id_offset = offset
            if payload[offset] & 0x80:  # M: 15 bits
                if offset + 2 > size:
                    raise MalformedPacket("VP8 15-bit picture id truncated")
                picture_id = ((payload[offset] & 0x7F) << 8) | payload[offset + 1]
                picture_id_bits = 15
                offset += 2
            else:
                picture_id = payload[offset]
                picture_id_bits = 7
                offset += 1
        if extension & 0x40:  # L: TL0PICIDX
            if offset >= size:
                raise MalformedPacket("VP8 TL0PICIDX missing")
            tl0picidx_offset = offset
            tl0picidx = payload[offset]
            offset += 1
        if extension & 0x30:  # T or K: TID/Y/KEYIDX byte
            if offset >= size:
                raise MalformedPacket("VP8 TID/KEYIDX byte missing")
            byte = payload[offset]
            if extension & 0x20:
                temporal_layer = byte >> 6
                layer_sync = bool(byte & 0x20)
            if extension & 0x10:
                key_index = byte & 0x1F
            offset += 1
    return Vp8Descriptor(
        start_of_partition=bool(first & 0x10),
        partition_id=first & 0x07,
        non_reference=bool(first & 0x20),
        picture_id=picture_id,
        picture_id_bits=picture_id_bits,
        picture_id_offset=picture_id_offset,
        tl0picidx=tl0picidx,
        tl0picidx_offset=tl0picidx_offset,
        temporal_layer=temporal_layer,
        layer_sync=layer_sync,
        key_index=key_index,
        size=offset,
    )


def write_vp8_indices(
    packet: bytearray,
    payload_offset: int,
    descriptor: Vp8Descriptor,
    *,
    picture_id: int | None,
    tl0picidx: int | None,
) -> None:
    """Overwrite the picture id and TL0PICIDX the packet carries, in place, keeping widths.

    `payload_offset` is where the RTP payload (the descriptor) starts in `packet`. A value
    is written only where the descriptor has that field; a 15-bit field keeps its M bit.
    """
    if picture_id is not None and descriptor.picture_id is not None:
        at = payload_offset + descriptor.picture_id_offset
        if descriptor.picture_id_bits == 15:
            packet[at] = 0x80 | ((picture_id >> 8) & 0x7F)
            packet[at + 1] = picture_id & 0xFF
        else:
            packet[at] = picture_id & 0x7F
    if tl0picidx is not None and descriptor.tl0picidx is not None:
        packet[payload_offset + descriptor.tl0picidx_offset] = tl0picidx & 0xFF


def is_vp8_keyframe_start(payload: Buffer) -> bool:
    """True for the first packet of a VP8 keyframe: S=1, partition 0, frame tag P bit 0.

    A truncated payload is not a keyframe start.
    """
    if not payload or payload[0] & 0x17 != 0x10:  # S set, partition id 0
        return False
    size = _vp8_descriptor_size(payload)
    return 0 < size < len(payload) and not payload[size] & 0x01


def _vp8_descriptor_size(payload: Buffer) -> int:
    # parse_vp8_descriptor's walk without building its result (this runs on every packet
    # while a subscriber waits for a keyframe); 0 when the descriptor runs past the payload.
    if not payload[0] & 0x80:
        return 1
    size = len(payload)
    if size < 2:
        return 0
    extension = payload[1]
    offset = 2
    if extension & 0x80:
        if offset >= size:
            return 0
        offset += 2 if payload[offset] & 0x80 else 1
    if extension & 0x40:
        offset += 1
    if extension & 0x30:
        offset += 1
    return offset if offset <= size else 0


def _is_first_idr_slice(payload: Buffer, nal_start: int, nal_end: int) -> bool:
    # The slice header opens with first_mb_in_slice as ue(v): a leading 1 bit encodes 0, so
    # the top bit of the byte after the NAL header says whether this is the picture's first
    # slice. A decoder cannot start on a later slice of the IDR picture.
    return nal_start + 1 < nal_end and bool(payload[nal_start + 1] & 0x80)


def is_h264_keyframe_start(payload: Buffer) -> bool:
    """True if a decoder can start at this packet: SPS, PPS, or the first slice of an IDR.

    Recognises single NAL unit packets, STAP-A aggregates holding an SPS or the first IDR
    slice, and the FU-A fragment that starts the first IDR slice. A truncated payload is
    not a keyframe start.
    """
    size = len(payload)
    if size < 1:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (NAL_SPS, NAL_PPS):
        return True
    if nal_type == NAL_IDR:
        return _is_first_idr_slice(payload, 0, size)
    if nal_type == NAL_STAP_A:
        offset = 1
        while offset + 2 < size:
            length = (payload[offset] << 8) | payload[offset + 1]
            start, offset = offset + 2, offset + 2 + length
            if length == 0 or offset > size:
                return False
            inner = payload[start] & 0x1F
            if inner == NAL_SPS or (
                inner == NAL_IDR and _is_first_idr_slice(payload, start, offset)
            ):
                return True
        return False
    if nal_type == NAL_FU_A:
        # FU indicator, then FU header: S E R Type; the slice header follows the FU header.
        return (
            size > 2
            and payload[1] & 0x80 != 0
            and payload[1] & 0x1F == NAL_IDR
            and bool(payload[2] & 0x80)
        )
    return False
