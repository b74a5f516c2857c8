"""Relay CPU per forwarded RTP packet per subscriber, aiortc peers on loopback.

The relay (`livecart_media.webrtc`: ReceiveTap in, one RawSender per subscriber and kind)
runs in its own process; the publisher (aiortc encoding VP8 + Opus) and the subscribers
run in this one. Subscribers are raw ReceiveTaps that count packets without decoding,
so they cost less than the relay. Prints `name=value unit` lines:

- `relay_us_per_packet_subscriber_nN`: relay process CPU ÷ packets sent to subscribers,
  with N subscribers (receive side, RTCP and timers included, so it falls as N grows).
- `relay_us_per_extra_subscriber_packet`: the slope between the smallest and largest N,
  the marginal cost of one more subscriber's packet.
- `relay_decoder_threads_cpu_ms`: CPU of the relay's idle aiortc decoder threads.

`uv run python bench/relay_forward.py [--subscribers 1,8] [--seconds 10]` (about 40 s).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import threading
import time
from multiprocessing.connection import Connection

from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)

from livecart_media import webrtc
from livecart_media.rtp.cache import KeyframeRequests
from livecart_media.rtp.header import RtpHeader
from livecart_media.testing import MovingPicture


def peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def thread_cpu_seconds(native_id: int) -> float:
    fields = open(f"/proc/self/task/{native_id}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def relay(conn: Connection, subscribers: int) -> None:
    loop = asyncio.get_running_loop()

    async def receive() -> str:
        return str(await loop.run_in_executor(None, conn.recv))

    senders: list[webrtc.Subscriber] = []
    limiter = KeyframeRequests()

    async def on_rtp(
        stream: webrtc.ForwardedStream, packet: bytes, header: RtpHeader, start: bool
    ) -> None:
        for subscriber in senders:
            sender = subscriber.senders.get(stream.kind)
            if sender is not None:
                await sender.forward(packet, header, start)

    async def on_keyframe_request(sender: webrtc.RawSender) -> None:
        if limiter.should_forward(sender.stream.kind, time.monotonic()):
            await tap.request_keyframe(sender.stream.kind)

    pcs = [peer()]
    tap = await webrtc.answer_publisher(
        pcs[0], RTCSessionDescription(await receive(), "offer"), on_rtp
    )
    conn.send(pcs[0].localDescription.sdp)
    for _ in range(subscribers):
        pcs.append(peer())
        subscriber = await webrtc.answer_subscriber(
            pcs[-1],
            RTCSessionDescription(await receive(), "offer"),
            tap.streams,
            on_keyframe_request,
        )
        senders.append(subscriber)
        conn.send(pcs[-1].localDescription.sdp)
    await tap.send_remb(1_500_000)  # aiortc's VP8 maximum; it starts at 500 kbit/s
    await asyncio.sleep(2.0)
    await receive()  # start
    sent = sum(s.sent for sub in senders for s in sub.senders.values())
    received, cpu = tap.received, time.process_time()
    decoders = [t.native_id for t in threading.enumerate() if t.name.endswith("-decoder")]
    decoder_cpu = sum(thread_cpu_seconds(n) for n in decoders if n is not None)
    await receive()  # stop
    cpu = time.process_time() - cpu
    sent = sum(s.sent for sub in senders for s in sub.senders.values()) - sent
    decoder_cpu = sum(thread_cpu_seconds(n) for n in decoders if n is not None) - decoder_cpu
    conn.send(f"{cpu} {sent} {tap.received - received} {decoder_cpu} {len(decoders)}")
    for pc in pcs:
        await pc.close()


def relay_process(conn: Connection, subscribers: int) -> None:
    with webrtc.pinned_host_addresses(["127.0.0.1"]):
        asyncio.run(relay(conn, subscribers))


async def run(subscribers: int, seconds: float) -> tuple[float, int, int, float, int]:
    conn, child_conn = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=relay_process, args=(child_conn, subscribers)
    )
    process.start()
    loop = asyncio.get_running_loop()
    publisher = peer()
    publisher.addTrack(MovingPicture(640, 360))  # noise: the full bitrate
    publisher.addTrack(AudioStreamTrack())
    await publisher.setLocalDescription(await publisher.createOffer())
    conn.send(publisher.localDescription.sdp)
    answer = await loop.run_in_executor(None, conn.recv)
    await publisher.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    viewers: list[RTCPeerConnection] = []
    taps: list[webrtc.ReceiveTap] = []

    async def count(
        stream: webrtc.ForwardedStream, packet: bytes, header: RtpHeader, start: bool
    ) -> None:
        return None

    for _ in range(subscribers):
        viewer = peer()
        viewer.addTransceiver("video", direction="recvonly")
        viewer.addTransceiver("audio", direction="recvonly")
        await viewer.setLocalDescription(await viewer.createOffer())
        conn.send(viewer.localDescription.sdp)
        answer = await loop.run_in_executor(None, conn.recv)
        await viewer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        taps.append(webrtc.ReceiveTap(viewer, count))
        viewers.append(viewer)
    deadline = time.monotonic() + 20
    while not all(t.received > 100 for t in taps):
        assert time.monotonic() < deadline, "the subscribers got no media"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    conn.send("start")
    await asyncio.sleep(seconds)
    conn.send("stop")
    cpu, sent, received, decoder_cpu, decoders = (
        await loop.run_in_executor(None, conn.recv)
    ).split()
    for pc in [publisher, *viewers]:
        await pc.close()
    process.join(10)
    return float(cpu), int(sent), int(received), float(decoder_cpu), int(decoders)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", default="1,8")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    counts = [int(n) for n in args.subscribers.split(",")]
    results = {}
    with webrtc.pinned_host_addresses(["127.0.0.1"]):
        for n in counts:
            cpu, sent, received, decoder_cpu, decoders = await run(n, args.seconds)
            results[n] = (cpu, sent)
            print(f"relay_packets_in_per_s_n{n}={received / args.seconds:.0f} packets/s")
            print(f"relay_cpu_pct_n{n}={100 * cpu / args.seconds:.1f} %")
            print(f"relay_us_per_packet_subscriber_n{n}={1e6 * cpu / sent:.1f} us")
            print(f"relay_decoder_threads_n{n}={decoders} threads")
            print(f"relay_decoder_threads_cpu_ms_n{n}={1000 * decoder_cpu:.0f} ms")
    low, high = min(counts), max(counts)
    if high > low:
        (cpu_low, sent_low), (cpu_high, sent_high) = results[low], results[high]
        slope = (cpu_high - cpu_low) / (sent_high - sent_low)
        print(f"relay_us_per_extra_subscriber_packet={1e6 * slope:.1f} us")


if __name__ == "__main__":
    asyncio.run(main())
