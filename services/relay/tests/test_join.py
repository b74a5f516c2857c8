"""Where a new viewer's video starts: an aiortc publisher sends H.264 (a keyframe is its
parameter sets, then the IDR picture over many packets). A late viewer starts on the cached
GOP as soon as its connection is up; one whose first packet lands at any point of a keyframe
starts on that keyframe at once. Neither asks the publisher for another keyframe."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpsender import RTCRtpSender
from prometheus_client import REGISTRY

from livecart_media import testing, webrtc
from livecart_media.rtp.header import RtpHeader
from livecart_media.testing import until
from livecart_media.whipwhep import RoomKey
from livecart_relay.rooms import MediaRoom, SubscriberSession

pytestmark = pytest.mark.timeout(90)

WAITS = "livecart_relay_viewer_keyframe_waits_total"
JoinPoint = Callable[[webrtc.ForwardedStream, RtpHeader, bool], bool]
"""Whether a video packet (stream, header, keyframe start) is where a new viewer joins."""


@pytest.fixture(autouse=True, scope="module")
def loopback_only() -> Iterator[None]:
    with webrtc.pinned_host_addresses(["127.0.0.1"]):
        yield


def keyframe_waits() -> float:
    return REGISTRY.get_sample_value(WAITS) or 0.0


class LateJoinRoom(MediaRoom):
    """The relay's room, holding back a new viewer's video until the packet `join_at`
    picks once its connection is up: the packets before never reach its sender."""

    def __init__(self) -> None:
        super().__init__(RoomKey("shop", "live"), keyframe_interval=0.3)
        self.join_at: JoinPoint | None = None
        self.holding: set[SubscriberSession] = set()

    async def subscribe(
        self, pc: RTCPeerConnection, offer: RTCSessionDescription
    ) -> SubscriberSession:
        session = await super().subscribe(pc, offer)
        if self.join_at is not None:  # no await since it joined: no packet went to it yet
            self.holding.add(session)
        return session

    def deliver(
        self,
        session: SubscriberSession,
        sender: webrtc.RawSender,
        packet: bytes,
        header: RtpHeader,
        start: bool,
    ) -> Awaitable[bool] | None:
        if session in self.holding and sender.stream.kind == "video":
            join_at = self.join_at
            up = sender.transport.state == "connected"
            if not up or join_at is None or not join_at(sender.stream, header, start):
                return None
            self.holding.discard(session)
        return super().deliver(session, sender, packet, header, start)


def h264_publisher() -> testing.Publisher:
    publisher = testing.Publisher()
    for transceiver in publisher.pc.getTransceivers():
        if transceiver.kind == "video":
            codecs = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType == "video/H264"])
    return publisher


async def watch(room: LateJoinRoom, relay_outs: list[RTCPeerConnection]) -> testing.Viewer:
    viewer = testing.Viewer()
    offer = RTCSessionDescription(await viewer.offer(), "offer")
    relay_out = webrtc.peer()
    relay_outs.append(relay_out)
    session = await room.subscribe(relay_out, offer)
    await viewer.pc.setRemoteDescription(RTCSessionDescription(session.answer, "answer"))
    return viewer


class Stage:
    """A publisher on H.264, the relay's room, a first viewer already watching."""

    def __init__(self) -> None:
        self.publisher = h264_publisher()
        self.relay_in = webrtc.peer()
        self.relay_outs: list[RTCPeerConnection] = []
        self.viewers: list[testing.Viewer] = []
        self.room = LateJoinRoom()
        self.tap: webrtc.ReceiveTap | None = None

    async def start(self) -> webrtc.ReceiveTap:
        offer = RTCSessionDescription(await self.publisher.offer(), "offer")
        self.tap = await self.room.publish(self.relay_in, offer)
        await self.publisher.pc.setRemoteDescription(self.relay_in.localDescription)
        assert self.tap.streams["video"].mime == "video/h264"
        first = await self.watch()
        await until(first.has(10), "the first viewer's frames")
        return self.tap

    async def watch(self) -> testing.Viewer:
        viewer = await watch(self.room, self.relay_outs)
        self.viewers.append(viewer)
        return viewer

    async def close(self) -> None:
        for viewer in self.viewers:
            await viewer.close()
        await self.room.close()
        await self.publisher.close()


