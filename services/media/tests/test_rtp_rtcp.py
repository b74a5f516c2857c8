"""Compound RTCP parsing and NACK/PLI/FIR/REMB building, against hand-built packets."""

from __future__ import annotations

import random
import struct

import pytest

from livecart_media.rtp import rtcp
from livecart_media.rtp.errors import MalformedPacket

BLOCK = struct.pack("!IBBHIIII", 0x1111, 64, 0xFF, 0xFFFE, 0x0001_0010, 37, 0xABCD_0000, 655)


def rtcp_packet(packet_type: int, count: int, body: bytes, *, padding: int = 0) -> bytes:
    if padding:
        body += bytes(padding - 1) + bytes([padding])
    first = 0x80 | (0x20 if padding else 0) | count
    return struct.pack("!BBH", first, packet_type, len(body) // 4) + body


def sdes(ssrc: int, cname: bytes) -> bytes:
    chunk = struct.pack("!I", ssrc) + bytes([1, len(cname)]) + cname + b"\x00"
    return rtcp_packet(rtcp.SDES, 1, chunk + bytes(-len(chunk) % 4))


def test_sender_report_with_a_block() -> None:
    body = struct.pack("!IIIIII", 0xCAFE, 0xE000_0001, 0x8000_0000, 90_000, 10, 12_000) + BLOCK
    (report,) = rtcp.parse(rtcp_packet(rtcp.SR, 1, body))
    assert isinstance(report, rtcp.SenderReport)
    assert report.ssrc == 0xCAFE
    assert report.ntp_timestamp == (0xE000_0001 << 32) | 0x8000_0000
    assert (report.rtp_timestamp, report.packet_count, report.octet_count) == (90_000, 10, 12_000)
    (block,) = report.reports
    assert block == rtcp.ReportBlock(0x1111, 64, -2, 0x0001_0010, 37, 0xABCD_0000, 655)


def test_compound_receiver_report_sdes_bye_is_read_in_order_skipping_sdes() -> None:
    compound = (
        rtcp_packet(rtcp.RR, 1, struct.pack("!I", 0xBEEF) + BLOCK)
        + sdes(0xBEEF, b"viewer-1")
        + rtcp_packet(rtcp.BYE, 2, struct.pack("!II", 1, 2) + b"\x03bye")
    )
    receiver, bye = rtcp.parse(compound)
    assert receiver == rtcp.ReceiverReport(
        0xBEEF, (rtcp.ReportBlock(0x1111, 64, -2, 0x0001_0010, 37, 0xABCD_0000, 655),)
    )
    assert bye == rtcp.Bye((1, 2))


def test_empty_receiver_report_and_positive_cumulative_loss() -> None:
    block = struct.pack("!IBBHIIII", 5, 0, 0x00, 0x0102, 1, 0, 0, 0)
    empty, one = rtcp.parse(
        rtcp_packet(rtcp.RR, 0, struct.pack("!I", 9))
        + rtcp_packet(rtcp.RR, 1, struct.pack("!I", 9) + block)
    )
    assert empty == rtcp.ReceiverReport(9, ())
    assert isinstance(one, rtcp.ReceiverReport)
    assert one.reports[0].packets_lost == 0x0102


def test_generic_nack_expands_pid_and_bitmask() -> None:
    fci = struct.pack("!HHHH", 100, 0b101, 65_535, 0x8000)
    (nack,) = rtcp.parse(rtcp_packet(rtcp.RTPFB, 1, struct.pack("!II", 7, 8) + fci))
    assert nack == rtcp.Nack(7, 8, (100, 101, 103, 65_535, 15))


def test_build_nack_packs_runs_into_pid_and_bitmask_across_the_wrap() -> None:
    packet = rtcp.build_nack(1, 2, [65_530, 65_531, 65_535, 0, 10, 30, 30, 46])
    assert packet[:4] == bytes.fromhex("81cd0004")
    # 65_531, 65_535, 0 and 10 are 1, 5, 6 and 16 after 65_530; 30 is 36 after: a new item.
    assert struct.unpack_from("!HHHH", packet, 12) == (65_530, 0x8031, 30, 0x8000)
    assert rtcp.parse(packet) == [rtcp.Nack(1, 2, (65_530, 65_531, 65_535, 0, 10, 30, 46))]


def test_build_nack_round_trips_any_ascending_run() -> None:
    generator = random.Random(4585)
    for _ in range(200):
        start = generator.randrange(65_536)
        lost = sorted({generator.randrange(300) for _ in range(generator.randrange(1, 60))})
        wanted = tuple((start + i) & 0xFFFF for i in lost)
        (nack,) = rtcp.parse(rtcp.build_nack(3, 4, wanted))
        assert isinstance(nack, rtcp.Nack)
        assert nack.lost == wanted


def test_build_nack_refuses_an_empty_list() -> None:
    with pytest.raises(ValueError, match="at least one"):
        rtcp.build_nack(1, 2, [])


def test_pli_round_trip_and_wire_form() -> None:
    packet = rtcp.build_pli(0x01020304, 0x0A0B0C0D)
    assert packet == bytes.fromhex("81ce0002010203040a0b0c0d")
    assert rtcp.parse(packet) == [rtcp.Pli(0x01020304, 0x0A0B0C0D)]


def test_fir_round_trip_and_wire_form() -> None:
    packet = rtcp.build_fir(1, 0x0A0B0C0D, 257)
    assert packet == bytes.fromhex("84ce000400000001000000000a0b0c0d01000000")
    assert rtcp.parse(packet) == [rtcp.Fir(1, ((0x0A0B0C0D, 1),))]


def test_remb_wire_form_and_round_trip() -> None:
    packet = rtcp.build_remb(0x55, 1_000_000, [0x1234, 0x5678])
    assert packet[:4] == bytes.fromhex("8fce0006")
    assert packet[12:20] == b"REMB" + bytes([2, (2 << 2) | 0x3, 0xD0, 0x90])
    assert rtcp.parse(packet) == [rtcp.Remb(0x55, 1_000_000, (0x1234, 0x5678))]


@pytest.mark.parametrize(
    ("bitrate", "read_back"),
    [(0, 0), (262_143, 262_143), (262_145, 262_144), (3_000_000_001, 2_999_992_320)],
)
def test_remb_keeps_18_significant_bits(bitrate: int, read_back: int) -> None:
    (remb,) = rtcp.parse(rtcp.build_remb(1, bitrate, [2]))
    assert isinstance(remb, rtcp.Remb)
    assert remb.bitrate == read_back


def test_remb_refuses_a_negative_bitrate() -> None:
    with pytest.raises(ValueError, match="REMB"):
        rtcp.build_remb(1, -1, [])


def test_unknown_types_and_other_feedback_formats_are_skipped() -> None:
    twcc = rtcp_packet(rtcp.RTPFB, 15, struct.pack("!II", 1, 2) + bytes(8))
    xr = rtcp_packet(207, 0, struct.pack("!I", 1))
    other_afb = rtcp_packet(rtcp.PSFB, 15, struct.pack("!II", 1, 0) + b"GOOG" + bytes(4))
    assert rtcp.parse(twcc + xr + other_afb + rtcp.build_pli(1, 2)) == [rtcp.Pli(1, 2)]


def test_padding_on_the_last_packet_is_honoured() -> None:
    packet = rtcp.build_pli(1, 2) + rtcp_packet(rtcp.BYE, 1, struct.pack("!I", 3), padding=4)
    assert rtcp.parse(packet) == [rtcp.Pli(1, 2), rtcp.Bye((3,))]


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x80\xc8\x00", "shorter than its 4-byte header"),
        (b"\x40\xc9\x00\x00", "version 1"),
        (b"\x80\xc9\x00\x05\x00\x00\x00\x01", "runs past the end"),
        (rtcp.build_pli(1, 2) + b"\x81", "trailing bytes"),
        (rtcp_packet(rtcp.RR, 1, struct.pack("!I", 1)), "receiver report with 1 blocks"),
        (rtcp_packet(rtcp.SR, 0, bytes(20)), "sender report with 0 blocks"),
        (rtcp_packet(rtcp.BYE, 3, bytes(8)), "BYE with 3"),
        (rtcp_packet(rtcp.PSFB, 1, bytes(4)), "feedback packet type 206"),
        (rtcp_packet(rtcp.RTPFB, 1, bytes(8) + b"\x00\x01", padding=2), "whole 4-byte"),
        (rtcp_packet(rtcp.PSFB, 4, bytes(8) + bytes(4)), "whole 8-byte"),
        (rtcp_packet(rtcp.PSFB, 15, bytes(8) + b"REMB\x02\x00\x00\x00" + bytes(4)), "REMB with 2"),
        (rtcp_packet(rtcp.BYE, 0, b"", padding=4) + rtcp.build_pli(1, 2), "not the last"),
        (bytes([0xA0, rtcp.BYE, 0, 1, 0, 0, 0, 0]), "padding of 0"),
        (bytes([0xA0, rtcp.BYE, 0, 1, 0, 0, 0, 9]), "padding of 9"),
    ],
)
def test_malformed_rtcp_is_refused(packet: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket, match=reason):
        rtcp.parse(packet)


