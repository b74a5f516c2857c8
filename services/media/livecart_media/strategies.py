"""Hypothesis strategies for the media path's wire formats: RTP, RTCP, VP8 and H.264 payloads.

For the property tests of every parser that reads network bytes (`livecart_media.rtp`, the
pipe, the WebRTC taps). Each structured strategy draws a spec (what the packet says) whose
`to_bytes()` writes it, so a test can check `parse(spec.to_bytes())` against the spec;
`corrupted` turns any of them into nearly-valid garbage. Not used by any service:
hypothesis is a dev dependency only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hypothesis import strategies as st

from livecart_media.rtp import rtcp
from livecart_media.rtp.header import ONE_BYTE_PROFILE, TWO_BYTE_PROFILE

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@dataclass(frozen=True)
class RtpSpec:
    """What one RTP packet says; `to_bytes` writes it per RFC 3550 §5.1 and RFC 8285."""

    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrcs: tuple[int, ...]
    extension_profile: int | None
    elements: tuple[tuple[int, bytes], ...]
    """RFC 8285 elements (id, data) when the profile is one- or two-byte, else empty."""
    extension_body: bytes
    """The extension block's words (elements and their padding, or another profile's data)."""
    payload: bytes
    padding: int

    def to_bytes(self) -> bytes:
        first = 0x80 | len(self.csrcs)
        first |= (0x20 if self.padding else 0) | (0x10 if self.extension_profile is not None else 0)
        out = struct.pack(
            "!BBHII",
            first,
            (0x80 if self.marker else 0) | self.payload_type,
            self.sequence,
            self.timestamp,
            self.ssrc,
        )
        out += b"".join(struct.pack("!I", c) for c in self.csrcs)
        if self.extension_profile is not None:
            out += struct.pack("!HH", self.extension_profile, len(self.extension_body) // 4)
            out += self.extension_body
        out += self.payload
        if self.padding:
            out += bytes(self.padding - 1) + bytes([self.padding])
        return out


def _pad_words(body: bytes) -> bytes:
    return body + bytes(-len(body) % 4)


@st.composite
def _extension(draw: st.DrawFn) -> tuple[int | None, tuple[tuple[int, bytes], ...], bytes]:
    form = draw(st.sampled_from(["none", "one-byte", "two-byte", "other"]))
    if form == "none":
        return None, (), b""
    if form == "other":
        profile = draw(u16.filter(lambda p: p != ONE_BYTE_PROFILE and p >> 4 != 0x100))
        return profile, (), _pad_words(draw(st.binary(max_size=32)))
    ids = draw(
        st.lists(
            st.integers(1, 14) if form == "one-byte" else st.integers(1, 255),
            unique=True,
            max_size=4,
        )
    )
    min_size, max_size = (1, 16) if form == "one-byte" else (0, 40)
    elements = tuple((i, draw(st.binary(min_size=min_size, max_size=max_size))) for i in ids)
    if form == "one-byte":
        body = b"".join(bytes([i << 4 | (len(data) - 1)]) + data for i, data in elements)
        return ONE_BYTE_PROFILE, elements, _pad_words(body)
    appbits = draw(st.integers(0, 15))
    body = b"".join(bytes([i, len(data)]) + data for i, data in elements)
    return TWO_BYTE_PROFILE | appbits, elements, _pad_words(body)


@st.composite
def rtp_specs(draw: st.DrawFn, *, payload_types: st.SearchStrategy[int] | None = None) -> RtpSpec:
    """Well-formed RTP packets: CSRCs, any extension form, padding, any payload."""
    profile, elements, body = draw(_extension())
    return RtpSpec(
        marker=draw(st.booleans()),
        payload_type=draw(payload_types if payload_types is not None else st.integers(0, 127)),
        sequence=draw(u16),
        timestamp=draw(u32),
        ssrc=draw(u32),
        csrcs=tuple(draw(st.lists(u32, max_size=15))),
        extension_profile=profile,
        elements=elements,
        extension_body=body,
        payload=draw(st.binary(max_size=64)),
        padding=draw(st.one_of(st.just(0), st.integers(1, 255))),
    )


def rtp_packets() -> st.SearchStrategy[bytes]:
    """The bytes of well-formed RTP packets."""
    return rtp_specs().map(RtpSpec.to_bytes)


@st.composite
def corrupted(draw: st.DrawFn, packets: st.SearchStrategy[bytes]) -> bytes:
    """A packet from `packets` damaged the way networks and attackers do: bits flipped,
    bytes overwritten, cut short, or with bytes inserted or appended."""
    data = bytearray(draw(packets))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "set", "truncate", "insert", "append"]))
        if how in ("flip", "set") and data:
            at = draw(st.integers(0, len(data) - 1))
            if how == "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            else:
                data[at] = draw(u8)
        elif how == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif how == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def report_blocks() -> st.SearchStrategy[rtcp.ReportBlock]:
    return st.builds(
        rtcp.ReportBlock,
        ssrc=u32,
        fraction_lost=u8,
        packets_lost=st.integers(-0x800000, 0x7FFFFF),
        highest_sequence=u32,
        jitter=u32,
        last_sr=u32,
        delay_since_last_sr=u32,
    )


def _report_block_bytes(block: rtcp.ReportBlock) -> bytes:
    lost = block.fraction_lost << 24 | block.packets_lost & 0xFFFFFF
    return struct.pack(
        "!IIIIII",
        block.ssrc,
        lost,
        block.highest_sequence,
        block.jitter,
        block.last_sr,
        block.delay_since_last_sr,
    )


def _rtcp_packet(count: int, packet_type: int, body: bytes) -> bytes:
    return struct.pack("!BBH", 0x80 | count, packet_type, len(body) // 4) + body


def sender_report_bytes(report: rtcp.SenderReport) -> bytes:
    """RFC 3550 §6.4.1, which `livecart_media.rtp.rtcp` reads but never writes."""
    body = struct.pack(
        "!IQIII",
        report.ssrc,
        report.ntp_timestamp,
        report.rtp_timestamp,
        report.packet_count,
        report.octet_count,
    )
    body += b"".join(_report_block_bytes(b) for b in report.reports)
    return _rtcp_packet(len(report.reports), rtcp.SR, body)


def receiver_report_bytes(report: rtcp.ReceiverReport) -> bytes:
    """RFC 3550 §6.4.2."""
    body = struct.pack("!I", report.ssrc) + b"".join(_report_block_bytes(b) for b in report.reports)
    return _rtcp_packet(len(report.reports), rtcp.RR, body)


_blocks = st.lists(report_blocks(), max_size=4).map(tuple)

sender_reports = st.builds(
    rtcp.SenderReport,
    ssrc=u32,
    ntp_timestamp=st.integers(0, 2**64 - 1),
    rtp_timestamp=u32,
    packet_count=u32,
    octet_count=u32,
    reports=_blocks,
)
receiver_reports = st.builds(rtcp.ReceiverReport, ssrc=u32, reports=_blocks)


@st.composite
def nack_wire(draw: st.DrawFn) -> tuple[rtcp.Nack, bytes]:
    """A generic NACK item by item, and what `rtcp.parse` reads from it: each item's PID
    then the numbers its bitmask names, each once (`build_nack` would pack them tighter)."""
    items = draw(st.lists(st.tuples(u16, u16), min_size=1, max_size=4))
    lost: list[int] = []
    for pid, mask in items:
        lost.append(pid)
        lost.extend((pid + bit + 1) & 0xFFFF for bit in range(16) if mask >> bit & 1)
    sender, media = draw(u32), draw(u32)
    body = struct.pack("!II", sender, media)
    body += b"".join(struct.pack("!HH", pid, mask) for pid, mask in items)
    nack = rtcp.Nack(sender, media, tuple(dict.fromkeys(lost)))
    return nack, _rtcp_packet(rtcp.FMT_NACK, rtcp.RTPFB, body)


plis = st.builds(rtcp.Pli, sender_ssrc=u32, media_ssrc=u32)
firs = st.builds(
    rtcp.Fir,
    sender_ssrc=u32,
    entries=st.lists(st.tuples(u32, u8), min_size=1, max_size=4).map(tuple),
)
byes = st.builds(rtcp.Bye, ssrcs=st.lists(u32, min_size=1, max_size=31).map(tuple))


@st.composite
def rembs(draw: st.DrawFn) -> rtcp.Remb:
    """REMBs whose bitrate is exactly representable (18-bit mantissa, 6-bit exponent)."""
    mantissa, exponent = draw(st.integers(0, (1 << 18) - 1)), draw(st.integers(0, 63))
    ssrcs = tuple(draw(st.lists(u32, max_size=8)))
    return rtcp.Remb(draw(u32), mantissa << exponent, ssrcs)


def rtcp_message_bytes(
    message: rtcp.SenderReport | rtcp.ReceiverReport | rtcp.Bye | rtcp.Pli | rtcp.Fir | rtcp.Remb,
) -> bytes:
    """One message on the wire, written with the module's own builders where it has one."""
    if isinstance(message, rtcp.SenderReport):
        return sender_report_bytes(message)
    if isinstance(message, rtcp.ReceiverReport):
        return receiver_report_bytes(message)
    if isinstance(message, rtcp.Bye):
        return rtcp.build_bye(message.ssrcs)
    if isinstance(message, rtcp.Pli):
        return rtcp.build_pli(message.sender_ssrc, message.media_ssrc)
    if isinstance(message, rtcp.Fir):
        fci = b"".join(struct.pack("!IB3x", target, seq) for target, seq in message.entries)
        body = struct.pack("!II", message.sender_ssrc, 0) + fci
        return _rtcp_packet(rtcp.FMT_FIR, rtcp.PSFB, body)
    return rtcp.build_remb(message.sender_ssrc, message.bitrate, message.ssrcs)


