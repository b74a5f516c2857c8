"""What a WHEP viewer gets through a lossy, delayed link: NACK/RTX recovery at the relay.

The relay (`livecart_relay`, in this process) takes an aiortc publisher into a room
(`MediaRooms.publish`; VP8 of a 640x360 scrolling picture at 1.5 Mbit/s, 30 fps, and
Opus).
The viewer, an aiortc peer that decodes, runs as a subprocess (`subscribe` below) in a
network namespace behind `livecart_core.netlab.impaired_link`: random UDP loss in each
direction and a one-way delay of half the RTT. It plays over WHEP and prints its counts
as JSON. The publisher's link is not impaired.

Frames are counted by RTP timestamp (the publisher stamps every frame, 3000 ticks apart,
and encodes each), from the viewer's first decoded keyframe to the newest frame decoded
at the end of the window: a frame is delivered if it was decoded and every frame since
the last keyframe was too (a frame decoded on top of a lost one is corrupt). A freeze is
more than 200 ms without a new frame. Prints `name=value unit` lines, per loss N:

- `frames_delivered_pct_lossN`: frames delivered ÷ frames the publisher encoded, %.
- `freezes_per_min_lossN`: freezes per minute of the window.
- `frozen_pct_lossN`, `nacks_per_s_lossN`, `retransmits_per_s_lossN`, `plis_lossN`.

`uv run python bench/media_loss.py [--loss 5,10] [--rtt-ms 100] [--seconds 30]` (about
80 s). Needs root, `ip` and `nft` (`make netlab`). `loss_figures()` is the same for callers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.codecs.vpx import Vp8Decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from av import VideoFrame
from av.frame import Frame
from pydantic import SecretStr

from livecart_core import netlab
from livecart_core.auth import TokenAuthority
from livecart_core.service import Service
from livecart_media import webrtc
from livecart_media.whipwhep import RoomKey
from livecart_relay.app import SERVICE, media_rooms
from livecart_relay.settings import RelaySettings

TENANT, ROOM = "shop-1", "live"
FRAME_TICKS = 3000  # 90 kHz ÷ 30 fps: aiortc's VideoStreamTrack pacing
FREEZE_S = 0.2
PUBLISHER_BITRATE = 1_500_000  # aiortc's VP8 maximum
FIRST_FRAME_TIMEOUT_S = 30.0
VIEWER_SCRIPT = str(Path(__file__).resolve())  # run as `VIEWER_SCRIPT subscribe ...`


class ScrollingPicture(VideoStreamTrack):
    """640x360 of random 8x8 blocks scrolling diagonally at 30 fps.

    It encodes like camera video at aiortc's VP8 maximum (about 1.5 Mbit/s: keyframes of
    about 10 packets, others of 1-10) where noise would need 12 Mbit/s. It keeps the
    timestamps it produced, to show none was skipped.
    """

    WIDTH, HEIGHT, BLOCK = 640, 360, 8

    def __init__(self) -> None:
        super().__init__()
        self.timestamps: list[int] = []
        blocks = random.Random(3)
        cells = [
            bytes(blocks.randrange(256) for _ in range(self.WIDTH // self.BLOCK))
            for _ in range(self.HEIGHT // self.BLOCK + 1)
        ]
        self._rows = [
            bytes(v for v in cells[y // self.BLOCK] for _ in range(self.BLOCK))
            for y in range(self.HEIGHT)
        ]

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        count = len(self.timestamps)
        frame = VideoFrame(self.WIDTH, self.HEIGHT, "yuv420p")
        luma, *chroma = frame.planes
        across, down = 3 * count % self.WIDTH, count % self.HEIGHT
        rows = self._rows[down:] + self._rows[:down]
        pad = bytes(luma.line_size - self.WIDTH)
        luma.update(b"".join(row[across:] + row[:across] + pad for row in rows))
        for plane in chroma:
            plane.update(b"\x80" * plane.line_size * plane.height)
        frame.pts, frame.time_base = pts, time_base
        self.timestamps.append(pts)
        return frame


@dataclass
class Viewing:
    """What the viewer decoded in its window (times in seconds from its first frame)."""

    seconds: float = 0.0
    frames_expected: int = 0
    """Frames the publisher encoded from the first frame decoded to the newest one."""
    frames_decoded: int = 0
    frames_delivered: int = 0
    """Decoded with every frame since the last keyframe decoded too."""
    freezes: int = 0
    frozen_s: float = 0.0
    longest_freeze_s: float = 0.0
    nacks: int = 0
    """NACK messages the viewer sent."""
    plis: int = 0
    packets_lost: int = 0
    """The viewer's `inbound-rtp` packetsLost for video (lost and never retransmitted)."""
    frames_before_first: int = 0
    """Frames received before the first one decoded (start-up, outside the window): aiortc
    cannot use a keyframe whose first packet was lost, and asks for another."""


