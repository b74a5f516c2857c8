"""The relay's CPU per delivered RTP packet, side by side with Janus, on the same RTP feed.

One 720p H.264 stream (constrained baseline, packetization-mode=1, ~1.5 Mbit/s, a keyframe
every ``--gop-s``) with Opus is encoded once with PyAV (libx264, libopus), packetized and
cached in ``$LIVECART_CACHE/media-bench/`` (``~/.cache/livecart``); a feeder process replays
those RTP packets in real time, looped, as plain RTP/UDP, each stamped with the time it left
(the pipe's ingest-time header extension). The two servers get the very same datagrams, one
after the other, each a fresh process:

- ours: ``python -m livecart_relay`` (in-memory bus); the feed arrives through the pipe
  contract (``RelayService.OpenPipe`` over gRPC, then RTP to the UDP address it answers) and
  viewers play it over WHEP (``POST /whep/{room}``), all on loopback;
- Janus (Debian's ``janus``, ``make janus``): the streaming plugin's RTP mountpoint (H.264 on
  one port, Opus on another), viewers through its HTTP API (create, attach, ``watch``, answer
  Janus's offer), with only that plugin and that transport loaded, log level 3. Janus skips
  loopback for ICE, so it runs in a network namespace of its own behind a veth pair.

Viewers are aiortc peers (on uvloop) in separate load processes (``--per-process`` each)
whose RTP is counted by kind as it leaves SRTP (`RawCounter`, on the aiortc hook that
`livecart_media.webrtc.ReceiveTap` uses), never parsed or decoded: the load costs about what
the server does per packet, spread over processes. Viewers are added in steps up to each N;
at each N the server's CPU (utime + stime from /proc/<pid>/stat, all threads) is taken over
``--seconds``, after ``--warmup`` seconds for the new viewers' keyframes; every process's
counts are rates over its own interval. Figures (`name=value unit` lines):

- ``stream_packets_per_s``, ``stream_video_kbps``, ``stream_audio_kbps``: the feed.
- Per N (suffix ``_nN``; Janus's start with ``janus_``): ``relay_us_per_packet_subscriber_nN``
  (server CPU ÷ RTP packets its viewers received), ``relay_cpu_pct_nN``,
  ``relay_delivered_pct_nN`` and ``relay_delivered_video_pct_nN`` (packets received ÷ N x the
  packets fed), ``relay_loadgen_cpu_pct_nN`` (the load processes together, % of one core).
- ``relay_us_per_packet_subscriber`` and ``janus_us_per_packet_subscriber``: the same at the
  largest N both sides ran; ``relay_subscribers_per_core_720p`` (and Janus's): one core's
  worth of those packets ÷ the feed's packets per second; ``relay_vs_janus_ratio``: Janus's
  CPU per packet ÷ ours (above 1: we spend less). ``…_us_per_extra_subscriber_packet``: the
  least-squares slope of CPU over packets across the N, the cost of one more viewer.
- ``first_frame_p50_ms``/``_p95_ms``/``_max_ms`` (``janus_first_frame_…``): from the WHEP POST
  (Janus: the ``watch`` request) to the first decoded video frame at one aiortc viewer that
  decodes, ``first_frame_tries`` (``--first-frames``) tries at random points of the GOP, once
  the feed flows (a try before its first keyframe would time the feeder's start-up) and
  before the load starts. Joins that missed the cached GOP, counts that do not depend on
  the machine's load: ``first_frame_undecodable_starts`` (the viewer got video it could not
  decode before its first picture) and ``first_frame_keyframe_waits`` (the relay's
  ``livecart_relay_viewer_keyframe_waits_total``: viewers it had no keyframe to start on).
- ``platform_latency_p50_ms_nN``/``_p95_ms_nN`` at ``--latency-subscribers`` (1 and 20): from
  the relay's ``livecart_relay_platform_latency_seconds`` histogram over the window: a video
  frame's last packet, from entering ingest (the feeder's stamp in the header extension) to
  leaving the relay toward its last viewer; a note on stderr if the relay has no such metric.

    uv run python bench/media.py [--subscribers 10,25,50] [--latency-subscribers 1,20]
        [--seconds 10] [--only relay|janus] [--relay-workers 1]

``--only relay --subscribers '' --latency-subscribers ''`` measures the relay's first frames
alone (about 1 s a try). ``--relay-workers N`` runs the relay with ``LIVECART_WORKERS=N`` (a
front and N forwarding processes: the CPU is summed over all of them, the latency histogram
over their labels).

About 4 minutes on 2 cores. Needs root (network namespace) and ``make janus`` for Janus.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import pickle
import random
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import av
import grpc
import httpx
import uvloop
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.codecs.h264 import H264Encoder
from procstat import cpu_seconds

from livecart.relay.v1 import relay_service_pb2 as pb
from livecart.relay.v1 import relay_service_pb2_grpc as pb_grpc
from livecart_core import netlab
from livecart_core.auth import TokenAuthority
from livecart_media import pipe, webrtc
from livecart_media.rtp import header as rtp_header

TENANT = "bench"
ROOM = "media-bench"
WIDTH, HEIGHT, FPS = 1280, 720, 30
VIDEO_PT, AUDIO_PT = 96, 111
VIDEO_CLOCK, AUDIO_CLOCK = 90_000, 48_000
OPUS_FRAME = 960  # 20 ms
H264_FMTP = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
LATENCY_METRIC = "livecart_relay_platform_latency_seconds"
KEYFRAME_WAITS = "livecart_relay_viewer_keyframe_waits_total"
CACHE = Path(os.environ.get("LIVECART_CACHE", Path.home() / ".cache" / "livecart")) / "media-bench"


# ---------------------------------------------------------------------------------------------
# The feed: encoded once, cached as RTP payloads, replayed in real time
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaPacket:
    at_s: float  # when it is sent, from the start of the loop
    video: bool
    timestamp: int  # RTP units from the start of the loop
    marker: bool
    payload: bytes


@dataclass(frozen=True, slots=True)
class Media:
    seconds: float
    packets: list[MediaPacket]

    def kbps(self, video: bool) -> float:
        octets = sum(len(p.payload) + 12 for p in self.packets if p.video == video)
        return 8 * octets / self.seconds / 1000

    @property
    def packets_per_s(self) -> float:
        return len(self.packets) / self.seconds


def encode_video(seconds: float, gop_s: float, bitrate: int) -> list[MediaPacket]:
    """A panning noise texture with a patch of fresh noise: hard enough to fill the bitrate."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, VIDEO_CLOCK), Fraction(FPS)
    encoder.bit_rate = bitrate
    kbit, keyint = bitrate // 1000, round(gop_s * FPS)
    encoder.options = {
        "preset": "veryfast",
        "tune": "zerolatency",  # no B-frames, no lookahead: what a live encoder sends
        "profile": "baseline",
        "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"
        f":vbv-maxrate={kbit}:vbv-bufsize={kbit}",
    }
    rng = random.Random(1)
    stride = WIDTH + 128
    texture = rng.randbytes(stride * (HEIGHT // 2 + 64))
    packets: list[MediaPacket] = []
    frames = round(seconds * FPS)
    for index in range(frames + 1):
        frame = None
        if index < frames:
            frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
            luma = frame.planes[0]
            dx, dy = index % 128, (index // 2) % 64
            rows = bytearray()
            for row in range(HEIGHT):
                start = (row // 2 + dy) * stride + dx
                rows += texture[start : start + WIDTH]
                rows += bytes(luma.line_size - WIDTH)
            patch = rng.randbytes(160 * 320)
            for row in range(160):
                offset = (280 + row) * luma.line_size + 480
                rows[offset : offset + 320] = patch[row * 320 : (row + 1) * 320]
            luma.update(bytes(rows))
            for plane in frame.planes[1:]:
                plane.update(bytes([128 + (index % 32)]) * plane.line_size * plane.height)
            frame.pts, frame.time_base = index * VIDEO_CLOCK // FPS, encoder.time_base
        for packet in encoder.encode(frame):
            assert packet.pts is not None
            payloads = H264Encoder._packetize(H264Encoder._split_bitstream(bytes(packet)))
            at = packet.pts / VIDEO_CLOCK
            for i, payload in enumerate(payloads):
                packets.append(MediaPacket(at, True, packet.pts, i == len(payloads) - 1, payload))
    return packets


def encode_audio(seconds: float) -> list[MediaPacket]:
    """A 440 Hz tone with some noise, Opus 64 kbit/s stereo in 20 ms packets."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = AUDIO_CLOCK, "stereo", "s16"
    encoder.bit_rate = 64_000
    rng = random.Random(2)
    packets: list[MediaPacket] = []
    for index in range(round(seconds * AUDIO_CLOCK / OPUS_FRAME)):
        samples: list[int] = []
        for n in range(OPUS_FRAME):
            t = (index * OPUS_FRAME + n) / AUDIO_CLOCK
            value = int(8000 * math.sin(2 * math.pi * 440 * t) + rng.randint(-800, 800))
            samples += (value, value)
        frame = av.AudioFrame(format="s16", layout="stereo", samples=OPUS_FRAME)
        frame.planes[0].update(struct.pack(f"<{len(samples)}h", *samples))
        frame.sample_rate, frame.pts = AUDIO_CLOCK, index * OPUS_FRAME
        for packet in encoder.encode(frame):
            assert packet.pts is not None
            at = packet.pts / AUDIO_CLOCK
            packets.append(MediaPacket(at, False, packet.pts, True, bytes(packet)))
    return packets


def cached_media(seconds: float, gop_s: float, bitrate: int) -> Path:
    """The feed's packets in time order, encoded on first use (a few seconds)."""
    path = CACHE / f"h264-720p-{bitrate // 1000}k-gop{gop_s:g}s-opus-{seconds:g}s.pickle"
    if not path.exists():
        packets = encode_video(seconds, gop_s, bitrate) + encode_audio(seconds)
        packets.sort(key=lambda p: p.at_s)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(".part")
        rows = [(p.at_s, p.video, p.timestamp, p.marker, p.payload) for p in packets]
        part.write_bytes(pickle.dumps((seconds, rows)))  # plain types: any module can load it
        part.rename(path)
    return path


def load_media(path: Path) -> Media:
    seconds, rows = pickle.loads(path.read_bytes())
    return Media(seconds, [MediaPacket(*row) for row in rows])


def feeder_main(spec: dict[str, Any]) -> None:
    """Send the media as RTP to `spec["video"]` and `spec["audio"]` until stdin closes;
    answer each `mark` line with the packets sent so far, by kind, and when."""
    media = load_media(Path(spec["media"]))
    video_to, audio_to = tuple(spec["video"]), tuple(spec["audio"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
    ssrcs = {True: secrets.randbits(32), False: secrets.randbits(32)}
    sequences = {True: secrets.randbits(15), False: secrets.randbits(15)}
    bases = {True: secrets.randbits(32), False: secrets.randbits(32)}
    period = {True: round(media.seconds * VIDEO_CLOCK), False: round(media.seconds * AUDIO_CLOCK)}
    sent = {"audio": 0, "video": 0}
    stopped = False

    def control() -> None:
        nonlocal stopped
        for _ in sys.stdin:
            marked = {"received": dict(sent), "at": time.monotonic()}
            sys.stdout.write(json.dumps(marked) + "\n")
            sys.stdout.flush()
        stopped = True

    threading.Thread(target=control, daemon=True).start()
    start, loop = time.monotonic() + 0.1, 0
    while not stopped:
        for p in media.packets:
            delay = start + loop * media.seconds + p.at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            timestamp = (bases[p.video] + loop * period[p.video] + p.timestamp) & 0xFFFFFFFF
            packet = struct.pack(
                "!BBHII",
                0x80,
                p.marker << 7 | (VIDEO_PT if p.video else AUDIO_PT),
                sequences[p.video],
                timestamp,
                ssrcs[p.video],
            )
            packet += p.payload
            sequences[p.video] = (sequences[p.video] + 1) & 0xFFFF
            # As ingest sends it down the pipe: stamped with the time it entered.
            stamped = pipe.stamp(packet, rtp_header.parse(packet), time.time_ns() // 1000)
            sock.sendto(stamped, video_to if p.video else audio_to)
            sent["video" if p.video else "audio"] += 1
            if stopped:
                break
        loop += 1


# ---------------------------------------------------------------------------------------------
# Viewers: WHEP against the relay, the HTTP API against Janus
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    side: str  # "relay" or "janus"
    url: str  # the relay's HTTP base, or Janus's /janus endpoint
    ice: str  # the address viewers announce as their ICE host candidate
    token: str = ""


def peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


OnRemote = Callable[[RTCPeerConnection], None]


async def whep_view(http: httpx.AsyncClient, target: Target, pc: RTCPeerConnection,
                    on_remote: OnRemote) -> float:  # fmt: skip
    """Offer recvonly video + audio to the relay; `on_remote` runs once its answer is set.
    Returns when the (last) POST was sent, on the monotonic clock."""
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    deadline = time.monotonic() + 15
    while True:
        started = time.monotonic()
        response = await http.post(
            f"{target.url}/whep/{ROOM}",
            content=pc.localDescription.sdp,
            headers={"Authorization": f"Bearer {target.token}", "Content-Type": "application/sdp"},
        )
        if response.status_code == 201:
            break
        if response.status_code != 404 or time.monotonic() > deadline:  # 404: no feed yet
            raise RuntimeError(f"WHEP POST answered {response.status_code}: {response.text}")
        await asyncio.sleep(0.2)
    await pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
    on_remote(pc)
    return started


async def janus_call(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    reply: dict[str, Any] = (
        await http.post(url, json={**body, "transaction": secrets.token_hex(6)})
    ).json()
    if reply.get("janus") not in ("success", "ack"):
        raise RuntimeError(f"Janus answered {reply}")
    return reply


async def janus_view(http: httpx.AsyncClient, target: Target, pc: RTCPeerConnection,
                     on_remote: OnRemote) -> float:  # fmt: skip
    """Watch the mountpoint: Janus offers, we answer; `on_remote` runs once its offer is set.
    Returns when the watch request was sent, on the monotonic clock."""
    session = (await janus_call(http, target.url, {"janus": "create"}))["data"]["id"]
    session_url = f"{target.url}/{session}"
    attach = {"janus": "attach", "plugin": "janus.plugin.streaming"}
    handle_url = f"{session_url}/{(await janus_call(http, session_url, attach))['data']['id']}"
    watch = {"janus": "message", "body": {"request": "watch", "id": 1}}
    started = time.monotonic()
    await janus_call(http, handle_url, watch)
    offer = None
    while offer is None:
        event = (await http.get(session_url, params={"maxev": 1}, timeout=30)).json()
        offer = event.get("jsep")
    await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    on_remote(pc)
    await pc.setLocalDescription(await pc.createAnswer())
    answer = {"type": "answer", "sdp": pc.localDescription.sdp}
    start = {"janus": "message", "body": {"request": "start"}, "jsep": answer}
    await janus_call(http, handle_url, start)
    await janus_call(http, handle_url, {"janus": "trickle", "candidate": {"completed": True}})
    return started


async def view(http: httpx.AsyncClient, target: Target, pc: RTCPeerConnection,
               on_remote: OnRemote) -> float:  # fmt: skip
    return await (whep_view if target.side == "relay" else janus_view)(http, target, pc, on_remote)


class RawCounter:
    """Counts a viewer's RTP packets by kind, never decrypting, parsing or decoding them.

    Until ICE connects it counts as packets leave SRTP, before aiortc's receivers (the hook
    `webrtc.ReceiveTap` uses). Once connected it counts each SRTP datagram as it arrives on
    the ICE socket, from its header (SRTP leaves the RTP header in the clear), and passes
    only the rest (STUN consent checks, DTLS, RTCP) on to aioice and aiortc: the load
    generator then costs about a function call per packet, far less than the server it
    loads. Install it once the remote description is set."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.counts = {"audio": 0, "video": 0}
        self._kinds: dict[int, str] = {}
        self._transports = set()
        for transceiver in pc.getTransceivers():
            for codec in transceiver._codecs:
                if codec.payloadType is not None:
                    self._kinds[codec.payloadType] = transceiver.kind
            self._transports.add(transceiver.receiver.transport)
        for transport in self._transports:
            transport._handle_rtp_data = self.handle_rtp  # type: ignore[method-assign]

        @pc.on("connectionstatechange")
        def bypass() -> None:
            if pc.connectionState == "connected":
                self.count_at_the_socket()

    async def handle_rtp(self, data: bytes, arrival_time_ms: int = 0) -> None:
        kind = self._kinds.get(data[1] & 0x7F)
        if kind is not None:
            self.counts[kind] += 1

    def count_at_the_socket(self) -> None:
        kinds, counts = self._kinds, self.counts
        for transport in self._transports:
            for protocol in transport.transport._connection._protocols:
                passed_on = protocol.datagram_received

                def datagram_received(data: bytes, addr: Any, passed_on: Any = passed_on) -> None:
                    # RTP (RFC 7983: first byte 128-191), not RTCP (RFC 5761: PT 192-223).
                    if 127 < data[0] < 192 and not 191 < data[1] < 224:
                        kind = kinds.get(data[1] & 0x7F)
                        if kind is not None:
                            counts[kind] += 1
                            return
                    passed_on(data, addr)

                protocol.datagram_received = datagram_received


async def generator_main(spec: dict[str, Any]) -> None:
    """A load process: `add` raw-counted viewers, `mark` (counts and CPU), `stop`; JSON lines."""
    target = Target(**spec["target"])
    counters: list[RawCounter] = []
    pcs: list[RTCPeerConnection] = []
    joining = asyncio.Semaphore(4)

    async def add_one(http: httpx.AsyncClient) -> RawCounter:
        counter: list[RawCounter] = []
        pc = peer()
        pcs.append(pc)
        async with joining:
            await view(http, target, pc, lambda pc: counter.append(RawCounter(pc)))
        return counter[0]

    def reply(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    async with httpx.AsyncClient(timeout=20) as http:
        with webrtc.pinned_host_addresses([target.ice]):
            while line := await asyncio.to_thread(sys.stdin.readline):
                command = json.loads(line)
                if command["op"] == "add":
                    new = await asyncio.gather(*(add_one(http) for _ in range(command["n"])))
                    counters += new
                    deadline = time.monotonic() + 30
                    while not all(c.counts["video"] for c in new):
                        if time.monotonic() > deadline:
                            raise SystemExit("viewers got no video in 30 s")
                        await asyncio.sleep(0.1)
                    reply({"viewers": len(counters)})
                elif command["op"] == "mark":
                    received = {
                        kind: sum(c.counts[kind] for c in counters) for kind in ("audio", "video")
                    }
                    now, cpu = time.monotonic(), time.process_time()
                    reply({"received": received, "cpu": cpu, "at": now})
                else:
                    break
    for pc in pcs:
        await pc.close()


@dataclass(frozen=True, slots=True)
class FirstFrame:
    ms: float
    """From the WHEP POST (Janus: the watch) to the first decoded video frame."""
    undecodable_start: bool
    """The viewer got video it could not decode first: it waited for a later keyframe."""


async def first_frame(http: httpx.AsyncClient, target: Target) -> FirstFrame:
    """One viewer's first decoded video frame, and whether it was the first picture it got."""
    pc = peer()
    video: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video" and not video.done():
            video.set_result(track)

    try:
        with webrtc.pinned_host_addresses([target.ice]):
            started = await view(http, target, pc, lambda pc: None)
        frame = await asyncio.wait_for((await video).recv(), 20)
        ms = 1000 * (time.monotonic() - started)
        # aiortc numbers a track's frames from the first picture its jitter buffer put
        # together, pts 0: a later one means the pictures before would not decode.
        return FirstFrame(ms, frame.pts != 0)
    finally:
        await pc.close()


async def until_fed(feeder: asyncio.subprocess.Process, timeout_s: float = 30.0) -> None:
    """Wait until the feeder has sent video (its loop starts on a keyframe), so that no
    first-frame try joins before the server has a keyframe to start it on."""
    deadline = time.monotonic() + timeout_s
    while not (await ask(feeder, {"op": "mark"}))["received"]["video"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the feeder sent no video in {timeout_s:g} s")
        await asyncio.sleep(0.05)


def counter(text: str, name: str) -> float | None:
    """A Prometheus counter's value, summed over label sets; None if absent."""
    total, seen = 0.0, False
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric == name or metric.startswith(name + "{"):
            total, seen = total + float(value), True
    return total if seen else None


# ---------------------------------------------------------------------------------------------
# Servers, each measured from /proc
# ---------------------------------------------------------------------------------------------


class Relay:
    """``python -m livecart_relay`` on loopback, fed through an OpenPipe pipe."""

    name = "relay"

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self.secret = secrets.token_urlsafe(32)
        self.tokens = TokenAuthority(self.secret)
        self.service: Any = None

    async def start(self, max_viewers: int) -> None:
        from livecart_core.testing import ServiceProcess

        env = {
            "LIVECART_AUTH_SECRET": self.secret,
            "LIVECART_BUS": "memory",
            "LIVECART_ICE_HOST_ADDRESSES": '["127.0.0.1"]',
            "LIVECART_MAX_SUBSCRIBERS": str(max_viewers + 10),
            "LIVECART_WORKERS": str(self.workers),
            "LIVECART_LOG_LEVEL": "WARNING",
        }
        self.service = ServiceProcess("livecart_relay", env)
        await asyncio.to_thread(self.service.start)

    @property
    def pid(self) -> int:
        return int(self.service.process.pid)

    async def feed_to(self) -> tuple[tuple[str, int], tuple[str, int]]:
        token = self.tokens.issue(TENANT, "bench", ("publish",), room=ROOM)
        streams = [
            pb.PipeStream(
                kind="video",
                payload_type=VIDEO_PT,
                mime_type="video/H264",
                clock_rate=VIDEO_CLOCK,
                fmtp=H264_FMTP,
            ),
            pb.PipeStream(
                kind="audio",
                payload_type=AUDIO_PT,
                mime_type="audio/opus",
                clock_rate=AUDIO_CLOCK,
                channels=2,
                fmtp="minptime=10;useinbandfec=1",
            ),
        ]
        request = pb.OpenPipeRequest(
            room_id=ROOM,
            stream_id=secrets.token_hex(8),
            streams=streams,
            ingest_time_extension_id=pipe.INGEST_TIME_EXTENSION_ID,
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.service.grpc_port}") as channel:
            response = await pb_grpc.RelayServiceStub(channel).OpenPipe(
                request, metadata=(("authorization", f"Bearer {token}"),), timeout=10
            )
        host = "127.0.0.1" if response.host in ("", "0.0.0.0", "::") else response.host
        return (host, response.port), (host, response.port)

    def target(self) -> Target:
        token = self.tokens.issue(TENANT, "viewer", ("play",), room=ROOM)
        return Target("relay", self.service.url, "127.0.0.1", token)

    async def metrics(self) -> str:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"{self.service.url}/metrics")).text

    async def stop(self) -> None:
        if self.service is not None:
            await asyncio.to_thread(self.service.stop)

    def log_tail(self) -> str:
        return str(self.service.output[-3000:]) if self.service is not None else ""


class Janus:
    """Debian's Janus in a network namespace of its own (it skips loopback for ICE)."""

    name = "janus"

    def __init__(self) -> None:
        binary = shutil.which("janus") or shutil.which("janus", path="/usr/bin:/usr/sbin")
        if binary is None:
            raise SystemExit("janus is not installed: `make janus`")
        self.binary = binary
        libs = next(Path("/usr/lib").glob("*/janus/plugins"), None)
        if libs is None:
            raise SystemExit("janus's plugins folder is missing (/usr/lib/*/janus/plugins)")
        self.libs = libs.parent
        self.host_ip, self.janus_ip = free_subnet()
        self.lab = contextlib.ExitStack()
        self.workdir = Path(tempfile.mkdtemp(prefix="janus-bench-"))
        self.process: asyncio.subprocess.Process | None = None

    def configure(self) -> None:
        keep = {"plugins": "libjanus_streaming.so", "transports": "libjanus_http.so"}

        def disabled(folder: str) -> str:
            names = sorted(p.name for p in (self.libs / folder).glob("*.so"))
            return ",".join(n for n in names if n != keep.get(folder))

        files = {
            "janus.jcfg": f"""
general: {{
    configs_folder = "{self.workdir}"
    plugins_folder = "{self.libs / "plugins"}"
    transports_folder = "{self.libs / "transports"}"
    events_folder = "{self.libs / "events"}"
    loggers_folder = "{self.libs / "loggers"}"
    debug_level = 3
    session_timeout = 0
    server_name = "bench"
}}
media: {{ rtp_port_range = "20000-40000" }}
nat: {{ nice_debug = false }}
plugins: {{ disable = "{disabled("plugins")}" }}
transports: {{ disable = "{disabled("transports")}" }}
loggers: {{ disable = "{disabled("loggers")}" }}
events: {{ broadcast = false
    disable = "{disabled("events")}" }}
""",
            "janus.transport.http.jcfg": f"""
general: {{ json = "compact"
    base_path = "/janus"
    http = true
    port = 8088
    ip = "{self.janus_ip}"
    https = false }}
admin: {{ admin_http = false
    admin_https = false }}
""",
            "janus.plugin.streaming.jcfg": f"""
general: {{ }}
bench: {{
    type = "rtp"
    id = 1
    description = "bench"
    media = (
        {{ type = "video"
           mid = "v"
           port = 5004
           pt = {VIDEO_PT}
           codec = "h264"
           fmtp = "{H264_FMTP}" }},
        {{ type = "audio"
           mid = "a"
           port = 5002
           pt = {AUDIO_PT}
           codec = "opus" }}
    )
}}
""",
        }
        for name, text in files.items():
            (self.workdir / name).write_text(text)

    def network(self) -> netlab.Namespace:
        """A namespace joined to this one by a plain veth pair (no impairment)."""
        reason = netlab.unavailable()
        if reason is not None:
            raise SystemExit(f"Janus's side: {reason} (or --only relay)")
        netlab.sweep()
        ns = self.lab.enter_context(netlab.namespace("janus"))
        here, there = (f"lcj{secrets.token_hex(3)}{end}" for end in "hj")
        run = functools.partial(subprocess.run, check=True, capture_output=True)
        run(["ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", ns.name])
        self.lab.callback(subprocess.run, ["ip", "link", "del", here], capture_output=True)
        run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", here])
        run(["ip", "link", "set", here, "up"])
        run(["ip", "-n", ns.name, "addr", "add", f"{self.janus_ip}/30", "dev", there])
        run(["ip", "-n", ns.name, "link", "set", there, "up"])
        return ns

    async def start(self, max_viewers: int) -> None:
        self.configure()
        ns = await asyncio.to_thread(self.network)
        config = ["-F", str(self.workdir), "-C", str(self.workdir / "janus.jcfg"), "-o"]
        with (self.workdir / "janus.log").open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *ns.command(self.binary, *config), stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            while True:
                if self.process.returncode is not None or time.monotonic() > deadline:
                    raise SystemExit(f"Janus did not start:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.url}/info", timeout=1)).status_code == 200:
                        return
                await asyncio.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://{self.janus_ip}:8088/janus"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid  # `ip netns exec` execs janus: the same process

    async def feed_to(self) -> tuple[tuple[str, int], tuple[str, int]]:
        return (self.janus_ip, 5004), (self.janus_ip, 5002)

    def target(self) -> Target:
        return Target("janus", self.url, self.host_ip)

    async def metrics(self) -> str:
        return ""

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await asyncio.to_thread(self.lab.close)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self) -> str:
        path = self.workdir / "janus.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


Server = Relay | Janus


def free_subnet() -> tuple[str, str]:
    """Both ends of a /30 in 10.190-199.x.y that no route here covers yet."""
    routes = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True
    ).stdout
    for _ in range(100):
        b, c, d = random.randint(190, 199), random.randint(0, 255), random.randrange(0, 256, 4)
        if f"10.{b}.{c}." not in routes:
            return f"10.{b}.{c}.{d + 1}", f"10.{b}.{c}.{d + 2}"
    raise SystemExit("no free 10.190-199.x.y/30 subnet for Janus's namespace")


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


async def child(mode: str, spec: dict[str, Any]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, __file__, mode, json.dumps(spec),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def ask(process: asyncio.subprocess.Process, command: dict[str, Any]) -> dict[str, Any]:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write((json.dumps(command) + "\n").encode())
    await process.stdin.drain()
    line = await process.stdout.readline()
    if not line:
        await process.wait()
        raise RuntimeError(f"a load process exited {process.returncode} without answering")
    answer: dict[str, Any] = json.loads(line)
    return answer


async def finish(process: asyncio.subprocess.Process) -> None:
    assert process.stdin is not None
    with contextlib.suppress(ConnectionError):
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        await process.wait()


@dataclass
class Window:
    """One N's rates, each process's over its own measured interval."""

    viewers: int
    server_cpu: float  # CPU seconds per second
    fed: dict[str, float]  # RTP packets per second from the feeder, by kind
    received: dict[str, float]  # RTP packets per second over all viewers, by kind
    loadgen_cpu: float  # CPU seconds per second, the load processes together
    latency_ms: tuple[float, float] | None

    @property
    def packets_per_s(self) -> float:
        return sum(self.received.values())


@dataclass
class SideResult:
    first_frames: list[FirstFrame]
    keyframe_waits: int | None  # the relay's count of viewers that missed the replay
    windows: list[Window]


@contextlib.asynccontextmanager
async def running(server: Server, max_viewers: int) -> AsyncIterator[Server]:
    try:
        await server.start(max_viewers)
        yield server
    finally:
        await server.stop()


async def run_side(server: Server, media_path: Path, args: argparse.Namespace,
                   counts: list[int], latency_counts: set[int]) -> SideResult:  # fmt: skip
    async with running(server, max(counts, default=1)):
        video_to, audio_to = await server.feed_to()
        feeder = await child(
            "feeder", {"media": str(media_path), "video": video_to, "audio": audio_to}
        )
        generators: list[tuple[asyncio.subprocess.Process, list[int]]] = []
        try:
            target = server.target()
            first_frames = []
            await until_fed(feeder)
            waits_before = counter(await server.metrics(), KEYFRAME_WAITS)
            async with httpx.AsyncClient(timeout=20) as http:
                for _ in range(args.first_frames):
                    await asyncio.sleep(random.uniform(0.2, args.gop_s + 0.2))
                    first_frames.append(await first_frame(http, target))
            waits_after = counter(await server.metrics(), KEYFRAME_WAITS)
            waits = None
            if waits_before is not None and waits_after is not None:
                waits = round(waits_after - waits_before)
            windows = []
            for n in counts:
                await add_viewers(generators, n, target, args.per_process)
                await asyncio.sleep(args.warmup)
                windows.append(await measure(server, feeder, generators, n, args.seconds,
                                             n in latency_counts))  # fmt: skip
            return SideResult(first_frames, waits, windows)
        except Exception as exc:
            raise SystemExit(f"{server.name}: {exc!r}\n--- log ---\n{server.log_tail()}") from exc
        finally:
            for process, _ in generators:
                await finish(process)
            await finish(feeder)


async def add_viewers(generators: list[tuple[asyncio.subprocess.Process, list[int]]], n: int,
                      target: Target, per_process: int) -> None:  # fmt: skip
    """Bring the viewers up to `n`, filling each load process to `per_process` in turn."""
    missing = n - sum(count[0] for _, count in generators)
    while missing > 0:
        if not generators or generators[-1][1][0] >= per_process:
            spec = {"target": dataclass_dict(target)}
            generators.append((await child("generator", spec), [0]))
        process, count = generators[-1]
        step = min(missing, per_process - count[0])
        count[0] = (await ask(process, {"op": "add", "n": step}))["viewers"]
        missing -= step


def dataclass_dict(target: Target) -> dict[str, str]:
    return {"side": target.side, "url": target.url, "ice": target.ice, "token": target.token}


async def measure(server: Server, feeder: asyncio.subprocess.Process,
                  generators: list[tuple[asyncio.subprocess.Process, list[int]]],
                  n: int, seconds: float, latency: bool) -> Window:  # fmt: skip
    processes = [feeder, *(p for p, _ in generators)]

    async def marks() -> list[dict[str, Any]]:
        return await asyncio.gather(*(ask(p, {"op": "mark"}) for p in processes))

    metrics_before = await server.metrics() if latency else ""
    before = await marks()
    cpu, started = cpu_seconds(server.pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, elapsed = cpu_seconds(server.pid) - cpu, time.monotonic() - started
    after = await marks()

    def rate(b: dict[str, Any], a: dict[str, Any], kind: str) -> float:
        return float(a["received"][kind] - b["received"][kind]) / float(a["at"] - b["at"])

    fed = {kind: rate(before[0], after[0], kind) for kind in ("audio", "video")}
    pairs = list(zip(before[1:], after[1:], strict=True))
    received = {kind: sum(rate(b, a, kind) for b, a in pairs) for kind in ("audio", "video")}
    loadgen = sum((a["cpu"] - b["cpu"]) / (a["at"] - b["at"]) for b, a in pairs)
    quantiles = None
    if latency:
        buckets_before = histogram(metrics_before, LATENCY_METRIC)
        buckets_after = histogram(await server.metrics(), LATENCY_METRIC)
        if buckets_before is not None and buckets_after is not None:
            quantiles = latency_quantiles(buckets_before, buckets_after)
    return Window(n, cpu / elapsed, fed, received, loadgen, quantiles)


def histogram(text: str, name: str) -> dict[float, float] | None:
    """Cumulative bucket counts by upper bound, summed over label sets; None if absent."""
    buckets: dict[float, float] = {}
    prefix = name + "_bucket{"
    for line in text.splitlines():
        if line.startswith(prefix):
            labels, _, value = line[len(prefix) :].rpartition("} ")
            le = next(p for p in labels.split(",") if p.startswith("le="))[4:-1]
            bound = math.inf if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return buckets or None


def latency_quantiles(before: dict[float, float], after: dict[float, float]
                      ) -> tuple[float, float] | None:  # fmt: skip
    """p50 and p95 in ms of what the histogram counted between two scrapes (linear in-bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return None

    def quantile(q: float) -> float:
        rank, lower, below = q * total, 0.0, 0.0
        for bound, cumulative in zip(bounds, counts, strict=True):
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower * 1000
                share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
                return 1000 * (lower + share * (bound - lower))
            lower, below = bound, cumulative
        return lower * 1000

    return quantile(0.50), quantile(0.95)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def us_per_packet(window: Window) -> float:
    return 1e6 * window.server_cpu / max(1.0, window.packets_per_s)


def slope_us(windows: Sequence[Window]) -> float | None:
    """Least-squares slope of server CPU over packets received, µs per packet."""
    if len(windows) < 2:
        return None
    xs = [w.packets_per_s for w in windows]
    ys = [w.server_cpu for w in windows]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    return 1e6 * sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def report(name: str, result: SideResult, media: Media, cpu_counts: list[int]) -> None:
    prefix = "" if name == "relay" else "janus_"
    if result.first_frames:
        frames = [f.ms for f in result.first_frames]
        undecodable = sum(f.undecodable_start for f in result.first_frames)
        print(f"{prefix}first_frame_tries={len(frames)} joins")
        print(f"{prefix}first_frame_p50_ms={percentile(frames, 0.5):.0f} ms")
        print(f"{prefix}first_frame_p95_ms={percentile(frames, 0.95):.0f} ms")
        print(f"{prefix}first_frame_max_ms={max(frames):.0f} ms")
        print(f"{prefix}first_frame_undecodable_starts={undecodable} joins")
        if result.keyframe_waits is not None:
            print(f"{prefix}first_frame_keyframe_waits={result.keyframe_waits} joins")
    for w in result.windows:
        delivered = 100 * w.packets_per_s / (w.viewers * sum(w.fed.values()))
        delivered_video = 100 * w.received["video"] / (w.viewers * w.fed["video"])
        print(f"{name}_us_per_packet_subscriber_n{w.viewers}={us_per_packet(w):.1f} us")
        print(f"{name}_cpu_pct_n{w.viewers}={100 * w.server_cpu:.1f} %")
        print(f"{name}_delivered_pct_n{w.viewers}={delivered:.1f} %")
        print(f"{name}_delivered_video_pct_n{w.viewers}={delivered_video:.1f} %")
        print(f"{name}_loadgen_cpu_pct_n{w.viewers}={100 * w.loadgen_cpu:.1f} %")
        if w.latency_ms is not None:
            p50, p95 = w.latency_ms
            print(f"platform_latency_p50_ms_n{w.viewers}={p50:.1f} ms")
            print(f"platform_latency_p95_ms_n{w.viewers}={p95:.1f} ms")
    slope = slope_us([w for w in result.windows if w.viewers in cpu_counts])
    if slope is not None:
        print(f"{name}_us_per_extra_subscriber_packet={slope:.1f} us")


def headline(name: str, window: Window, media: Media) -> float:
    us = us_per_packet(window)
    print(f"{name}_us_per_packet_subscriber={us:.1f} us")
    print(f"{name}_subscribers_per_core_720p={1e6 / (us * media.packets_per_s):.0f} subscribers")
    return us


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", default="10,25,50", help="N for the CPU figures")
    parser.add_argument("--latency-subscribers", default="1,20", help="N for platform latency")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per N")
    parser.add_argument("--warmup", type=float, default=3.0, help="after each step of viewers")
    parser.add_argument("--per-process", type=int, default=25, help="viewers per load process")
    parser.add_argument("--first-frames", type=int, default=10, help="first-frame tries")
    parser.add_argument("--media-seconds", type=float, default=10.0, help="the feed's loop")
    parser.add_argument("--gop-s", type=float, default=1.0, help="keyframe interval")
    parser.add_argument("--bitrate", type=int, default=1_500_000, help="video, bits per second")
    parser.add_argument("--only", choices=["relay", "janus"])
    parser.add_argument("--relay-workers", type=int, default=1, help="LIVECART_WORKERS")
    args = parser.parse_args()
    cpu_counts = sorted({int(n) for n in args.subscribers.split(",") if n})
    latency_counts = {int(n) for n in args.latency_subscribers.split(",") if n}
    media_path = cached_media(args.media_seconds, args.gop_s, args.bitrate)
    media = load_media(media_path)
    print(f"stream_packets_per_s={media.packets_per_s:.0f} packets/s")
    print(f"stream_video_kbps={media.kbps(True):.0f} kbit/s")
    print(f"stream_audio_kbps={media.kbps(False):.0f} kbit/s")
    results: dict[str, SideResult] = {}
    if args.only != "janus":
        counts = sorted(set(cpu_counts) | latency_counts)
        results["relay"] = await run_side(
            Relay(args.relay_workers), media_path, args, counts, latency_counts
        )
        report("relay", results["relay"], media, cpu_counts)
        if latency_counts and all(w.latency_ms is None for w in results["relay"].windows):
            print(f"# the relay's /metrics has no {LATENCY_METRIC}: no platform latency",
                  file=sys.stderr)  # fmt: skip
    if args.only != "relay":
        results["janus"] = await run_side(Janus(), media_path, args, cpu_counts, set())
        report("janus", results["janus"], media, cpu_counts)
    common = [
        n
        for n in cpu_counts
        if all(any(w.viewers == n for w in r.windows) for r in results.values())
    ]
    if not common:
        return
    largest = {
        name: next(w for w in r.windows if w.viewers == common[-1]) for name, r in results.items()
    }
    us = {name: headline(name, window, media) for name, window in largest.items()}
    if len(us) == 2:
        print(f"relay_vs_janus_ratio={us['janus'] / us['relay']:.2f} x")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "feeder":
        feeder_main(json.loads(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "generator":
        uvloop.run(generator_main(json.loads(sys.argv[2])))
    else:
        asyncio.run(main())
