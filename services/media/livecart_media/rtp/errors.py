"""The one error type the RTP/RTCP building blocks raise for bytes they refuse."""

from __future__ import annotations


class MalformedPacket(ValueError):
    """Bytes that are not a well-formed RTP or RTCP packet; the message says what is wrong."""
