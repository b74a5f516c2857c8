"""Raw RTP forwarding between real aiortc peers on loopback: an aiortc publisher sends VP8
and Opus, the relay taps the RTP without decoding it and writes it to plain aiortc
subscribers, which decode it."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import RTCRtpSender
from av import VideoFrame

from livecart_media import webrtc
from livecart_media.rtp import rtcp
from livecart_media.rtp.header import RtpHeader
from livecart_media.whipwhep import RoomKey
from livecart_relay.rooms import MediaRoom, SubscriberSession

from .conftest import WAIT, until

pytestmark = pytest.mark.timeout(60)

FRAMES = 30
CANDIDATE_PORT = r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+)"


class MovingPicture(VideoStreamTrack):
    """320x240 frames with a bar that moves, so every frame differs."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(320, 240, "yuv420p")
        luma, *chroma = frame.planes
        row = bytearray(luma.line_size)
        x = (self._count * 7) % 300
        row[x : x + 20] = b"\xff" * 20
        luma.update(bytes(row) * luma.height)
        for plane in chroma:
            plane.update(b"\x80" * plane.line_size * plane.height)
        self._count += 1
        frame.pts, frame.time_base = pts, time_base
        return frame


def peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


@pytest.fixture(autouse=True, scope="module")
def loopback_only() -> Iterator[None]:
    with webrtc.pinned_host_addresses(["127.0.0.1"]):
        yield


@dataclass
class Viewer:
    """A plain aiortc subscriber (a WHEP client) that decodes what it gets."""

    pc: RTCPeerConnection
    video_frames: list[tuple[int, int]] = field(default_factory=list)
    audio_frames: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def has_frames(self, video: int, audio: int) -> Callable[[], bool]:
        return lambda: len(self.video_frames) >= video and self.audio_frames >= audio

    async def consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame):
                    self.video_frames.append((frame.width, frame.height))
                else:
                    self.audio_frames += 1
        except MediaStreamError:
            return


class ObservedRoom(MediaRoom):
    """The relay's room, counting the publisher's video packets; the first viewer can be
    made to miss every n-th video packet (`lose_every`)."""

    def __init__(self) -> None:
        super().__init__(RoomKey("shop", "live"), keyframe_interval=0.3)
        self.video_sequences: Counter[int] = Counter()
        self.lose_every = 0

    async def forward(
        self, stream: webrtc.ForwardedStream, packet: bytes, header: RtpHeader, start: bool
    ) -> int:
        if stream.kind == "video":
            self.video_sequences[header.sequence] += 1
        return await super().forward(stream, packet, header, start)

    def deliver(
        self,
        session: SubscriberSession,
        sender: webrtc.RawSender,
        packet: bytes,
        header: RtpHeader,
        start: bool,
    ) -> Awaitable[bool] | None:
        first = next(iter(self.sessions.values()))
        lossy = self.lose_every and sender.stream.kind == "video" and session is first
        if lossy and not start and header.sequence % self.lose_every == 0:
            return None
        return super().deliver(session, sender, packet, header, start)


class Room:
    """A publisher, the relay's room between its two sides, and the viewers."""

    def __init__(self) -> None:
        self.publisher = peer()
        self.relay_in = peer()
        self.relay_outs: list[RTCPeerConnection] = []
        self.viewers: list[Viewer] = []
        self.media = ObservedRoom()

    @property
    def subscribers(self) -> list[webrtc.Subscriber]:
        return [session.subscriber for session in self.media.sessions.values()]

    async def publish(self) -> webrtc.ReceiveTap:
        self.publisher.addTrack(MovingPicture())
        self.publisher.addTrack(AudioStreamTrack())
        await self.publisher.setLocalDescription(await self.publisher.createOffer())
        tap = await self.media.publish(self.relay_in, self.publisher.localDescription)
        await self.publisher.setRemoteDescription(self.relay_in.localDescription)
        return tap

    async def watch(self) -> Viewer:
        viewer = Viewer(peer())
        viewer.pc.addTransceiver("video", direction="recvonly")
        viewer.pc.addTransceiver("audio", direction="recvonly")

        @viewer.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            viewer.tasks.append(asyncio.ensure_future(viewer.consume(track)))

        await viewer.pc.setLocalDescription(await viewer.pc.createOffer())
        relay_out = peer()
        self.relay_outs.append(relay_out)
        session = await self.media.subscribe(relay_out, viewer.pc.localDescription)
        await viewer.pc.setRemoteDescription(session.pc.localDescription)
        self.viewers.append(viewer)
        return viewer

    async def close(self) -> None:
        for viewer in self.viewers:
            await viewer.pc.close()
            for task in viewer.tasks:
                task.cancel()
        await self.media.close()
        await self.publisher.close()


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    room = Room()
    try:
        yield room
    finally:
        await room.close()


