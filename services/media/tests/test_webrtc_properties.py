"""Properties of the WebRTC entry points for network bytes, on real negotiated aiortc peers.

- The publisher's tap (`ReceiveTap.handle_rtp`, and the RTCP handler it installs in front of
  aiortc's) and a subscriber's RTCP handler: any decrypted packet is taken or counted as
  dropped, and nothing escapes (aiortc ends the DTLS transport on any exception).
- SDP offers: `negotiate` turns whatever text arrives into an answer, InvalidArgument (400)
  or UnsupportedCodecs (406), never another exception.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from hypothesis import given, settings
from hypothesis import strategies as st

from livecart_core.errors import InvalidArgument
from livecart_media import strategies as media_st
from livecart_media import webrtc
from livecart_media.errors import UnsupportedCodecs
from livecart_media.rtp import rtcp
from livecart_media.rtp.errors import MalformedPacket
from livecart_media.rtp.header import RtpHeader
from livecart_media.strategies import RtpSpec
from livecart_media.testing import Publisher, Viewer

LOOPBACK = webrtc.IceGathering(["127.0.0.1"])
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


async def drop(
    stream: webrtc.ForwardedStream, packet: bytes, header: RtpHeader, start: bool
) -> None:
    return None


async def ignore(sender: webrtc.RawSender) -> None:
    return None


class Peers:
    """A publisher's offer answered by a tap, and a viewer's answered by a subscriber."""

    def __init__(self, runner: asyncio.Runner) -> None:
        self.runner = runner
        self.pcs: list[RTCPeerConnection] = []
        self.publisher, self.viewer = Publisher(), Viewer()
        self.tap, self.subscriber = runner.run(self._answer())

    async def _answer(self) -> tuple[webrtc.ReceiveTap, webrtc.Subscriber]:
        async with LOOPBACK():
            offer = RTCSessionDescription(await self.publisher.offer(), "offer")
            relay_in = self._peer()
            tap = await webrtc.answer_publisher(relay_in, offer, drop)
            viewing = RTCSessionDescription(await self.viewer.offer(), "offer")
            subscriber = await webrtc.answer_subscriber(self._peer(), viewing, tap.streams, ignore)
        return tap, subscriber

    def _peer(self) -> RTCPeerConnection:
        pc = webrtc.peer()
        self.pcs.append(pc)
        return pc

    @property
    def payload_types(self) -> list[int]:
        """Every payload type the tap's answer names (media and RTX)."""
        sdp = self.pcs[0].localDescription.sdp
        return sorted({int(pt) for pt in re.findall(r"a=rtpmap:(\d+) ", sdp)})

    def close(self) -> None:
        for pc in [*self.pcs, self.publisher.pc, self.viewer.pc]:
            self.runner.run(pc.close())


@pytest.fixture(scope="module")
def peers() -> Iterator[Peers]:
    with asyncio.Runner() as runner:
        peers = Peers(runner)
        try:
            yield peers
        finally:
            peers.close()


rtcp_like = st.one_of(
    st.binary(max_size=200),
    media_st.compound_rtcp().map(lambda pair: pair[1]),
    media_st.corrupted(media_st.compound_rtcp().map(lambda pair: pair[1])),
)


def test_the_tap_takes_or_counts_every_rtp_packet_and_never_raises(peers: Peers) -> None:
    tap = peers.tap
    ours = media_st.rtp_specs(payload_types=st.sampled_from(peers.payload_types))
    # The publisher's SSRCs, so that RTX has a stream to unwrap into.
    packets = st.one_of(
        st.binary(max_size=200),
        ours.map(RtpSpec.to_bytes),
        media_st.corrupted(ours.map(RtpSpec.to_bytes)),
    )

    @settings(max_examples=300)
    @given(packets)
    def check(data: bytes) -> None:
        handled = tap.received + tap.dropped
        peers.runner.run(tap.handle_rtp(data))
        assert tap.received + tap.dropped == handled + 1

    check()
    assert tap.received > 0 and tap.dropped > 0


def test_rtcp_from_the_publisher_never_escapes_into_aiortc(peers: Peers) -> None:
    # What the DTLS transport calls: the tap's handler, then aiortc's own.
    transport = peers.pcs[0].getTransceivers()[0].receiver.transport

    @settings(max_examples=200)
    @given(rtcp_like)
    def check(data: bytes) -> None:
        dropped = peers.tap.dropped
        peers.runner.run(transport._handle_rtcp_data(data))
        try:
            rtcp.parse(data)
        except MalformedPacket:
            assert peers.tap.dropped == dropped + 1
        else:
            assert peers.tap.dropped == dropped

    check()