@dataclass
class LossRun:
    """One impaired run: the viewer's counts and the relay's side of it."""

    loss_pct: float
    rtt_ms: float
    viewing: Viewing
    retransmitted: int = 0
    """Packets the relay resent on NACKs (RTX)."""
    keyframe_requests: int = 0
    """PLIs the relay sent to the publisher."""
    publisher_frames: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def delivered_pct(self) -> float:
        expected = self.viewing.frames_expected
        return 100.0 * self.viewing.frames_delivered / expected if expected else 0.0

    @property
    def freezes_per_min(self) -> float:
        return 60.0 * self.viewing.freezes / self.viewing.seconds if self.viewing.seconds else 0.0


class FrameLog:
    """Decoded video frames in arrival order: delivery, chain breaks and freezes."""

    def __init__(self) -> None:
        self.keyframes: set[int] = set()
        """Timestamps of the keyframes decoded (decoded frames do not say: libvpx)."""
        self.started: float | None = None
        self.first_index = 0
        self.last_arrival = 0.0
        self.last_index = -1
        self.broken = False
        self.viewing = Viewing()

    def add(self, frame: VideoFrame, now: float) -> None:
        index = round((frame.pts or 0) / FRAME_TICKS)
        if index <= self.last_index:
            return  # not newer: cannot happen with aiortc's in-order jitter buffer
        viewing = self.viewing
        if self.started is None:
            self.started, self.first_index = now, index
            viewing.frames_before_first = index
        else:
            self._gap(now - self.last_arrival)
            if index != self.last_index + 1:
                self.broken = True  # frames were skipped: what follows decodes on garbage
        if frame.pts in self.keyframes:
            self.broken = False
        viewing.frames_decoded += 1
        viewing.frames_delivered += not self.broken
        viewing.frames_expected = index - self.first_index + 1
        self.last_index, self.last_arrival = index, now

    def close(self, now: float) -> Viewing:
        if self.started is not None:
            self._gap(now - self.last_arrival)
            self.viewing.seconds = now - self.started
        return self.viewing

    def _gap(self, gap: float) -> None:
        if gap > FREEZE_S:
            self.viewing.freezes += 1
            self.viewing.frozen_s += gap
            self.viewing.longest_freeze_s = max(self.viewing.longest_freeze_s, gap)