async def sender_reports(pc: RTCPeerConnection) -> dict[str, int]:
    """packetsSent per kind, as the viewer read them in the relay's sender reports."""
    stats = await pc.getStats()
    return {s.kind: s.packetsSent for s in stats.values() if s.type == "remote-outbound-rtp"}


async def test_three_viewers_decode_forwarded_video_and_audio(
    room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    tap = await room.publish()
    viewers = [await room.watch() for _ in range(3)]
    for viewer in viewers:
        await until(viewer.has_frames(FRAMES, 50), f"{FRAMES} video and 50 audio frames")
        assert set(viewer.video_frames) == {(320, 240)}
    assert tap.received > 0 and tap.dropped == 0
    # The relay's own receivers decoded nothing: no frame ever came out of their tracks.
    for receiver in room.relay_in.getReceivers():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(receiver.track.recv(), 0.2)
    # Each viewer gets sender reports that count what the relay sent it (aiortc's own
    # would say 0: its encoder never ran).
    for viewer in viewers:
        deadline = time.monotonic() + WAIT
        while True:
            reports = await sender_reports(viewer.pc)
            if set(reports) == {"audio", "video"} and all(reports.values()):
                break
            assert time.monotonic() < deadline, f"no sender reports with counts: {reports}"
            await asyncio.sleep(0.2)
    assert "failed to decode" not in caplog.text


async def test_a_late_viewer_starts_at_once_on_the_cached_keyframe(
    room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    tap = await room.publish()
    first = await room.watch()
    await until(lambda: len(first.video_frames) >= 10, "the first viewer's frames")
    await asyncio.sleep(1.0)  # the last keyframe is long gone (aiortc sends one per 100 s)
    requests = tap.keyframe_requests
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        late = await room.watch()
        await until(lambda: len(late.video_frames) >= 10, "the late viewer's frames")
    sender = room.subscribers[-1].senders["video"]
    assert sender.replayed > 10  # the keyframe and every packet since
    assert tap.keyframe_requests == requests  # no keyframe request was needed
    assert "failed to decode" not in caplog.text  # it never got a frame it could not use


async def test_a_late_viewer_gets_a_keyframe_by_pli_when_none_is_cached(
    room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    tap = await room.publish()
    first = await room.watch()
    await until(lambda: len(first.video_frames) >= 10, "the first viewer's frames")
    tap.streams["video"].keyframe_sequence = None  # as when it has left the cache
    requests = tap.keyframe_requests
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        late = await room.watch()
        assert room.subscribers[-1].senders["video"].waiting_for_keyframe
        await until(lambda: len(late.video_frames) >= 10, "the late viewer's frames")
    assert tap.keyframe_requests > requests
    assert not room.subscribers[-1].senders["video"].waiting_for_keyframe
    assert room.subscribers[-1].senders["video"].replayed == 0
    assert "failed to decode" not in caplog.text


async def test_a_viewers_losses_are_resent_from_the_cache(room: Room) -> None:
    room.media.lose_every = 7
    await room.publish()
    viewer = await room.watch()
    await until(lambda: len(viewer.video_frames) >= FRAMES, f"{FRAMES} frames despite losses")
    sender = room.subscribers[0].senders["video"]
    assert sender.retransmitted > 0
    # A NACK for numbers this viewer was never sent is ignored.
    before = sender.retransmitted
    await room.subscribers[0].handle_rtcp(rtcp.build_nack(1, sender.ssrc, [0xFFFF, 0x7FFF]))
    assert sender.retransmitted == before


async def test_feedback_upstream_reaches_the_publisher(
    room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiortc.rtcrtpsender")  # before the publisher
    tap = await room.publish()
    await until(lambda: len(room.media.video_sequences) >= 20, "video packets")
    # A NACK brings the packet again, as RTX, which the tap unwraps.
    wanted = max(room.media.video_sequences) - 5
    assert room.media.video_sequences[wanted] == 1
    assert await tap.send_nack("video", [wanted])
    await until(lambda: room.media.video_sequences[wanted] == 2, "the retransmission")
    assert tap.dropped == 0
    # A REMB sets the publisher's bitrate.
    assert await tap.send_remb(1_000_000)
    await until(lambda: "receiver estimated maximum bitrate 1000000 bps" in caplog.text, "the REMB")


async def test_garbage_never_breaks_forwarding(room: Room) -> None:
    tap = await room.publish()
    viewer = await room.watch()
    await until(lambda: len(viewer.video_frames) >= 5, "frames")
    video_pt = tap.streams["video"].payload_type
    garbage = [
        b"",
        b"\x80",
        os.urandom(11),
        bytes([0x40]) + os.urandom(40),  # RTP version 1
        bytes([0x8F]) + os.urandom(20),  # 15 CSRCs in a short packet
        bytes([0x90, video_pt]) + os.urandom(10) + b"\xbe\xde\xff\xff",  # extension too long
        bytes([0xA0, video_pt]) + os.urandom(10) + b"\x00\x00\xff",  # padding too long
        bytes([0x80, 77]) + os.urandom(30),  # a payload type nobody negotiated
    ]
    dropped = tap.dropped
    for data in garbage:
        await tap.handle_rtp(data)
    assert tap.dropped == dropped + len(garbage)
    subscriber = room.subscribers[0]
    for data in [b"", os.urandom(3), b"\x81\xcd\x00\x09" + os.urandom(8), os.urandom(200)]:
        await subscriber.handle_rtcp(data)
    assert subscriber.malformed_rtcp >= 3
    # Random datagrams at every ICE port of the relay (STUN, DTLS and SRTP first bytes).
    ports = {
        int(port)
        for pc in [room.relay_in, *room.relay_outs]
        for port in re.findall(
            r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+)", pc.localDescription.sdp
        )
    }
    assert ports
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for port in ports:
            for first in (0, 1, 22, 23, 128, 144, 200, 255):
                for _ in range(20):
                    sock.sendto(bytes([first]) + os.urandom(100), ("127.0.0.1", port))
    frames = len(viewer.video_frames)
    await until(lambda: len(viewer.video_frames) >= frames + FRAMES, "frames after garbage")
    assert room.relay_in.connectionState == "connected"
    assert all(pc.connectionState == "connected" for pc in room.relay_outs)


async def ignore(sender: webrtc.RawSender) -> None:
    return None


async def offer(
    *kinds: str, audio_codec: str | None = None, direction: str = "recvonly"
) -> RTCPeerConnection:
    pc = peer()
    for kind in kinds:
        transceiver = pc.addTransceiver(kind, direction=direction)
        if kind == "audio" and audio_codec is not None:
            capabilities = RTCRtpSender.getCapabilities("audio").codecs
            transceiver.setCodecPreferences([c for c in capabilities if c.mimeType == audio_codec])
    await pc.setLocalDescription(await pc.createOffer())
    return pc


async def test_offers_get_one_track_per_kind_or_a_refusal_with_the_reason() -> None:
    video = webrtc.ForwardedStream(
        "video", RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    )
    pcs = [
        await offer("video", "video"),
        await offer("audio"),
        await offer("audio", audio_codec="audio/PCMU", direction="sendonly"),  # a publisher
    ]
    relays = [peer() for _ in pcs]
    try:
        two_videos, audio_only, pcmu = pcs
        subscriber = await webrtc.answer_subscriber(
            relays[0], two_videos.localDescription, {"video": video}, ignore
        )
        assert list(subscriber.senders) == ["video"]
        answer = relays[0].localDescription.sdp
        assert answer.count("a=sendonly") == 1 and answer.count("a=inactive") == 1
        with pytest.raises(webrtc.NegotiationError, match="video/vp8"):
            await webrtc.answer_subscriber(
                relays[1], audio_only.localDescription, {"video": video}, ignore
            )

        async def drop(*_: object) -> None:
            return None

        with pytest.raises(webrtc.NegotiationError, match="audio/opus"):
            await webrtc.answer_publisher(relays[2], pcmu.localDescription, drop)
    finally:
        for pc in [*pcs, *relays]:
            await pc.close()
