"""Per-subscriber sequence/timestamp and VP8 index continuity across joins, switches, wraps."""

from __future__ import annotations

import pytest

from livecart_media.rtp.rewriter import SequenceRewriter, Vp8IndexRewriter

A, B = 0xAAAA0001, 0xBBBB0002


def test_first_packet_gets_the_chosen_numbers_and_the_stream_follows_it() -> None:
    rewriter = SequenceRewriter(first_sequence=500, first_timestamp=7_000)
    assert rewriter.switch(A, 40_000, 123_456, timestamp_delta=999) == (500, 7_000)
    assert rewriter.rewrite(A, 40_001, 123_456) == (501, 7_000)
    assert rewriter.rewrite(A, 40_002, 126_456) == (502, 10_000)
    assert (rewriter.source, rewriter.highest_sequence, rewriter.highest_timestamp) == (
        A,
        502,
        10_000,
    )


def test_a_gap_in_the_source_stays_a_gap_so_the_subscriber_nacks_it() -> None:
    rewriter = SequenceRewriter(first_sequence=10)
    rewriter.switch(A, 100, 0, timestamp_delta=0)
    assert rewriter.rewrite(A, 104, 0) == (14, 0)
    assert rewriter.source_sequence(12) == 102
    assert rewriter.rewrite(A, 102, 0) == (12, 0)


def test_switching_source_continues_sequence_without_a_gap_and_timestamp_by_the_delta() -> None:
    rewriter = SequenceRewriter(first_sequence=65_530, first_timestamp=0xFFFF_F000)
    rewriter.switch(A, 1, 1, timestamp_delta=0)
    for i in range(2, 6):
        rewriter.rewrite(A, i, 1 + 3000 * (i - 1))
    assert (rewriter.highest_sequence, rewriter.highest_timestamp) == (
        65_534,
        0xFFFF_F000 + 12_000 - 0x1_0000_0000,
    )
    # The publisher reconnects: new SSRC, new random bases.
    assert rewriter.switch(B, 31_000, 2_000_000_000, timestamp_delta=3_000) == (65_535, 10_904)
    assert rewriter.rewrite(B, 31_001, 2_000_003_000) == (0, 13_904)
    assert rewriter.rewrite(B, 31_002, 2_000_003_000) == (1, 13_904)


def test_packets_of_the_old_source_are_dropped_after_a_switch() -> None:
    rewriter = SequenceRewriter()
    rewriter.switch(A, 10, 0, timestamp_delta=0)
    rewriter.switch(B, 900, 0, timestamp_delta=3000)
    assert rewriter.rewrite(A, 11, 3000) is None
    assert rewriter.rewrite(B, 901, 3000) == (2, 6000)


def test_nothing_is_forwarded_before_the_first_switch() -> None:
    rewriter = SequenceRewriter()
    assert rewriter.rewrite(A, 1, 1) is None
    assert rewriter.source is None
    assert rewriter.source_sequence(0) is None


def test_packets_from_before_the_switch_point_are_dropped() -> None:
    rewriter = SequenceRewriter()
    rewriter.switch(A, 1000, 0, timestamp_delta=0)
    rewriter.rewrite(A, 1001, 0)
    assert rewriter.rewrite(A, 999, 0) is None
    assert rewriter.source_sequence((0 - 1) & 0xFFFF) is None


def test_duplicates_are_dropped_whether_newest_or_late() -> None:
    rewriter = SequenceRewriter()
    rewriter.switch(A, 1000, 0, timestamp_delta=0)
    assert rewriter.rewrite(A, 1000, 0) is None
    assert rewriter.rewrite(A, 1003, 0) == (3, 0)
    assert rewriter.rewrite(A, 1003, 0) is None
    assert rewriter.rewrite(A, 1001, 0) == (1, 0)
    assert rewriter.rewrite(A, 1001, 0) is None


