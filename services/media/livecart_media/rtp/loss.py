"""Upstream loss detection: which sequence numbers to NACK (RFC 4585 §6.2.1), and when.

A publisher on a lossy 4G or WiFi link loses packets on the way to ingest. Ingest takes
its RTP raw (aiortc's receiver, which would NACK, never sees it), so this tracks the gaps
itself: a missing number is asked for at once, then again every `retry_s` up to
`attempts` times, and forgotten when it arrives or is older than `give_up_s`. It also
counts what arrived and what was lost for the loss-based bitrate estimate.

The numbers come from the publisher, so the work they cause is bounded: at most
`MAX_PENDING` numbers are awaited (the oldest are given up first), else jumps of just under
512 would fill all 65,536 numbers within a few hundred packets and make every `due` sweep
them and every NACK name them all.
"""

from __future__ import annotations

from itertools import islice

_SEQ_MASK = 0xFFFF
_MAX_GAP = 512  # a bigger jump is a restart of the numbering, not loss
MAX_PENDING = 1024
"""The most missing numbers awaited at once: about 2 s of 4 Mbps video, all of it lost."""


class LossDetector:
    """The gaps in one stream's sequence numbers (one SSRC; `reset` when it changes)."""

    __slots__ = (
        "_attempts",
        "_give_up",
        "_highest",
        "_pending",
        "_retry",
        "gaps",
        "lost",
        "received",
    )

    def __init__(self, *, retry_s: float = 0.1, attempts: int = 3, give_up_s: float = 1.0) -> None:
        self._retry = retry_s
        self._attempts = attempts
        self._give_up = give_up_s
        self._highest: int | None = None
        # sequence -> (first noticed, last asked, times asked)
        self._pending: dict[int, tuple[float, float, int]] = {}
        self.received = 0
        self.gaps = 0
        """Numbers found missing on arrival of a later one (loss before any recovery)."""
        self.lost = 0
        """Numbers given up on, never received."""

    def reset(self) -> None:
        self._highest = None
        self._pending.clear()

    def on_packet(self, sequence: int, now: float) -> list[int]:
        """Note an arrival; returns the numbers that just went missing (NACK them now)."""
        self.received += 1
        if self._highest is None:
            self._highest = sequence
            return []
        ahead = (sequence - self._highest) & _SEQ_MASK
        if ahead == 0:
            return []
        if ahead >= 0x8000:  # late or retransmitted
            self._pending.pop(sequence, None)
            return []
        self._highest = sequence
        if ahead > _MAX_GAP:
            self._pending.clear()
            return []
        missing = [(sequence - back) & _SEQ_MASK for back in range(ahead - 1, 0, -1)]
        for lost in missing:
            self._pending[lost] = (now, now, 1)
        self.gaps += len(missing)
        overflow = len(self._pending) - MAX_PENDING
        if overflow > 0:  # oldest first: a dict keeps the order numbers went missing in
            for sequence in list(islice(self._pending, overflow)):
                del self._pending[sequence]
            self.lost += overflow
        return missing

    def due(self, now: float) -> list[int]:
        """The numbers to ask for again now; forgets those past their last chance."""
        again: list[int] = []
        for sequence, (first, asked, times) in list(self._pending.items()):
            if now - first > self._give_up or times >= self._attempts:
                if now - asked >= self._retry:
                    del self._pending[sequence]
                    self.lost += 1
            elif now - asked >= self._retry:
                self._pending[sequence] = (first, now, times + 1)
                again.append(sequence)
        return again

    @property
    def pending(self) -> int:
        return len(self._pending)