@pytest.fixture
async def stage() -> AsyncIterator[Stage]:
    stage = Stage()
    try:
        yield stage
    finally:
        await stage.close()


def first_packet(stream: webrtc.ForwardedStream, header: RtpHeader, start: bool) -> bool:
    return start and header.sequence == stream.keyframe_sequence


def picture_after_parameter_sets(
    stream: webrtc.ForwardedStream, header: RtpHeader, start: bool
) -> bool:
    # A start that is not the keyframe's first packet: the IDR slice, its SPS and PPS
    # having gone by in the packet before.
    return start and header.sequence != stream.keyframe_sequence


def inside_the_picture(stream: webrtc.ForwardedStream, header: RtpHeader, start: bool) -> bool:
    first = stream.keyframe_sequence
    return (
        first is not None
        and header.timestamp == stream.keyframe_timestamp
        and (header.sequence - first) & 0xFFFF >= 3
    )


@pytest.mark.parametrize(
    "join_at",
    [first_packet, picture_after_parameter_sets, inside_the_picture],
    ids=["on-its-first-packet", "on-the-picture-after-sps-pps", "inside-the-picture"],
)
async def test_a_viewer_joining_during_a_keyframe_starts_on_it(
    stage: Stage, join_at: JoinPoint, caplog: pytest.LogCaptureFixture
) -> None:
    tap = await stage.start()
    # Nothing cached to replay when its connection comes up (as when the GOP is longer
    # than a replay may be): the chosen packet is the first its sender sees.
    tap.streams["video"].keyframe_sequence = None
    stage.room.join_at = join_at
    late = await stage.watch()
    (session,) = stage.room.holding
    sender = session.subscriber.senders["video"]
    await until(lambda: sender.transport.state == "connected", "the late viewer's DTLS")
    waits = keyframe_waits()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        # The keyframe it joins in (aiortc's encoder makes one only when asked).
        assert await tap.request_keyframe()
        requests = tap.keyframe_requests
        await until(late.has(5), "the late viewer's frames", timeout_s=10)
    assert not stage.room.holding
    assert tap.keyframe_requests == requests  # it started on that keyframe, not a new one
    assert keyframe_waits() == waits
    assert "failed to decode" not in caplog.text


async def test_joins_at_random_points_of_the_gop_start_on_the_cached_keyframe(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    tap = await stage.start()
    assert await tap.request_keyframe()  # one GOP from here on: no more keyframes come
    requests, waits = tap.keyframe_requests, keyframe_waits()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for pause in (0.05, 0.3, 0.7):
            await asyncio.sleep(pause)
            late = await stage.watch()
            await until(late.has(3), "a late viewer's frames", timeout_s=10)
            assert stage.room.sessions  # still watching
    assert tap.keyframe_requests == requests
    assert keyframe_waits() == waits
    assert "failed to decode" not in caplog.text


async def test_a_viewer_with_no_keyframe_to_start_on_is_counted_as_waiting_once(
    stage: Stage,
) -> None:
    tap = await stage.start()
    tap.streams["video"].keyframe_sequence = None  # as when it has left the cache
    waits = keyframe_waits()
    late = await stage.watch()
    await until(late.has(5), "the late viewer's frames")  # on the keyframe its PLI got
    assert keyframe_waits() == waits + 1


async def test_a_viewer_gets_the_cached_gop_as_soon_as_its_connection_is_up(
    stage: Stage,
) -> None:
    tap = await stage.start()
    stage.room.join_at = lambda stream, header, start: False  # no live video reaches it
    requests, waits = tap.keyframe_requests, keyframe_waits()
    late = await stage.watch()
    (session,) = stage.room.holding
    sender = session.subscriber.senders["video"]
    # Not at the source's next packet (a frame interval away, or longer in a lull).
    await until(late.has(1), "the late viewer's first frame, from the cache alone")
    assert sender.replayed > 0
    assert tap.keyframe_requests == requests and keyframe_waits() == waits