def test_reordering_within_the_window_maps_late_packets_to_their_own_numbers() -> None:
    rewriter = SequenceRewriter(first_sequence=65_500, reorder_window=64)
    rewriter.switch(A, 65_520, 0, timestamp_delta=0)
    arrival = [65_522, 65_521, 65_535, 3, 0, 65_534, 1, 2, 65_523]
    out = {}
    for sequence in arrival:
        rewritten = rewriter.rewrite(A, sequence, sequence)
        assert rewritten is not None
        out[sequence] = rewritten[0]
    assert all(out[s] == (s - 20) & 0xFFFF for s in arrival)
    assert rewriter.highest_sequence == (3 - 20) & 0xFFFF


def test_a_packet_as_old_as_the_window_is_dropped() -> None:
    rewriter = SequenceRewriter(reorder_window=16)
    rewriter.switch(A, 100, 0, timestamp_delta=0)
    rewriter.rewrite(A, 130, 0)
    assert rewriter.rewrite(A, 114, 0) is None
    assert rewriter.rewrite(A, 115, 0) == (15, 0)
    assert rewriter.source_sequence(14) == 114  # NACKs reach back to the switch point
    assert rewriter.source_sequence(0) == 100
    assert rewriter.source_sequence((0 - 1) & 0xFFFF) is None


def test_a_long_stream_wraps_sequence_and_timestamp_many_times() -> None:
    rewriter = SequenceRewriter(first_sequence=1234, first_timestamp=0xFFFF_0000)
    rewriter.switch(A, 65_000, 0xFFFF_FFFF - 5, timestamp_delta=0)
    sequence, timestamp = 65_000, 0xFFFF_FFFF - 5
    for step in range(1, 200_000):
        sequence = (sequence + 1) & 0xFFFF
        timestamp = (timestamp + 90_000) & 0xFFFF_FFFF
        assert rewriter.rewrite(A, sequence, timestamp) == (
            (1234 + step) & 0xFFFF,
            (0xFFFF_0000 + 90_000 * step) & 0xFFFF_FFFF,
        )


def test_source_sequence_is_none_for_numbers_not_sent_yet() -> None:
    rewriter = SequenceRewriter()
    rewriter.switch(A, 5, 0, timestamp_delta=0)
    rewriter.rewrite(A, 6, 0)
    assert rewriter.source_sequence(1) == 6
    assert rewriter.source_sequence(2) is None


@pytest.mark.parametrize("window", [0, 0x8001])
def test_the_reorder_window_must_fit_half_the_sequence_space(window: int) -> None:
    with pytest.raises(ValueError, match="reorder_window"):
        SequenceRewriter(reorder_window=window)


def test_vp8_indices_continue_across_a_switch() -> None:
    rewriter = Vp8IndexRewriter(first_picture_id=100, first_tl0picidx=250)
    rewriter.switch(20_000, 7)
    assert rewriter.rewrite(20_000, 7) == (100, 250)
    assert rewriter.rewrite(20_001, 7) == (101, 250)
    assert rewriter.rewrite(20_002, 8) == (102, 251)
    rewriter.switch(32_767, 255)
    assert rewriter.rewrite(32_767, 255) == (103, 252)
    assert rewriter.rewrite(0, 0) == (104, 253)


def test_vp8_picture_ids_wrap_at_15_bits_and_7_bits() -> None:
    rewriter = Vp8IndexRewriter(first_picture_id=32_766)
    rewriter.switch(5, None)
    assert rewriter.rewrite(5, None) == (32_766, None)
    assert rewriter.rewrite(7, None) == (0, None)
    rewriter.switch(126, None)
    assert rewriter.rewrite(126, None, picture_id_bits=7) == (1, None)
    assert rewriter.rewrite(127, None, picture_id_bits=7) == (2, None)
    assert rewriter.rewrite(0, None, picture_id_bits=7) == (3, None)
    rewriter.switch(9_000, None)
    assert rewriter.rewrite(9_000, None) == (4, None)


def test_vp8_absent_fields_stay_absent() -> None:
    rewriter = Vp8IndexRewriter()
    rewriter.switch(None, None)
    assert rewriter.rewrite(None, None) == (None, None)
