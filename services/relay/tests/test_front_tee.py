"""The front's tee (LIVECART_WORKERS > 1) on real sockets: who owns a room's pipe port.

Like a worker's `PipeIn`, the tee belongs to the first address that sends RTP of a declared
payload type; a stray datagram that reaches the port before ingest does must not take it.
"""

from __future__ import annotations

import asyncio
import socket

from hypothesis import example, given, settings
from hypothesis import strategies as st

from livecart_media import strategies as media_st
from livecart_media.rtp import header as rtp_header
from livecart_media.rtp import rtcp
from livecart_media.rtp.errors import MalformedPacket
from livecart_media.strategies import RtpSpec
from livecart_relay.front import Tee

DECLARED = 96
INGEST_PACKET = RtpSpec(True, DECLARED, 1, 90_000, 42, (), None, (), b"", b"\x10\x00", 0)
payload_types = st.sampled_from([DECLARED, 97, 0])
datagrams = st.one_of(
    st.binary(max_size=100),
    media_st.rtp_specs(payload_types=payload_types).map(RtpSpec.to_bytes),
    media_st.corrupted(media_st.rtp_specs(payload_types=payload_types).map(RtpSpec.to_bytes)),
    media_st.compound_rtcp().map(lambda pair: pair[1]),
)


class Worker(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.put_nowait(data)


def declared_rtp(data: bytes) -> bool:
    if rtcp.is_rtcp(data):
        return False
    try:
        return rtp_header.parse(data).payload_type == DECLARED
    except MalformedPacket:
        return False


async def first_to_arrive(stray: bytes) -> tuple[bytes, Tee]:
    """Send `stray` from a stranger, then ingest's first packet; what reaches the worker first."""
    loop = asyncio.get_running_loop()
    worker_transport, worker = await loop.create_datagram_endpoint(
        Worker, local_addr=("127.0.0.1", 0)
    )
    tee_transport, tee = await loop.create_datagram_endpoint(
        lambda: Tee([DECLARED, 111]), local_addr=("127.0.0.1", 0)
    )
    tee.set_target(0, worker_transport.get_extra_info("sockname"))
    port = tee_transport.get_extra_info("sockname")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ingest,
    ):
        try:
            stranger.sendto(stray, port)
            await asyncio.sleep(0)  # the stranger's datagram is in the tee's socket first
            ingest.sendto(INGEST_PACKET.to_bytes(), port)
            return await asyncio.wait_for(worker.got.get(), 5), tee
        finally:
            tee.close()
            worker_transport.close()


def test_a_stray_datagram_before_ingests_first_packet_does_not_take_the_pipe() -> None:
    with asyncio.Runner() as runner:

        @settings(max_examples=150)
        @given(datagrams)
        @example(b"\x00" * 20)
        @example(rtcp.build_pli(1, 2))
        @example(RtpSpec(False, 97, 1, 1, 7, (), None, (), b"", b"x", 0).to_bytes())
        def check(stray: bytes) -> None:
            first, tee = runner.run(first_to_arrive(stray))
            if declared_rtp(stray):
                assert first == stray  # RTP of a declared type: the stranger got there first
            else:
                assert first == INGEST_PACKET.to_bytes()
                assert tee.dropped == 1

        check()
