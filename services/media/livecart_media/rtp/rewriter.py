"""Per-subscriber numbering: one continuous RTP stream out of a source that starts and switches.

A subscriber joins mid-stream, and a publisher that reconnects comes back with a new SSRC and
new random sequence and timestamp bases (RFC 3550 §5.1). `SequenceRewriter` maps each source
packet to the subscriber's own sequence numbers (RFC 3550 §A.1's 16-bit wrap arithmetic) and
timestamps, so the subscriber sees no gap at a switch and keeps NACKing real losses only.
`Vp8IndexRewriter` does the same for the VP8 picture id and TL0PICIDX (RFC 7741 §4.2).
"""

from __future__ import annotations

_SEQ_MASK = 0xFFFF
_TS_MASK = 0xFFFFFFFF


class SequenceRewriter:
    """Rewrites (sequence, timestamp) of one source at a time into one outgoing numbering.

    The forwarder calls `switch` with the packet it starts a source on (a keyframe start),
    then `rewrite` for every later packet. Gaps in the source stay gaps in the output, so
    the subscriber NACKs what was really lost and `source_sequence` maps those NACKs back.
    """

    __slots__ = (
        "_base_in",
        "_highest_in",
        "_highest_out_ts",
        "_seen",
        "_seq_offset",
        "_source",
        "_started",
        "_ts_offset",
        "_window",
        "_window_mask",
    )

    def __init__(
        self, *, first_sequence: int = 0, first_timestamp: int = 0, reorder_window: int = 128
    ) -> None:
        """`first_sequence`/`first_timestamp` number the first packet out (pass random ones).

        A late packet up to `reorder_window` - 1 sequence numbers behind the newest one is
        still forwarded; older ones are dropped because duplicates can no longer be told apart.
        """
        if not 1 <= reorder_window <= 0x8000:
            raise ValueError(f"reorder_window must be in 1..32768, not {reorder_window}")
        self._window = reorder_window
        self._window_mask = (1 << reorder_window) - 1
        self._source: int | None = None
        self._started = False
        # Extended (unwrapped) source sequence numbers of the switch packet and the newest one.
        self._base_in = 0
        self._highest_in = 0
        self._seen = 0  # bit i set: source packet _highest_in - i was forwarded
        self._seq_offset = first_sequence & _SEQ_MASK
        self._ts_offset = first_timestamp & _TS_MASK
        self._highest_out_ts = first_timestamp & _TS_MASK

    @property
    def source(self) -> int | None:
        """The SSRC being forwarded, or None before the first switch."""
        return self._source

    @property
    def highest_sequence(self) -> int:
        """The newest sequence number sent out (the first one less one before any packet)."""
        return (self._highest_in + self._seq_offset - (0 if self._started else 1)) & _SEQ_MASK

    @property
    def highest_timestamp(self) -> int:
        """The timestamp sent with the newest sequence number."""
        return self._highest_out_ts

    def switch(
        self, ssrc: int, sequence: int, timestamp: int, *, timestamp_delta: int
    ) -> tuple[int, int]:
        """Start forwarding source `ssrc` at this packet; return its (sequence, timestamp) out.

        The packet is numbered right after the newest one sent, its timestamp is the newest
        one sent plus `timestamp_delta` (in clock-rate units: e.g. the wall-clock time since
        that packet times the clock rate). The first switch uses the constructor's numbers.
        Earlier packets of the new source and any packet of another source are then dropped.
        """
        if self._started:
            out_sequence = (self.highest_sequence + 1) & _SEQ_MASK
            out_timestamp = (self._highest_out_ts + timestamp_delta) & _TS_MASK
        else:
            out_sequence, out_timestamp = self._seq_offset, self._ts_offset
            self._started = True
        self._source = ssrc
        self._base_in = self._highest_in = sequence
        self._seen = 1
        self._seq_offset = (out_sequence - sequence) & _SEQ_MASK
        self._ts_offset = (out_timestamp - timestamp) & _TS_MASK
        self._highest_out_ts = out_timestamp
        return out_sequence, out_timestamp

    def rewrite(self, ssrc: int, sequence: int, timestamp: int) -> tuple[int, int] | None:
        """The (sequence, timestamp) to send this packet with, or None to drop it.

        Dropped: another source's packets, duplicates, packets from before the switch, and
        packets `reorder_window` or more behind the newest.
        """
        if ssrc != self._source:
            return None
        ahead = (sequence - self._highest_in) & _SEQ_MASK
        if ahead == 0:
            return None
        out_timestamp = (timestamp + self._ts_offset) & _TS_MASK
        if ahead < 0x8000:
            self._highest_in += ahead
            self._seen = ((self._seen << ahead) | 1) & self._window_mask
            self._highest_out_ts = out_timestamp
        else:
            behind = 0x10000 - ahead
            if behind >= self._window or self._highest_in - behind < self._base_in:
                return None
            bit = 1 << behind
            if self._seen & bit:
                return None
            self._seen |= bit
        return (sequence + self._seq_offset) & _SEQ_MASK, out_timestamp

    def source_sequence(self, sequence: int) -> int | None:
        """The source sequence number behind outgoing `sequence` (for a NACK), or None.

        None for numbers from before the switch or not sent yet. How far back a NACK may
        reach is the packet cache's to say, not `reorder_window`: at 100 ms RTT a NACK
        arrives well over 128 packets late after a burst (a replayed GOP, a keyframe).
        """
        if not self._started:
            return None
        behind = (self.highest_sequence - sequence) & _SEQ_MASK
        if behind >= 0x8000 or self._highest_in - behind < self._base_in:
            return None
        return (sequence - self._seq_offset) & _SEQ_MASK


