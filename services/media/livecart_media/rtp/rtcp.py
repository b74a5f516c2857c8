"""RTCP in and out: compound packets parsed into typed messages, and feedback built.

Follows RFC 3550 §6.4 (SR, RR, report blocks), §6.5 (SDES, skipped), §6.6 (BYE), RFC 4585
§6.1-§6.3 (generic NACK: PT 205 FMT 1, PLI: PT 206 FMT 1), RFC 5104 §4.3.1 (FIR: PT 206
FMT 4), draft-alvestrand-rmcat-remb-03 §2.2 (REMB: PT 206 FMT 15), RFC 5506 (feedback need
not follow an SR/RR) and RFC 5761 §4 (telling RTCP from RTP on one port). Packet types it
does not know (XR, transport-wide feedback, APP) are skipped, not refused.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from livecart_media.rtp.errors import MalformedPacket
from livecart_media.rtp.header import Buffer

SR, RR, SDES, BYE, RTPFB, PSFB = 200, 201, 202, 203, 205, 206
FMT_NACK = 1
FMT_PLI, FMT_FIR, FMT_AFB = 1, 4, 15

_HEADER = struct.Struct("!BBH")
_FEEDBACK_HEADER = struct.Struct("!BBHII")
_SENDER_INFO = struct.Struct("!IIIIII")  # sender SSRC, NTP msw, NTP lsw, RTP ts, packets, octets
_REPORT_BLOCK = struct.Struct("!IIIIII")
_NACK_ITEM = struct.Struct("!HH")
_FIR_ITEM = struct.Struct("!IB3x")
_REMB_ID = b"REMB"
_MAX_REMB_MANTISSA = (1 << 18) - 1


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report about a source (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int
    """Lost fraction since the last report, in 1/256ths."""
    packets_lost: int
    """Cumulative; may be negative with duplicates."""
    highest_sequence: int
    """Extended highest sequence number received."""
    jitter: int
    last_sr: int
    delay_since_last_sr: int
    """In 1/65536 seconds."""


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...]


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...]


@dataclass(frozen=True, slots=True)
class Bye:
    ssrcs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Nack:
    """Generic NACK: the sequence numbers `sender_ssrc` lost of `media_ssrc`, each once, in
    the order the packet first names them."""

    sender_ssrc: int
    media_ssrc: int
    lost: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Pli:
    sender_ssrc: int
    media_ssrc: int


@dataclass(frozen=True, slots=True)
class Fir:
    """Full intra request: (target SSRC, command sequence number) per entry."""

    sender_ssrc: int
    entries: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Remb:
    """Receiver estimated maximum bitrate, in bits per second, for these SSRCs."""

    sender_ssrc: int
    bitrate: int
    ssrcs: tuple[int, ...]


RtcpMessage = SenderReport | ReceiverReport | Bye | Nack | Pli | Fir | Remb


def is_rtcp(packet: Buffer) -> bool:
    """True if a packet on a muxed RTP/RTCP port is RTCP (RFC 5761 §4: PT byte 192-223)."""
    return len(packet) >= 2 and 192 <= packet[1] <= 223


def parse(packet: Buffer) -> list[RtcpMessage]:
    """The messages of a compound RTCP packet; raise MalformedPacket for anything malformed.

    SDES and unknown packet types are skipped; so is a feedback packet of a known type with
    a format this module does not read.
    """
    size = len(packet)
    if size < 4:
        raise MalformedPacket(f"RTCP packet of {size} bytes is shorter than its 4-byte header")
    messages: list[RtcpMessage] = []
    offset = 0
    while offset < size:
        if offset + 4 > size:
            raise MalformedPacket(f"{size - offset} trailing bytes after the last RTCP packet")
        first, packet_type, words = _HEADER.unpack_from(packet, offset)
        if first >> 6 != 2:
            raise MalformedPacket(f"RTCP version {first >> 6}, expected 2")
        end = offset + 4 + 4 * words
        if end > size:
            raise MalformedPacket(
                f"RTCP packet type {packet_type} of {words} words runs past the end"
            )
        body_end = end
        if first & 0x20:
            if end != size:
                raise MalformedPacket("padding on an RTCP packet that is not the last")
            padding = packet[end - 1]
            if padding == 0 or padding > end - offset - 4:
                raise MalformedPacket(f"RTCP padding of {padding} bytes")
            body_end -= padding
        message = _parse_one(packet, packet_type, first & 0x1F, offset + 4, body_end)
        if message is not None:
            messages.append(message)
        offset = end
    return messages


def _parse_one(
    packet: Buffer, packet_type: int, count: int, start: int, end: int
) -> RtcpMessage | None:
    if packet_type == SR:
        if start + 24 + 24 * count > end:
            raise MalformedPacket(f"sender report with {count} blocks is too short")
        ssrc, ntp_high, ntp_low, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(packet, start)
        reports = _report_blocks(packet, start + 24, count)
        return SenderReport(ssrc, (ntp_high << 32) | ntp_low, rtp_ts, packets, octets, reports)
    if packet_type == RR:
        if start + 4 + 24 * count > end:
            raise MalformedPacket(f"receiver report with {count} blocks is too short")
        ssrc = int.from_bytes(packet[start : start + 4], "big")
        return ReceiverReport(ssrc, _report_blocks(packet, start + 4, count))
    if packet_type == BYE:
        if start + 4 * count > end:
            raise MalformedPacket(f"BYE with {count} SSRCs is too short")
        return Bye(struct.unpack_from(f"!{count}I", packet, start))
    if packet_type in (RTPFB, PSFB):
        if start + 8 > end:
            raise MalformedPacket(f"feedback packet type {packet_type} is too short")
        sender, media = struct.unpack_from("!II", packet, start)
        if packet_type == RTPFB:
            return _parse_nack(packet, sender, media, start + 8, end) if count == FMT_NACK else None
        if count == FMT_PLI:
            return Pli(sender, media)
        if count == FMT_FIR:
            return _parse_fir(packet, sender, start + 8, end)
        if count == FMT_AFB:
            return _parse_remb(packet, sender, start + 8, end)
    return None


def _report_blocks(packet: Buffer, offset: int, count: int) -> tuple[ReportBlock, ...]:
    blocks = []
    for _ in range(count):
        ssrc, lost, highest, jitter, last_sr, delay = _REPORT_BLOCK.unpack_from(packet, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost >> 24, cumulative, highest, jitter, last_sr, delay))
        offset += 24
    return tuple(blocks)


def _parse_nack(packet: Buffer, sender: int, media: int, start: int, end: int) -> Nack:
    if (end - start) % 4:
        raise MalformedPacket("generic NACK entries are not whole 4-byte items")
    lost: list[int] = []
    for offset in range(start, end, 4):
        pid, mask = _NACK_ITEM.unpack_from(packet, offset)
        lost.append(pid)
        bit = 0
        while mask:
            if mask & 1:
                lost.append((pid + bit + 1) & 0xFFFF)
            mask >>= 1
            bit += 1
    # Once each: a 1,200-byte NACK repeating one item names 5,066 numbers, each of them a
    # retransmission for whoever answers it.
    return Nack(sender, media, tuple(dict.fromkeys(lost)))


def _parse_fir(packet: Buffer, sender: int, start: int, end: int) -> Fir:
    if (end - start) % 8:
        raise MalformedPacket("FIR entries are not whole 8-byte items")
    return Fir(sender, tuple(_FIR_ITEM.unpack_from(packet, at) for at in range(start, end, 8)))


def _parse_remb(packet: Buffer, sender: int, start: int, end: int) -> Remb | None:
    if end - start < 8 or bytes(packet[start : start + 4]) != _REMB_ID:
        return None  # another application-layer feedback message
    count = packet[start + 4]
    if start + 8 + 4 * count > end:
        raise MalformedPacket(f"REMB with {count} SSRCs is too short")
    exponent = packet[start + 5] >> 2
    mantissa = ((packet[start + 5] & 0x03) << 16) | (packet[start + 6] << 8) | packet[start + 7]
    ssrcs = struct.unpack_from(f"!{count}I", packet, start + 8)
    return Remb(sender, mantissa << exponent, ssrcs)


def _feedback(packet_type: int, fmt: int, sender: int, media: int, fci: bytes) -> bytes:
    words = 2 + len(fci) // 4
    return _FEEDBACK_HEADER.pack(0x80 | fmt, packet_type, words, sender, media) + fci


def build_nack(sender_ssrc: int, media_ssrc: int, lost: Iterable[int]) -> bytes:
    """A generic NACK for `lost` sequence numbers (oldest first packs tightest; wrap-safe)."""
    items = bytearray()
    pid = mask = -1
    for sequence in lost:
        sequence &= 0xFFFF
        distance = (sequence - pid) & 0xFFFF
        if pid >= 0 and 1 <= distance <= 16:
            mask |= 1 << (distance - 1)
            continue
        if pid >= 0 and distance == 0:
            continue
        if pid >= 0:
            items += _NACK_ITEM.pack(pid, mask)
        pid, mask = sequence, 0
    if pid < 0:
        raise ValueError("a NACK needs at least one lost sequence number")
    items += _NACK_ITEM.pack(pid, mask)
    return _feedback(RTPFB, FMT_NACK, sender_ssrc, media_ssrc, bytes(items))


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """A picture loss indication asking `media_ssrc` for a keyframe."""
    return _feedback(PSFB, FMT_PLI, sender_ssrc, media_ssrc, b"")


def build_fir(sender_ssrc: int, media_ssrc: int, sequence: int) -> bytes:
    """A full intra request to `media_ssrc`; bump `sequence` (mod 256) for each new request."""
    return _feedback(PSFB, FMT_FIR, sender_ssrc, 0, _FIR_ITEM.pack(media_ssrc, sequence & 0xFF))


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: Iterable[int]) -> bytes:
    """A REMB of `bitrate` bits per second (rounded down to 18 significant bits) for `ssrcs`."""
    targets = tuple(ssrcs)
    if bitrate < 0 or len(targets) > 255:
        raise ValueError("REMB needs a non-negative bitrate and at most 255 SSRCs")
    exponent = max(0, bitrate.bit_length() - 18)
    if exponent > 63:
        exponent, mantissa = 63, _MAX_REMB_MANTISSA
    else:
        mantissa = bitrate >> exponent
    fci = _REMB_ID + bytes(
        (len(targets), (exponent << 2) | (mantissa >> 16), (mantissa >> 8) & 0xFF, mantissa & 0xFF)
    )
    fci += struct.pack(f"!{len(targets)}I", *targets)
    return _feedback(PSFB, FMT_AFB, sender_ssrc, 0, fci)


def build_bye(ssrcs: Iterable[int]) -> bytes:
    """A BYE for `ssrcs` (RFC 3550 §6.6), without a reason."""
    sources = tuple(ssrcs)
    if not 1 <= len(sources) <= 31:
        raise ValueError("a BYE names 1 to 31 SSRCs")
    return struct.pack(f"!BBH{len(sources)}I", 0x80 | len(sources), BYE, len(sources), *sources)