def test_rtcp_from_a_subscriber_is_acted_on_or_counted_and_never_escapes(peers: Peers) -> None:
    subscriber = peers.subscriber
    transport = next(iter(subscriber.senders.values())).transport
    ssrcs = [sender.ssrc for sender in subscriber.senders.values()]
    about_ours = st.builds(
        lambda kind, ssrc, lost: [
            rtcp.build_pli(1, ssrc),
            rtcp.build_nack(1, ssrc, lost),
            rtcp.build_fir(1, ssrc, 3),
            rtcp.build_remb(1, 300_000, [ssrc]),
        ][kind],
        st.integers(0, 3),
        st.sampled_from(ssrcs),
        st.lists(media_st.u16, min_size=1, max_size=20),
    )

    @settings(max_examples=200)
    @given(st.one_of(rtcp_like, about_ours, media_st.corrupted(about_ours)))
    def check(data: bytes) -> None:
        malformed = subscriber.malformed_rtcp
        peers.runner.run(transport._handle_rtcp_data(data))
        try:
            rtcp.parse(data)
        except MalformedPacket:
            assert subscriber.malformed_rtcp == malformed + 1
        else:
            assert subscriber.malformed_rtcp == malformed

    check()


# --- SDP ----------------------------------------------------------------------------------


@st.composite
def damaged_sdp(draw: st.DrawFn, offer: str) -> str:
    """`offer` with lines dropped, repeated, cut, swapped or given other values."""
    lines = offer.split("\r\n")
    noise = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30)
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["drop", "repeat", "cut", "value", "insert", "swap"]))
        if how == "drop" and len(lines) > 1:
            del lines[at]
        elif how == "repeat":
            lines.insert(at, lines[at])
        elif how == "cut":
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
        elif how == "value":
            kind, _, value = lines[at].partition("=")
            fields = value.split(" ")
            fields[draw(st.integers(0, len(fields) - 1))] = draw(noise)
            lines[at] = f"{kind}={' '.join(fields)}"
        elif how == "insert":
            prefix = draw(st.sampled_from(["a=", "m=", "c=", "b=", "a=rtpmap:", "a=fmtp:", ""]))
            lines.insert(at, prefix + draw(noise))
        else:
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
    return "\r\n".join(lines)


def test_any_offer_text_gets_an_answer_or_a_400_or_406() -> None:
    with asyncio.Runner() as runner:
        publisher, viewer = Publisher(), Viewer()

        async def offers() -> list[str]:
            async with LOOPBACK():
                return [await publisher.offer(), await viewer.offer()]

        valid = runner.run(offers())

        async def answer(sdp: str, as_publisher: bool) -> None:
            pc = webrtc.peer()
            offer = RTCSessionDescription(sdp, "offer")
            try:
                async with LOOPBACK():
                    if as_publisher:
                        await webrtc.negotiate(webrtc.answer_publisher(pc, offer, drop))
                    else:
                        stream = webrtc.ForwardedStream("video", VP8)
                        answering = webrtc.answer_subscriber(pc, offer, {"video": stream}, ignore)
                        await webrtc.negotiate(answering)
            except (InvalidArgument, UnsupportedCodecs):
                pass
            finally:
                await pc.close()

        texts = st.one_of(
            st.text(max_size=200),
            st.sampled_from(valid).flatmap(damaged_sdp),
        )

        @settings(max_examples=150)
        @given(texts, st.booleans())
        def check(sdp: str, as_publisher: bool) -> None:
            runner.run(answer(sdp, as_publisher))

        try:
            check()
        finally:
            runner.run(publisher.close())
            runner.run(viewer.close())


def damage(offer: str, case: str) -> str:
    if case == "fmtp of a payload type no rtpmap names":
        return offer.replace("a=rtpmap:", "a=fmtp:55 apt=54\r\na=rtpmap:", 1)
    if case == "no DTLS setup":
        return re.sub(r"a=setup:\w+\r\n", "", offer)
    if case == "BUNDLE of a missing mid":
        return offer.replace("a=group:BUNDLE 0", "a=group:BUNDLE 7")
    if case == "video in AV1 only":
        return re.sub(r"a=rtpmap:(\d+) (VP8|H264|rtx)/90000", r"a=rtpmap:\1 AV1/90000", offer)
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "refusal"),
    [
        ("fmtp of a payload type no rtpmap names", InvalidArgument),
        ("no DTLS setup", InvalidArgument),
        ("BUNDLE of a missing mid", InvalidArgument),
        ("video in AV1 only", UnsupportedCodecs),
    ],
)
async def test_offers_aiortc_cannot_apply_are_refused_and_the_peer_still_closes(
    case: str, refusal: type[Exception]
) -> None:
    publisher = Publisher()
    try:
        async with LOOPBACK():
            sdp = damage(await publisher.offer(), case)
        for answering in ("publisher", "subscriber"):
            pc = webrtc.peer()
            offer = RTCSessionDescription(sdp, "offer")
            stream = webrtc.ForwardedStream("video", VP8)
            try:
                with pytest.raises(refusal):
                    async with LOOPBACK():
                        if answering == "publisher":
                            await webrtc.negotiate(webrtc.answer_publisher(pc, offer, drop))
                        else:
                            subscribing = webrtc.answer_subscriber(
                                pc, offer, {"video": stream}, ignore
                            )
                            await webrtc.negotiate(subscribing)
            finally:
                await pc.close()  # what ingest and the relay do after a refusal
    finally:
        await publisher.close()
