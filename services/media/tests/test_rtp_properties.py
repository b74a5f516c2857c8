"""Properties of the RTP building blocks over arbitrary, corrupted and well-formed bytes.

The contract of every parser in `livecart_media.rtp`: bytes off the network either parse into
what they say or raise `MalformedPacket`, nothing else; and the state machines fed with
numbers from those packets keep their invariants whatever the numbers are.
"""

from __future__ import annotations

import struct

from aiortc import rtp as aiortc_rtp
from hypothesis import assume, given
from hypothesis import strategies as st

from livecart_media import strategies as media_st
from livecart_media.rtp import cache, header, keyframe, loss, rewriter, rtcp
from livecart_media.rtp.errors import MalformedPacket
from livecart_media.strategies import RtpSpec, Vp8Spec

any_bytes = st.binary(max_size=300)
rtp_like = st.one_of(any_bytes, media_st.rtp_packets(), media_st.corrupted(media_st.rtp_packets()))
rtcp_like = st.one_of(
    any_bytes,
    media_st.compound_rtcp().map(lambda pair: pair[1]),
    media_st.corrupted(media_st.compound_rtcp().map(lambda pair: pair[1])),
)


def parse_or_none(data: bytes) -> header.RtpHeader | None:
    try:
        return header.parse(data)
    except MalformedPacket:
        return None


# --- header -------------------------------------------------------------------------------


@given(rtp_like)
def test_rtp_parse_raises_only_malformed_packet_and_its_offsets_lie_in_the_packet(
    data: bytes,
) -> None:
    parsed = parse_or_none(data)
    if parsed is None:
        return
    assert header.FIXED_HEADER_SIZE <= parsed.extension_start <= parsed.extension_end
    assert parsed.extension_end <= parsed.payload_offset <= parsed.payload_end <= len(data)
    assert 0 <= parsed.payload_type <= 127 and 0 <= parsed.sequence <= 0xFFFF
    for extension_id in range(256):
        try:
            where = header.find_extension(data, parsed, extension_id)
        except MalformedPacket:
            continue
        if where is not None:
            assert parsed.extension_start <= where.start <= where.stop <= parsed.extension_end


@given(media_st.rtp_specs())
def test_rtp_parse_reads_back_what_was_written(spec: RtpSpec) -> None:
    data = spec.to_bytes()
    parsed = header.parse(memoryview(data))
    assert (parsed.marker, parsed.payload_type, parsed.sequence) == (
        spec.marker,
        spec.payload_type,
        spec.sequence,
    )
    assert (parsed.timestamp, parsed.ssrc, parsed.csrc_count) == (
        spec.timestamp,
        spec.ssrc,
        len(spec.csrcs),
    )
    assert parsed.padding == bool(spec.padding)
    assert parsed.extension_profile == spec.extension_profile
    assert data[parsed.payload_offset : parsed.payload_end] == spec.payload
    for extension_id, value in spec.elements:
        assert header.read_extension(data, parsed, extension_id) == value
    missing = {i for i in range(1, 15)} - {i for i, _ in spec.elements}
    for extension_id in missing:
        assert header.read_extension(data, parsed, extension_id) is None


@given(media_st.rtp_specs(), media_st.u32, st.integers(0, 127), media_st.u16, media_st.u32)
def test_rewrite_changes_the_four_fields_and_nothing_else(
    spec: RtpSpec, ssrc: int, payload_type: int, sequence: int, timestamp: int
) -> None:
    data = spec.to_bytes()
    out = header.rewrite(
        data, ssrc=ssrc, payload_type=payload_type, sequence=sequence, timestamp=timestamp
    )
    parsed = header.parse(out)
    assert (parsed.ssrc, parsed.payload_type, parsed.sequence, parsed.timestamp) == (
        ssrc,
        payload_type,
        sequence,
        timestamp,
    )
    assert parsed.marker == spec.marker
    assert out[:1] == data[:1] and out[12:] == data[12:]


@given(rtp_like)
def test_rewrite_of_any_bytes_raises_only_malformed_packet(data: bytes) -> None:
    try:
        out = header.rewrite(data, ssrc=1, payload_type=2, sequence=3, timestamp=4)
    except MalformedPacket:
        assert len(data) < header.FIXED_HEADER_SIZE
        return
    assert len(out) == len(data) and out[12:] == data[12:]