rtcp_wire: st.SearchStrategy[tuple[rtcp.RtcpMessage, bytes]] = st.one_of(
    st.one_of(sender_reports, receiver_reports, byes, plis, firs, rembs()).map(
        lambda message: (message, rtcp_message_bytes(message))
    ),
    nack_wire(),
)
"""One RTCP message of each type `rtcp.parse` reads, with its bytes."""


def _sdes(ssrc: int, cname: bytes) -> bytes:
    chunk = struct.pack("!IBB", ssrc, 1, len(cname)) + cname + b"\x00"
    return _rtcp_packet(1, rtcp.SDES, _pad_words(chunk))


skipped_rtcp = st.one_of(
    st.builds(_sdes, u32, st.binary(max_size=20)),
    # Packet types and feedback formats the module skips (XR, APP, transport-wide cc).
    st.builds(
        lambda count, packet_type, body: _rtcp_packet(count, packet_type, _pad_words(body)),
        st.integers(0, 31),
        st.sampled_from([204, 207]),
        st.binary(max_size=24),
    ),
    st.builds(
        lambda body: _rtcp_packet(15, rtcp.RTPFB, struct.pack("!II", 1, 2) + _pad_words(body)),
        st.binary(max_size=24),
    ),
)
"""Well-formed RTCP packets that `rtcp.parse` reads past without a message."""