def test_random_and_truncated_bytes_only_ever_raise_malformed_packet() -> None:
    generator = random.Random(3550)
    good = (
        rtcp_packet(rtcp.RR, 1, struct.pack("!I", 0xBEEF) + BLOCK)
        + sdes(1, b"x")
        + rtcp.build_nack(1, 2, [5, 6, 9])
        + rtcp.build_remb(1, 500_000, [2])
        + rtcp.build_fir(1, 2, 3)
    )
    parsed = 0
    for _ in range(20_000):
        if generator.random() < 0.5:
            data = bytearray(generator.randbytes(generator.randrange(64)))
            if data:  # mostly version 2 and a known type, so parsing gets past the header
                data[0] = 0x80 | (data[0] & 0x3F)
                if len(data) > 1:
                    data[1] = generator.choice([200, 201, 202, 203, 205, 206, data[1]])
        else:
            data = bytearray(good[: generator.randrange(len(good) + 1)])
            if data:
                data[generator.randrange(len(data))] = generator.getrandbits(8)
        try:
            rtcp.parse(data)
        except MalformedPacket:
            continue
        parsed += 1
    assert parsed > 100


def test_is_rtcp_tells_rtcp_from_rtp_on_a_muxed_port() -> None:
    assert rtcp.is_rtcp(rtcp.build_pli(1, 2))
    assert rtcp.is_rtcp(bytes([0x80, 200]))
    assert not rtcp.is_rtcp(bytes([0x80, 96]) + bytes(10))
    assert not rtcp.is_rtcp(bytes([0x80, 0x80 | 111]) + bytes(10))
    assert not rtcp.is_rtcp(b"\x80")


def test_bye_round_trips() -> None:
    assert rtcp.parse(rtcp.build_bye([1, 0xFFFFFFFF])) == [rtcp.Bye((1, 0xFFFFFFFF))]