@given(media_st.rtp_specs(), st.data())
def test_write_extension_replaces_an_element_in_place(spec: RtpSpec, data: st.DataObject) -> None:
    assume(spec.elements)
    extension_id, old = data.draw(st.sampled_from(spec.elements))
    value = data.draw(st.binary(min_size=len(old), max_size=len(old)))
    packet = bytearray(spec.to_bytes())
    parsed = header.parse(packet)
    header.write_extension(packet, parsed, extension_id, value)
    assert header.read_extension(packet, parsed, extension_id) == value
    assert packet[parsed.payload_offset : parsed.payload_end] == spec.payload


@given(st.binary(max_size=3))
def test_abs_send_time_round_trips(value: bytes) -> None:
    value = value.rjust(3, b"\x00")
    assert header.encode_abs_send_time(header.decode_abs_send_time(value)) == value


# --- RTCP ---------------------------------------------------------------------------------


@given(rtcp_like)
def test_rtcp_parse_raises_only_malformed_packet(data: bytes) -> None:
    try:
        messages = rtcp.parse(data)
    except MalformedPacket:
        return
    for message in messages:
        assert isinstance(message, rtcp.RtcpMessage)


@given(media_st.compound_rtcp())
def test_rtcp_parse_reads_back_every_message_of_a_compound_packet(
    compound: tuple[list[rtcp.RtcpMessage], bytes],
) -> None:
    messages, data = compound
    assert rtcp.parse(data) == messages


