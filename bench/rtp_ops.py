"""Per-call cost of the relay's RTP building blocks (livecart_media.rtp), in microseconds.

Pure CPU, no sockets: each operation runs in a tight loop on a 1200-byte VP8 packet (or a
NACK of 10 losses) and the best of five rounds is printed.

    uv run python bench/rtp_ops.py [--calls 100000]

Prints `rtp_parse_us`, `rtp_rewrite_us` (copy and patch), `rtp_patch_us` (in place),
`sequence_rewrite_us`, `vp8_keyframe_check_us`, `rtcp_nack_build_us`, `rtcp_nack_parse_us`,
`cache_get_us`, `cache_put_us`, and `forward_us_per_subscriber` (number and patch one
subscriber's copy of an already parsed packet: the relay's per-subscriber step before SRTP).
"""

from __future__ import annotations

import argparse
import struct
import time
from collections.abc import Callable

from livecart_media.rtp import header, rtcp
from livecart_media.rtp.cache import PacketCache
from livecart_media.rtp.keyframe import is_vp8_keyframe_start
from livecart_media.rtp.rewriter import SequenceRewriter


def per_call_us(calls: int, operation: Callable[[int], object]) -> float:
    best = float("inf")
    for round_ in range(5):  # i keeps counting across rounds: sequence numbers keep advancing
        started = time.perf_counter()
        for i in range(round_ * calls, (round_ + 1) * calls):
            operation(i)
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    calls = parser.parse_args().calls

    extension = struct.pack("!HH", header.ONE_BYTE_PROFILE, 1) + bytes([0x22, 1, 2, 3])
    vp8 = bytes([0x90, 0x80, 0x80 | 0x12, 0x34, 0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A])
    packet = struct.pack("!BBHII", 0x90, 96, 1000, 90_000, 0x1234) + extension + vp8
    packet += bytes(1200 - len(packet))
    parsed = header.parse(packet)
    payload = memoryview(packet)[parsed.payload_offset : parsed.payload_end]
    template = bytearray(packet)
    nack = rtcp.build_nack(1, 2, range(100, 120, 2))
    rewriter = SequenceRewriter()
    rewriter.switch(0x1234, 0, 0, timestamp_delta=0)
    cache = PacketCache(512)
    for sequence in range(512):
        cache.put(sequence, packet)

    def forward(i: int) -> None:
        rewritten = rewriter.rewrite(0x1234, (i + 1) & 0xFFFF, 90_000)
        if rewritten is not None:
            header.patch(
                template,
                ssrc=0xABCD,
                payload_type=100,
                sequence=rewritten[0],
                timestamp=rewritten[1],
            )

    figures = {
        "rtp_parse_us": lambda i: header.parse(packet),
        "rtp_rewrite_us": lambda i: header.rewrite(
            packet, ssrc=0xABCD, payload_type=100, sequence=i & 0xFFFF, timestamp=i
        ),
        "rtp_patch_us": lambda i: header.patch(
            template, ssrc=0xABCD, payload_type=100, sequence=i & 0xFFFF, timestamp=i
        ),
        "sequence_rewrite_us": lambda i: rewriter.rewrite(0x1234, i & 0xFFFF, 90_000),
        "vp8_keyframe_check_us": lambda i: is_vp8_keyframe_start(payload),
        "rtcp_nack_build_us": lambda i: rtcp.build_nack(
            1, 2, range(i & 0xFFFF, (i & 0xFFFF) + 20, 2)
        ),
        "rtcp_nack_parse_us": lambda i: rtcp.parse(nack),
        "cache_get_us": lambda i: cache.get(i & 511),
        "cache_put_us": lambda i: cache.put(i & 0xFFFF, packet),
    }
    for name, operation in figures.items():
        print(f"{name}={per_call_us(calls, operation):.2f} us", flush=True)
    rewriter.switch(0x1234, 0, 0, timestamp_delta=0)
    print(f"forward_us_per_subscriber={per_call_us(calls, forward):.2f} us", flush=True)


if __name__ == "__main__":
    main()