def _peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def _watch_receiver(log: FrameLog) -> None:
    # aiortc's receiver counts no feedback it sends, and its decoded frames do not say
    # which were keyframes: wrap its two feedback senders and the VP8 decoder (viewer only).
    viewing = log.viewing
    nack, pli = RTCRtpReceiver._send_rtcp_nack, RTCRtpReceiver._send_rtcp_pli
    decode = Vp8Decoder.decode

    def decode_noting_keyframes(self: Vp8Decoder, encoded: JitterFrame) -> list[Frame]:
        if encoded.data[:1] and not encoded.data[0] & 1:  # RFC 6386 §9.1: P bit 0 = key
            log.keyframes.add(encoded.timestamp)  # before the frame is queued to the track
        return decode(self, encoded)

    async def counted_nack(self: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> None:
        viewing.nacks += 1
        await nack(self, media_ssrc, lost)

    async def counted_pli(self: RTCRtpReceiver, media_ssrc: int) -> None:
        viewing.plis += 1
        await pli(self, media_ssrc)

    RTCRtpReceiver._send_rtcp_nack = counted_nack  # type: ignore[method-assign]
    RTCRtpReceiver._send_rtcp_pli = counted_pli  # type: ignore[method-assign]
    Vp8Decoder.decode = decode_noting_keyframes  # type: ignore[method-assign,assignment]


async def subscribe(url: str, token: str, address: str, seconds: float) -> Viewing:
    """Play `url` over WHEP from `address` for `seconds` after the first decoded frame."""
    import httpx  # the viewer's only HTTP client; the relay side needs none

    log = FrameLog()
    _watch_receiver(log)
    first = asyncio.Event()
    pc = _peer()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    tasks: list[asyncio.Task[None]] = []

    async def consume(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame):
                    log.add(frame, time.monotonic())
                    first.set()

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        tasks.append(asyncio.ensure_future(consume(track)))

    with webrtc.pinned_host_addresses([address]):
        await pc.setLocalDescription(await pc.createOffer())
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            url,
            content=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", **headers},
        )
        if response.status_code != 201:
            raise RuntimeError(f"WHEP POST: {response.status_code} {response.text}")
        await pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
        try:
            await asyncio.wait_for(first.wait(), FIRST_FRAME_TIMEOUT_S)
            await asyncio.sleep(seconds)
            viewing = log.close(time.monotonic())
            for report in (await pc.getStats()).values():
                if report.type == "inbound-rtp" and report.kind == "video":
                    viewing.packets_lost = report.packetsLost
        finally:
            location = response.headers["location"]
            with contextlib.suppress(httpx.HTTPError):
                await http.delete(str(response.url.join(location)), headers=headers)
            await pc.close()
            for task in tasks:
                task.cancel()
    return viewing


async def measure(
    loss_pct: float, rtt_ms: float = 100.0, seconds: float = 30.0, jitter_ms: float = 0.0
) -> LossRun:
    """One run: relay and publisher here, the viewer behind an impaired link."""
    impairment = netlab.Impairment(
        loss_in_pct=loss_pct, loss_out_pct=loss_pct, delay_ms=rtt_ms / 2, jitter_ms=jitter_ms
    )
    secret = secrets.token_hex(32)
    lab = contextlib.ExitStack()
    try:
        # Building and removing the lab runs `ip` and `nft`: off the event loop.
        link = await asyncio.to_thread(lab.enter_context, netlab.impaired_link(impairment))
        return await _run(link, secret, seconds, loss_pct, rtt_ms)
    finally:
        await asyncio.to_thread(lab.close)