@given(media_st.rtcp_wire, st.integers(1, 63))
def test_rtcp_padding_on_the_last_packet_is_read_past(
    wire: tuple[rtcp.RtcpMessage, bytes], words: int
) -> None:
    message, data = wire
    padded = bytearray(data + bytes(4 * words - 1) + bytes([4 * words]))
    padded[0] |= 0x20
    struct.pack_into("!H", padded, 2, len(padded) // 4 - 1)
    assert rtcp.parse(bytes(padded)) == [message]


@given(media_st.u32, media_st.u32, st.lists(st.integers(0, 0x1FFFF), min_size=1, max_size=40))
def test_build_nack_names_exactly_the_lost_numbers(
    sender: int, media: int, lost: list[int]
) -> None:
    [nack] = rtcp.parse(rtcp.build_nack(sender, media, lost))
    assert isinstance(nack, rtcp.Nack)
    assert (nack.sender_ssrc, nack.media_ssrc) == (sender, media)
    assert set(nack.lost) == {sequence & 0xFFFF for sequence in lost}
    assert len(nack.lost) == len(set(nack.lost))


def test_a_nack_names_each_number_once_however_often_the_packet_repeats_it() -> None:
    items = struct.pack("!HH", 5, 0xFFFF) * 298  # one item, over and over, in 1,204 bytes
    body = struct.pack("!II", 1, 2) + items
    [nack] = rtcp.parse(struct.pack("!BBH", 0x81, rtcp.RTPFB, len(body) // 4) + body)
    assert isinstance(nack, rtcp.Nack) and nack.lost == tuple(range(5, 22))


@given(media_st.u32, st.integers(0, 2**70), st.lists(media_st.u32, max_size=255))
def test_build_remb_rounds_down_to_18_significant_bits(
    sender: int, bitrate: int, ssrcs: list[int]
) -> None:
    [remb] = rtcp.parse(rtcp.build_remb(sender, bitrate, ssrcs))
    assert isinstance(remb, rtcp.Remb)
    assert remb.sender_ssrc == sender and remb.ssrcs == tuple(ssrcs)
    assert remb.bitrate <= bitrate
    if bitrate < (1 << 18) << 63:
        assert bitrate - remb.bitrate < max(1, bitrate >> 17)


@given(media_st.u32, media_st.u32, st.integers(0, 1000))
def test_build_pli_and_fir_round_trip(sender: int, media: int, sequence: int) -> None:
    assert rtcp.parse(rtcp.build_pli(sender, media)) == [rtcp.Pli(sender, media)]
    assert rtcp.parse(rtcp.build_fir(sender, media, sequence)) == [
        rtcp.Fir(sender, ((media, sequence & 0xFF),))
    ]


@given(rtcp_like)
def test_what_rtcp_parse_accepts_aiortc_can_route(data: bytes) -> None:
    # The taps hand every compound packet they accept on to aiortc's own RTCP handling
    # (which routes it and reads REMBs); that catches ValueError only, and an escaping
    # exception ends the peer connection's DTLS transport.
    try:
        rtcp.parse(data)
    except MalformedPacket:
        return
    try:
        packets = aiortc_rtp.RtcpPacket.parse(data)
    except ValueError:
        return
    for packet in packets:
        if isinstance(packet, aiortc_rtp.RtcpPsfbPacket) and packet.fmt == aiortc_rtp.RTCP_PSFB_APP:
            try:
                aiortc_rtp.unpack_remb_fci(packet.fci)
            except ValueError:
                pass


# --- keyframes ----------------------------------------------------------------------------


@given(st.one_of(any_bytes, media_st.vp8_specs().map(Vp8Spec.to_bytes)))
def test_vp8_descriptor_parse_raises_only_malformed_packet_and_agrees_on_its_size(
    payload: bytes,
) -> None:
    try:
        descriptor = keyframe.parse_vp8_descriptor(payload)
    except MalformedPacket:
        descriptor = None
    start = keyframe.is_vp8_keyframe_start(payload)
    if descriptor is None:
        assert not start
        return
    assert 1 <= descriptor.size <= len(payload)
    keyframe_start = (
        descriptor.start_of_partition
        and descriptor.partition_id == 0
        and descriptor.size < len(payload)
        and not payload[descriptor.size] & 0x01
    )
    assert start == keyframe_start


@given(media_st.vp8_specs())
def test_vp8_descriptor_reads_back_what_was_written(spec: Vp8Spec) -> None:
    descriptor = keyframe.parse_vp8_descriptor(spec.to_bytes())
    assert (descriptor.start_of_partition, descriptor.partition_id, descriptor.non_reference) == (
        spec.start_of_partition,
        spec.partition_id,
        spec.non_reference,
    )
    assert descriptor.picture_id == spec.picture_id
    assert descriptor.picture_id_bits == (0 if spec.picture_id is None else spec.picture_id_bits)
    assert (descriptor.tl0picidx, descriptor.temporal_layer, descriptor.key_index) == (
        spec.tl0picidx,
        spec.temporal_layer,
        spec.key_index,
    )
    assert descriptor.layer_sync == spec.layer_sync
    assert spec.to_bytes()[descriptor.size :] == spec.rest


@given(media_st.vp8_specs(), st.binary(max_size=20), media_st.u16, media_st.u8)
def test_write_vp8_indices_keeps_widths_and_is_read_back(
    spec: Vp8Spec, before: bytes, picture_id: int, tl0picidx: int
) -> None:
    packet = bytearray(before + spec.to_bytes())
    descriptor = keyframe.parse_vp8_descriptor(spec.to_bytes())
    keyframe.write_vp8_indices(
        packet, len(before), descriptor, picture_id=picture_id, tl0picidx=tl0picidx
    )
    again = keyframe.parse_vp8_descriptor(packet[len(before) :])
    assert again.size == descriptor.size and packet[: len(before)] == before
    if spec.picture_id is not None:
        assert again.picture_id == picture_id & ((1 << spec.picture_id_bits) - 1)
    if spec.tl0picidx is not None:
        assert again.tl0picidx == tl0picidx
    assert packet[len(before) + descriptor.size :] == spec.rest


@given(st.one_of(any_bytes, media_st.h264_payloads, media_st.corrupted(media_st.h264_payloads)))
def test_h264_keyframe_detection_never_raises(payload: bytes) -> None:
    assert keyframe.is_h264_keyframe_start(payload) in (True, False)
    assert keyframe.is_h264_keyframe_start(memoryview(payload)) in (True, False)


# --- numbering, loss and the cache --------------------------------------------------------

# (source, step from the previous sequence number, timestamp): losses, reordering and
# duplicates, over less than half the number space in all so that no number comes round again.
steps_in = st.lists(
    st.tuples(st.integers(0, 2), st.integers(-100, 200), media_st.u32), max_size=150
)


@given(media_st.u16, media_st.u32, st.integers(1, 512), media_st.u16, steps_in)
def test_the_rewriter_keeps_gaps_never_sends_a_number_twice_and_maps_nacks_back(
    first_sequence: int,
    first_timestamp: int,
    window: int,
    start: int,
    steps: list[tuple[int, int, int]],
) -> None:
    numbering = rewriter.SequenceRewriter(
        first_sequence=first_sequence, first_timestamp=first_timestamp, reorder_window=window
    )
    sent: dict[int, int] = {}  # out sequence: source sequence, of the current source
    sequence = start
    base = (0, 0)
    for ssrc, step, timestamp in steps:
        sequence = (sequence + step) & 0xFFFF
        if ssrc != numbering.source:
            out_sequence, _ = numbering.switch(ssrc, sequence, timestamp, timestamp_delta=3000)
            sent, base = {out_sequence: sequence}, (out_sequence, sequence)
            continue
        numbers = numbering.rewrite(ssrc, sequence, timestamp)
        if numbers is None:
            continue
        out_sequence, _ = numbers
        assert out_sequence not in sent, "one outgoing number used twice"
        assert (out_sequence - base[0]) & 0xFFFF == (sequence - base[1]) & 0xFFFF, "gap lost"
        sent[out_sequence] = sequence
    for out_sequence, source_sequence in sent.items():
        assert numbering.source_sequence(out_sequence) == source_sequence


@given(st.lists(st.tuples(st.integers(0, 2), media_st.u16, media_st.u32), max_size=100))
def test_the_rewriter_takes_any_numbers(packets: list[tuple[int, int, int]]) -> None:
    numbering = rewriter.SequenceRewriter()
    for ssrc, sequence, timestamp in packets:
        if ssrc != numbering.source:
            numbering.switch(ssrc, sequence, timestamp, timestamp_delta=sequence)
        numbers = numbering.rewrite(ssrc, sequence, timestamp)
        assert numbers is None or (0 <= numbers[0] <= 0xFFFF and 0 <= numbers[1] <= 0xFFFFFFFF)
        back = numbering.source_sequence(sequence)
        assert back is None or 0 <= back <= 0xFFFF


@given(st.lists(st.tuples(media_st.u16, st.floats(0, 0.5)), max_size=200))
def test_the_loss_detector_asks_only_for_numbers_it_has_not_seen_since(
    arrivals: list[tuple[int, float]],
) -> None:
    detector = loss.LossDetector()
    now = 0.0
    for sequence, elapsed in arrivals:
        now += elapsed
        missing = detector.on_packet(sequence, now)
        assert sequence not in missing and len(missing) < 512
        assert all(0 <= m <= 0xFFFF for m in missing)
        again = detector.due(now)
        assert sequence not in again
        assert detector.pending <= loss.MAX_PENDING
    assert detector.received == len(arrivals)
    detector.due(now + 10)
    detector.due(now + 20)
    assert detector.pending == 0


@given(st.lists(st.tuples(st.integers(1, 520), st.floats(0, 0.05)), max_size=300))
def test_the_loss_detector_awaits_a_bounded_number_of_numbers_however_they_jump(
    steps: list[tuple[int, float]],
) -> None:
    # Jumps of just under 512 are loss, not a restart: each leaves hundreds of numbers missing.
    detector = loss.LossDetector()
    sequence, now = 0, 0.0
    for step, elapsed in steps:
        sequence, now = (sequence + step) & 0xFFFF, now + elapsed
        missing = detector.on_packet(sequence, now)
        assert len(missing) < 512 and detector.pending <= loss.MAX_PENDING
        assert len(detector.due(now)) <= loss.MAX_PENDING
    assert detector.lost <= detector.gaps


@given(st.integers(1, 600), st.lists(media_st.u16, max_size=300))
def test_the_cache_returns_a_packet_only_under_its_own_number(
    capacity: int, sequences: list[int]
) -> None:
    packets = cache.PacketCache(capacity)
    for sequence in sequences:
        packets.put(sequence, sequence.to_bytes(2, "big"))
    for sequence in {*sequences, 0, 0xFFFF}:
        got = packets.get(sequence)
        assert got is None or got == sequence.to_bytes(2, "big")


@given(st.integers(1, 600), st.lists(media_st.u16, max_size=300))
def test_the_cache_keeps_the_newest_packet(capacity: int, sequences: list[int]) -> None:
    packets = cache.PacketCache(capacity)
    highest: int | None = None
    for sequence in sequences:
        packets.put(sequence, sequence.to_bytes(2, "big"))
        if highest is None or (sequence - highest) & 0xFFFF < 0x8000:
            highest = sequence
            assert packets.get(sequence) == sequence.to_bytes(2, "big")
