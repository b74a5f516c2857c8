"""RTP building blocks for the relay's forwarding path: pure functions and small state
machines over bytes, no sockets and no aiortc. Use them by module
(`header.parse(packet)`, `rtcp.build_nack(...)`):

- `header`: parse the RTP header, patch SSRC/PT/sequence/timestamp, header extensions.
- `rewriter`: per-subscriber sequence/timestamp (and VP8 picture id) continuity.
- `keyframe`: where VP8 and H.264 decoders can start; the VP8 payload descriptor.
- `rtcp`: compound RTCP in, NACK/PLI/FIR/REMB out.
- `cache`: recent packets for NACK answers; the upstream keyframe-request limiter.
- `errors`: `MalformedPacket`, raised for bytes that are not what they claim.

The contract for bytes off the network: a parser (`header.parse`, `header.find_extension`,
`rtcp.parse`, `keyframe.parse_vp8_descriptor`) returns what the bytes say or raises
`MalformedPacket`, never another exception; the predicates (`rtcp.is_rtcp`,
`keyframe.is_*_keyframe_start`) never raise. tests/test_rtp_properties.py holds every one
to it with Hypothesis (strategies in `livecart_media.strategies`).
"""