class Vp8IndexRewriter:
    """Keeps the VP8 picture id and TL0PICIDX continuous across source switches.

    Picture ids are 7- or 15-bit and TL0PICIDX 8-bit counters; after a switch the output
    continues from the last values sent.
    """

    __slots__ = ("_last_picture_id", "_last_tl0", "_picture_offset", "_tl0_offset")

    def __init__(self, *, first_picture_id: int = 0, first_tl0picidx: int = 0) -> None:
        """The first source's first picture is numbered `first_picture_id`/`first_tl0picidx`."""
        self._picture_offset = 0
        self._tl0_offset = 0
        self._last_picture_id = (first_picture_id - 1) & 0x7FFF
        self._last_tl0 = (first_tl0picidx - 1) & 0xFF

    def switch(self, picture_id: int | None, tl0picidx: int | None) -> None:
        """The next picture is the first of a new source (its keyframe), with these fields."""
        if picture_id is not None:
            self._picture_offset = (self._last_picture_id + 1 - picture_id) & 0x7FFF
        if tl0picidx is not None:
            self._tl0_offset = (self._last_tl0 + 1 - tl0picidx) & 0xFF

    def rewrite(
        self, picture_id: int | None, tl0picidx: int | None, *, picture_id_bits: int = 15
    ) -> tuple[int | None, int | None]:
        """The values to send for this packet's fields (None stays None).

        `picture_id_bits` is the width of the packet's picture id field (7 or 15, the M bit):
        a 7-bit field wraps at 128, so the output is continuous modulo 128 there.
        """
        out_picture = out_tl0 = None
        if picture_id is not None:
            mask = (1 << picture_id_bits) - 1
            out_picture = (picture_id + self._picture_offset) & mask
            if ((out_picture - self._last_picture_id) & mask) <= mask >> 1:
                self._last_picture_id = out_picture
        if tl0picidx is not None:
            out_tl0 = (tl0picidx + self._tl0_offset) & 0xFF
            if ((out_tl0 - self._last_tl0) & 0xFF) < 0x80:
                self._last_tl0 = out_tl0
        return out_picture, out_tl0
