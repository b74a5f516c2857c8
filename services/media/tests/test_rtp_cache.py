"""The NACK packet cache across wraps, gaps and late packets; the keyframe-request limiter."""

from __future__ import annotations

import pytest

from livecart_media.rtp.cache import KeyframeRequests, PacketCache


def packet(sequence: int) -> bytes:
    return sequence.to_bytes(2, "big") * 3


def test_get_returns_what_was_put() -> None:
    cache = PacketCache(capacity=8)
    for sequence in (10, 11, 12):
        cache.put(sequence, packet(sequence))
    assert [cache.get(s) for s in (10, 11, 12)] == [packet(10), packet(11), packet(12)]


def test_never_seen_and_not_yet_sent_sequences_are_none() -> None:
    cache = PacketCache(capacity=8)
    assert cache.get(0) is None
    cache.put(10, packet(10))
    cache.put(12, packet(12))
    assert cache.get(11) is None
    assert cache.get(13) is None
    assert cache.get(9) is None


def test_packets_older_than_the_capacity_are_gone() -> None:
    cache = PacketCache(capacity=4)
    for sequence in range(100, 110):
        cache.put(sequence, packet(sequence))
    assert cache.get(105) is None
    assert [cache.get(s) for s in range(106, 110)] == [packet(s) for s in range(106, 110)]


def test_lookups_work_across_the_16_bit_wrap() -> None:
    cache = PacketCache(capacity=16)
    sequences = [(65_530 + i) & 0xFFFF for i in range(12)]
    for sequence in sequences:
        cache.put(sequence, packet(sequence))
    assert [cache.get(s) for s in sequences] == [packet(s) for s in sequences]


def test_a_slot_left_from_a_previous_wrap_is_not_returned() -> None:
    cache = PacketCache(capacity=16)
    cache.put(3, packet(3))
    # Jump ahead in steps that miss 3's slot until 5 arrives one cycle (65_538) later: 3 is
    # now 2 behind the newest and its slot still holds the packet from the previous cycle.
    for step in range(1, 16):
        cache.put((3 + 4097 * step) & 0xFFFF, b"filler")
    cache.put(5, packet(5))
    assert cache.get(5) == packet(5)
    assert cache.get(3) is None


def test_late_packets_within_capacity_are_kept_and_older_ones_are_not() -> None:
    cache = PacketCache(capacity=8)
    cache.put(100, packet(100))
    cache.put(110, packet(110))
    cache.put(105, packet(105))
    cache.put(102, packet(102))
    assert cache.get(105) == packet(105)
    assert cache.get(102) is None
    assert cache.get(110) == packet(110)


def test_clear_forgets_everything() -> None:
    cache = PacketCache(capacity=8)
    cache.put(1, packet(1))
    cache.clear()
    assert cache.get(1) is None
    cache.put(40_000, packet(40_000))
    assert cache.get(40_000) == packet(40_000)
    assert cache.get(1) is None


def test_a_long_stream_keeps_exactly_the_last_capacity_packets() -> None:
    cache = PacketCache(capacity=512)
    for i in range(200_000):
        cache.put(i & 0xFFFF, packet(i & 0xFFFF))
    newest = (200_000 - 1) & 0xFFFF
    assert all(cache.get((newest - back) & 0xFFFF) is not None for back in range(512))
    assert cache.get((newest - 512) & 0xFFFF) is None


@pytest.mark.parametrize("capacity", [0, 0x8001])
def test_capacity_must_fit_half_the_sequence_space(capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        PacketCache(capacity)


def test_keyframe_requests_forward_one_per_interval_per_stream() -> None:
    requests = KeyframeRequests(interval=0.5)
    assert requests.should_forward(1, 10.0)
    assert not requests.should_forward(1, 10.1)
    assert not requests.should_forward(1, 10.49)
    assert requests.should_forward(2, 10.2)
    assert requests.should_forward(1, 10.5)
    assert not requests.should_forward(1, 10.9)
    assert requests.should_forward(1, 11.0)


def test_keyframe_requests_for_a_forgotten_stream_start_afresh() -> None:
    requests = KeyframeRequests(interval=1.0)
    assert requests.should_forward("room-1/video", 5.0)
    requests.forget("room-1/video")
    assert requests.should_forward("room-1/video", 5.1)
    requests.forget("never-seen")
