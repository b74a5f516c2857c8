"""Recent packets of one stream for answering NACKs, and the upstream keyframe-request limiter.

The cache is a ring indexed by RTP sequence number (RFC 3550 §A.1 wrap arithmetic), so a
retransmission (RFC 4585 §6.2.1 generic NACK, or RTX per RFC 4588) is an O(1) lookup. The
limiter keeps PLI/FIR (RFC 4585 §6.3.1, RFC 5104 §4.3.1) from many subscribers down to one
request upstream per interval.
"""

from __future__ import annotations

from collections.abc import Hashable

_SEQ_MASK = 0xFFFF


class PacketCache:
    """The last `capacity` sequence numbers of one stream's packets (one source SSRC).

    Clear it when the source changes: sequence numbers of another SSRC mean other packets.
    """

    __slots__ = ("_capacity", "_highest", "_packets", "_started", "_unwrapped")

    def __init__(self, capacity: int = 512) -> None:
        if not 1 <= capacity <= 0x8000:
            raise ValueError(f"capacity must be in 1..32768, not {capacity}")
        self._capacity = capacity
        self._packets: list[bytes | None] = [None] * capacity
        self._unwrapped = [-1] * capacity  # the extended sequence number held in each slot
        self._highest = 0
        self._started = False

    def clear(self) -> None:
        """Forget every packet (the source changed)."""
        self._packets = [None] * self._capacity
        self._unwrapped = [-1] * self._capacity
        self._started = False

    def put(self, sequence: int, packet: bytes) -> None:
        """Keep `packet` under `sequence`; a packet too old to fit is not kept."""
        if not self._started:
            self._highest = sequence + 0x10000  # room below for late packets
            self._started = True
            extended = self._highest
        else:
            ahead = (sequence - self._highest) & _SEQ_MASK
            if ahead < 0x8000:
                self._highest = extended = self._highest + ahead
            else:
                extended = self._highest - (0x10000 - ahead)
                if self._highest - extended >= self._capacity:
                    return
        slot = extended % self._capacity
        self._unwrapped[slot] = extended
        self._packets[slot] = packet

    @property
    def newest(self) -> int | None:
        """The highest sequence number kept so far (RFC 3550 §A.1 order), None when empty."""
        return self._highest & _SEQ_MASK if self._started else None

    def get(self, sequence: int) -> bytes | None:
        """The packet kept under `sequence`, or None if it is too old or was never seen."""
        if not self._started:
            return None
        behind = (self._highest - sequence) & _SEQ_MASK
        if behind >= self._capacity:
            return None
        extended = self._highest - behind
        slot = extended % self._capacity
        return self._packets[slot] if self._unwrapped[slot] == extended else None


class KeyframeRequests:
    """Decides which keyframe requests go upstream: at most one per stream per interval.

    Subscribers' PLIs and FIRs all arrive here; the first in an interval is forwarded, the
    rest are absorbed because the keyframe it asks for serves them all.
    """

    __slots__ = ("_interval", "_last")

    def __init__(self, interval: float = 0.5) -> None:
        """`interval` in seconds between two requests forwarded for the same stream."""
        self._interval = interval
        self._last: dict[Hashable, float] = {}

    def should_forward(self, stream: Hashable, now: float) -> bool:
        """Whether a request for `stream` arriving at `now` (monotonic seconds) goes upstream."""
        last = self._last.get(stream)
        if last is not None and now - last < self._interval:
            return False
        self._last[stream] = now
        return True

    def forget(self, stream: Hashable) -> None:
        """Drop the state kept for a stream that ended."""
        self._last.pop(stream, None)
