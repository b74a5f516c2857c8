"""aiortc peers for tests and benches: a publisher with a synthetic moving picture and a
viewer that decodes and counts what it gets. Not used by any service."""

from __future__ import annotations

import asyncio
import fractions
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpsender import RTCRtpSender
from av import VideoFrame

from livecart_media.webrtc import peer

SDP_HEADERS = {"Content-Type": "application/sdp"}


class MovingPicture(VideoStreamTrack):
    """Noise on the luma plane: every frame differs, so the encoder spends a real bitrate."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.frames = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(self.width, self.height, "yuv420p")
        luma, *chroma = frame.planes
        luma.update(os.urandom(luma.line_size * luma.height))
        for plane in chroma:
            plane.update(b"\x80" * plane.line_size * plane.height)
        frame.pts, frame.time_base = pts, fractions.Fraction(time_base)
        self.frames += 1
        return frame


@dataclass
class Publisher:
    """An aiortc WHIP client sending a moving picture and a tone."""

    pc: RTCPeerConnection = field(default_factory=peer)
    video: MovingPicture = field(default_factory=MovingPicture)

    def __post_init__(self) -> None:
        pc = self.pc
        pc.addTrack(self.video)
        pc.addTrack(AudioStreamTrack())

    async def offer(self) -> str:
        pc = self.pc
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)

    async def post(self, client: httpx.AsyncClient, url: str, token: str) -> httpx.Response:
        """WHIP: POST the offer; on 201 take the answer. Returns the response."""
        return await exchange(self.pc, client, url, token, await self.offer())

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class Viewer:
    """An aiortc WHEP client offering recvonly video and audio, decoding what it gets."""

    pc: RTCPeerConnection = field(default_factory=peer)
    video_frames: int = 0
    audio_frames: int = 0
    first_frame_at: float | None = None
    sizes: set[tuple[int, int]] = field(default_factory=set)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def offer(self, *kinds: str, audio_codec: str | None = None) -> str:
        """A recvonly offer for `kinds` (video and audio by default); `audio_codec` (a MIME
        type) offers only that audio codec."""
        pc = self.pc
        for kind in kinds or ("video", "audio"):
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            if kind == "audio" and audio_codec is not None:
                codecs = RTCRtpSender.getCapabilities("audio").codecs
                transceiver.setCodecPreferences([c for c in codecs if c.mimeType == audio_codec])

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.tasks.append(asyncio.ensure_future(self._consume(track)))

        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)

    async def post(self, client: httpx.AsyncClient, url: str, token: str) -> httpx.Response:
        """WHEP: POST the offer; on 201 take the answer. Returns the response."""
        return await exchange(self.pc, client, url, token, await self.offer())

    def has(self, video: int, audio: int = 0) -> Callable[[], bool]:
        return lambda: self.video_frames >= video and self.audio_frames >= audio

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame):
                    self.video_frames += 1
                    self.sizes.add((frame.width, frame.height))
                    if self.first_frame_at is None:
                        self.first_frame_at = time.monotonic()
                else:
                    self.audio_frames += 1
        except MediaStreamError:
            return

    async def close(self) -> None:
        await self.pc.close()
        for task in self.tasks:
            task.cancel()


async def exchange(
    pc: RTCPeerConnection, client: httpx.AsyncClient, url: str, token: str, offer: str
) -> httpx.Response:
    """POST `offer` to a WHIP or WHEP endpoint; on 201 set the answer on `pc`."""
    response = await client.post(url, content=offer, headers={**SDP_HEADERS, **bearer(token)})
    if response.status_code == 201:
        await pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
    return response


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    """Poll `condition` until true; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