@st.composite
def compound_rtcp(draw: st.DrawFn) -> tuple[list[rtcp.RtcpMessage], bytes]:
    """A compound RTCP packet and the messages `rtcp.parse` should return for it."""
    messages: list[rtcp.RtcpMessage] = []
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            message, data = draw(rtcp_wire)
            messages.append(message)
            out += data
        else:
            out += draw(skipped_rtcp)
    return messages, out


@dataclass(frozen=True)
class Vp8Spec:
    """The fields of a VP8 payload descriptor (RFC 7741 §4.2) and the payload after it."""

    start_of_partition: bool
    partition_id: int
    non_reference: bool
    picture_id: int | None
    picture_id_bits: int
    tl0picidx: int | None
    temporal_layer: int | None
    layer_sync: bool
    key_index: int | None
    rest: bytes

    def to_bytes(self) -> bytes:
        extended = (
            self.picture_id is not None
            or self.tl0picidx is not None
            or self.temporal_layer is not None
            or self.key_index is not None
        )
        first = self.partition_id | (0x10 if self.start_of_partition else 0)
        first |= (0x20 if self.non_reference else 0) | (0x80 if extended else 0)
        out = bytearray([first])
        if extended:
            out.append(
                (0x80 if self.picture_id is not None else 0)
                | (0x40 if self.tl0picidx is not None else 0)
                | (0x20 if self.temporal_layer is not None else 0)
                | (0x10 if self.key_index is not None else 0)
            )
        if self.picture_id is not None:
            if self.picture_id_bits == 15:
                out += struct.pack("!H", 0x8000 | self.picture_id)
            else:
                out.append(self.picture_id)
        if self.tl0picidx is not None:
            out.append(self.tl0picidx)
        if self.temporal_layer is not None or self.key_index is not None:
            tid = self.temporal_layer or 0
            out.append(tid << 6 | (0x20 if self.layer_sync else 0) | (self.key_index or 0))
        return bytes(out) + self.rest


@st.composite
def vp8_specs(draw: st.DrawFn) -> Vp8Spec:
    bits = draw(st.sampled_from([7, 15]))
    temporal_layer = draw(st.none() | st.integers(0, 3))
    return Vp8Spec(
        start_of_partition=draw(st.booleans()),
        partition_id=draw(st.integers(0, 7)),
        non_reference=draw(st.booleans()),
        picture_id=draw(st.none() | st.integers(0, (1 << bits) - 1)),
        picture_id_bits=bits,
        tl0picidx=draw(st.none() | u8),
        temporal_layer=temporal_layer,
        layer_sync=temporal_layer is not None and draw(st.booleans()),
        key_index=draw(st.none() | st.integers(0, 31)),
        rest=draw(st.binary(max_size=16)),
    )


def _nal(nal_type: int, body: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(lambda nri, data: bytes([nri << 5 | nal_type]) + data, st.integers(0, 3), body)


_nal_units = st.one_of(
    *(_nal(t, st.binary(max_size=12)) for t in (1, 5, 6, 7, 8, 9)),
    _nal(5, st.binary(min_size=1, max_size=12).map(lambda b: bytes([b[0] | 0x80]) + b[1:])),
)
h264_payloads = st.one_of(
    _nal_units,
    # RFC 6184 §5.7.1 STAP-A: 16-bit sizes, each followed by that NAL unit.
    st.lists(_nal_units, min_size=1, max_size=4).map(
        lambda units: b"\x78" + b"".join(struct.pack("!H", len(u)) + u for u in units)
    ),
    # §5.8 FU-A: FU indicator, FU header (S E R type), then a fragment.
    st.builds(
        lambda start, end, nal_type, data: (
            bytes([0x7C, (0x80 if start else 0) | (0x40 if end else 0) | nal_type]) + data
        ),
        st.booleans(),
        st.booleans(),
        st.sampled_from([1, 5, 7]),
        st.binary(max_size=12),
    ),
)
"""RTP payloads of H.264 (single NAL unit, STAP-A, FU-A) as a packetizer writes them."""