async def _run(
    link: netlab.Link,
    secret: str,
    seconds: float,
    loss_pct: float,
    rtt_ms: float,
) -> LossRun:
    settings = RelaySettings(
        bus="memory",
        auth_secret=SecretStr(secret),
        http_host=link.near_address,
        http_port=0,
        grpc_host="127.0.0.1",
        grpc_port=0,
        ice_host_addresses=[link.near_address],
    )
    relay = Service(SERVICE, settings)
    await relay.start()
    publisher = _peer()
    picture = ScrollingPicture()
    try:
        rooms = media_rooms(relay)
        publisher.addTrack(picture)
        publisher.addTrack(AudioStreamTrack())
        with webrtc.pinned_host_addresses([link.near_address]):
            await publisher.setLocalDescription(await publisher.createOffer())
        key = RoomKey(TENANT, ROOM)
        await publisher.setRemoteDescription(await rooms.publish(key, publisher.localDescription))
        room = rooms.get(key)
        assert room is not None and room.tap is not None
        deadline = time.monotonic() + 15
        while not await room.tap.send_remb(PUBLISHER_BITRATE):
            if time.monotonic() > deadline:
                raise RuntimeError("the publisher's media never reached the relay")
            await asyncio.sleep(0.05)

        token = TokenAuthority(secret).issue(TENANT, "viewer-1", ("play",), room=ROOM)
        assert relay.http is not None
        url = f"http://{link.near_address}:{relay.http.port}/whep/{ROOM}"
        viewer = await asyncio.create_subprocess_exec(
            *link.far.command(
                sys.executable,
                VIEWER_SCRIPT,
                "subscribe",
                url,
                token,
                link.far_address,
                str(seconds),
            ),
            stdout=asyncio.subprocess.PIPE,
        )
        sessions = []
        try:
            while viewer.returncode is None and not room.sessions:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            sessions = list(room.sessions.values())  # kept: the viewer DELETEs its session
            out, _ = await asyncio.wait_for(viewer.communicate(), seconds + 60)
        finally:
            if viewer.returncode is None:
                viewer.kill()
                await viewer.wait()
        if viewer.returncode != 0:
            raise RuntimeError(f"the viewer failed (exit {viewer.returncode})")
        viewing = Viewing(**json.loads(out))
        run = LossRun(loss_pct, rtt_ms, viewing, publisher_frames=len(picture.timestamps))
        run.retransmitted = sum(
            sender.retransmitted for s in sessions for sender in s.subscriber.senders.values()
        )
        run.keyframe_requests = room.tap.keyframe_requests
        steps = {b - a for a, b in zip(picture.timestamps, picture.timestamps[1:], strict=False)}
        if steps - {FRAME_TICKS}:
            run.notes.append(f"publisher timestamp steps {sorted(steps)}: frame counts are off")
        return run
    finally:
        await publisher.close()
        await relay.stop()


async def loss_figures(
    losses: tuple[float, ...] = (5.0, 10.0), rtt_ms: float = 100.0, seconds: float = 30.0
) -> dict[str, float]:
    """`name: value` per loss N: frames_delivered_pct_lossN, freezes_per_min_lossN, ..."""
    figures: dict[str, float] = {}
    for loss in losses:
        run = await measure(loss, rtt_ms, seconds)
        name = f"loss{loss:g}"
        for note in run.notes:
            print(f"{name}: {note}", file=sys.stderr)
        viewing = run.viewing
        figures[f"frames_delivered_pct_{name}"] = run.delivered_pct
        figures[f"freezes_per_min_{name}"] = run.freezes_per_min
        figures[f"frozen_pct_{name}"] = 100.0 * viewing.frozen_s / viewing.seconds
        figures[f"nacks_per_s_{name}"] = viewing.nacks / viewing.seconds
        figures[f"retransmits_per_s_{name}"] = run.retransmitted / viewing.seconds
        figures[f"plis_{name}"] = viewing.plis
    return figures


UNITS = {"frames_delivered_pct": "%", "freezes_per_min": "/min", "frozen_pct": "%"}


def main() -> None:
    if sys.argv[1:2] == ["subscribe"]:  # the viewer, inside the far namespace
        url, token, address, seconds = sys.argv[2:6]
        viewing = asyncio.run(subscribe(url, token, address, float(seconds)))
        print(json.dumps(asdict(viewing)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loss", default="5,10", help="percent, each direction")
    parser.add_argument("--rtt-ms", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    reason = netlab.unavailable()
    if reason is not None:
        sys.exit(f"media_loss: {reason}")
    losses = tuple(float(x) for x in args.loss.split(","))
    figures = asyncio.run(loss_figures(losses, args.rtt_ms, args.seconds))
    for name, value in figures.items():
        unit = next((u for prefix, u in UNITS.items() if name.startswith(prefix)), "")
        unit = unit or ("/s" if "_per_s_" in name else "")
        print(f"{name}={value:.2f} {unit}".rstrip())


if __name__ == "__main__":
    main()
