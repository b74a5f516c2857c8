"""The relay's rooms: one publisher's streams forwarded to that room's subscribers.

A `MediaRoom` owns one `ForwardedStream` per kind. Its source feeds them: an ingest pipe
(`livecart_media.pipe.PipeIn`, opened by ingest over gRPC: the production path) or a
WebRTC publisher's `ReceiveTap` straight into the relay (`publish`: tests and benches).
Each packet goes to every subscriber's `RawSender` of its kind; subscribers' keyframe
requests go to the source, at most one per kind per interval.

The room outlives its source: when a pipe closes without the stream ending, or goes
silent, the room waits `publisher_grace_s` for the publisher to come back. A new pipe
feeds the same streams, so existing viewers carry on from its first keyframe with their
numbering continued (`RawSender` sees the new SSRC), unless the codec changed.

`MediaRooms` is the process's registry by (tenant, room): it opens pipes, creates the
peer connections, announces the configured ICE host addresses and keeps the subscriber
count under its capacity.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
import weakref
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aiortc import RTCPeerConnection, RTCSessionDescription

from livecart_core.errors import Conflict, NotFound
from livecart_media.errors import OverCapacity
from livecart_media.pipe import PipeIn
from livecart_media.ports import PortRange
from livecart_media.rtp.cache import KeyframeRequests
from livecart_media.rtp.header import RtpHeader
from livecart_media.webrtc import (
    ForwardedStream,
    IceGathering,
    Kind,
    RawSender,
    ReceiveTap,
    Subscriber,
    answer_publisher,
    answer_subscriber,
    negotiate,
    peer,
)
from livecart_media.whipwhep import RoomKey
from livecart_relay import metrics

logger = logging.getLogger(__name__)

_GONE = ("closed", "failed")


@dataclass(eq=False)
class SubscriberSession:
    """One WHEP viewer: its peer connection and the senders that write to it."""

    id: str
    pc: RTCPeerConnection
    subscriber: Subscriber

    @property
    def answer(self) -> str:
        return str(self.pc.localDescription.sdp)


_Targets = dict[Kind, tuple[tuple[SubscriberSession, RawSender], ...]]
T = TypeVar("T")


class Source(Protocol):
    """What feeds a room: an ingest pipe or a WebRTC publisher's tap."""

    async def request_keyframe(self, kind: Kind = "video") -> bool: ...


@dataclass(frozen=True, slots=True)
class PipeOwner:
    """Who holds a room's pipe: the publisher's session and subject."""

    pipe_id: str
    stream_id: str
    subject: str


class MediaRoom:
    """One publisher's streams and the subscribers they are forwarded to, without decoding."""

    def __init__(self, key: RoomKey, *, keyframe_interval: float = 0.5) -> None:
        self.key = key
        self.streams: dict[Kind, ForwardedStream] = {}
        self.source: Source | None = None
        self.publisher: RTCPeerConnection | None = None
        self.pipe: PipeIn | None = None
        self.owner: PipeOwner | None = None
        self.sessions: dict[str, SubscriberSession] = {}
        self.orphaned_at: float | None = None
        """When the room lost its source without the stream ending (None: it has one)."""
        self._targets: _Targets = {}
        self._keyframes = KeyframeRequests(keyframe_interval)
        self._waited: weakref.WeakSet[RawSender] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[object]] = set()

    @property
    def tap(self) -> ReceiveTap | None:
        return self.source if isinstance(self.source, ReceiveTap) else None

    async def publish(self, pc: RTCPeerConnection, offer: RTCSessionDescription) -> ReceiveTap:
        """Answer a WebRTC publisher's offer on `pc` (the answer is `pc.localDescription`).

        Raises Conflict if the room has a source, UnsupportedCodecs or InvalidArgument
        for an offer the relay cannot take.
        """
        if self.source is not None or self.publisher is not None:
            raise Conflict(f"room {self.key.room!r} already has a publisher")
        self.publisher = pc
        try:
            tap = await negotiate(answer_publisher(pc, offer, self.forward))
        except BaseException:
            self.publisher = None
            raise
        self.streams = tap.streams
        self.source = tap
        return tap

    def attach(self, pipe: PipeIn, owner: PipeOwner) -> None:
        """Feed the room from `pipe`, whose routes must use this room's streams."""
        self.pipe, self.owner, self.source = pipe, owner, pipe
        self.orphaned_at = None

    def adopt(self, streams: dict[Kind, ForwardedStream]) -> dict[Kind, ForwardedStream]:
        """The room's streams for a new source declaring `streams`.

        The room keeps its own stream objects where the codec is unchanged, so its viewers
        carry on; if any kind's codec changed, its viewers cannot decode what comes next
        and are closed (a player reconnects and negotiates the new codec).
        """
        same = self.streams.keys() == streams.keys() and all(
            self.streams[kind].mime == stream.mime for kind, stream in streams.items()
        )
        if not same:
            for session_id in list(self.sessions):
                self._spawn(self.remove(session_id))
            self.streams = dict(streams)
        return self.streams

    def detach(self, *, bye: bool = False) -> None:
        """Stop taking packets from the pipe (the room waits for its publisher)."""
        if self.pipe is None:
            return
        if bye:
            self.pipe.send_bye()
        self.pipe.close()
        self.pipe = self.owner = self.source = None
        self.orphaned_at = time.monotonic()

    async def subscribe(
        self, pc: RTCPeerConnection, offer: RTCSessionDescription
    ) -> SubscriberSession:
        """Answer a viewer's recvonly offer on `pc`; it gets packets from the next keyframe.

        The session leaves the room by itself when `pc` closes or fails. Raises NotFound
        without streams, UnsupportedCodecs or InvalidArgument for an unusable offer.
        """
        if not self.streams:
            raise NotFound(f"room {self.key.room!r} has no publisher")
        subscriber = await negotiate(
            answer_subscriber(pc, offer, self.streams, self._on_keyframe_request)
        )
        session = SubscriberSession(secrets.token_urlsafe(16), pc, subscriber)
        self.sessions[session.id] = session
        self._retarget()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in _GONE:
                self._spawn(self.remove(session.id))

        return session

    async def remove(self, session_id: str) -> bool:
        """Stop forwarding to a subscriber and close its connection; False if unknown."""
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        self._retarget()
        await session.pc.close()
        return True

    async def forward(
        self, stream: ForwardedStream, packet: bytes, header: RtpHeader, start: bool
    ) -> int:
        """The source's callback: one packet to every subscriber of its kind; how many."""
        targets = self._targets.get(stream.kind, ())
        for session, sender in targets:
            pending = self.deliver(session, sender, packet, header, start)
            if pending is not None:
                await pending
        return len(targets)

    def deliver(
        self,
        session: SubscriberSession,
        sender: RawSender,
        packet: bytes,
        header: RtpHeader,
        start: bool,
    ) -> Awaitable[bool] | None:
        """Write one packet to one subscriber (a seam for per-subscriber policy): at once on
        the hot path, else the send to await."""
        if sender.forward_now(packet, header):
            return None
        return sender.forward(packet, header, start)

    async def close(self) -> None:
        """Close every subscriber, the pipe and the publisher."""
        for session_id in list(self.sessions):
            await self.remove(session_id)
        self.detach()
        if self.publisher is not None:
            await self.publisher.close()
        for task in list(self._tasks):
            task.cancel()

    async def _on_keyframe_request(self, sender: RawSender) -> None:
        if sender.waiting_for_keyframe and sender not in self._waited:
            # A new viewer that could not start on the cached GOP: it waits for the
            # keyframe this asks for (a keyframe interval, if the publisher ignores PLIs).
            self._waited.add(sender)
            metrics.KEYFRAME_WAITS.inc()
        kind = sender.stream.kind
        if self.source is not None and self._keyframes.should_forward(kind, time.monotonic()):
            self._spawn(self.source.request_keyframe(kind))

    def _retarget(self) -> None:
        # A fresh tuple per change: forward() may be mid-loop when a session joins or leaves.
        by_kind: dict[Kind, list[tuple[SubscriberSession, RawSender]]] = {}
        for session in self.sessions.values():
            for kind, sender in session.subscriber.senders.items():
                by_kind.setdefault(kind, []).append((session, sender))
        self._targets = {kind: tuple(pairs) for kind, pairs in by_kind.items()}

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class MediaRooms:
    """The process's rooms by (tenant, room), with a cap on subscribers over all rooms."""

    def __init__(
        self,
        *,
        max_subscribers: int,
        retry_after_s: int = 5,
        connect_timeout_s: float | None = None,
        ice_host_addresses: Sequence[str] = (),
        ice_ports: PortRange | None = None,
        pipe_ports: PortRange | None = None,
        keyframe_interval: float = 0.5,
        pipe_host: str = "127.0.0.1",
        pipe_timeout_s: float = 10.0,
        publisher_grace_s: float = 30.0,
    ) -> None:
        self.max_subscribers = max_subscribers
        self.retry_after_s = retry_after_s
        self.connect_timeout_s = connect_timeout_s
        self.pipe_host = pipe_host
        self.pipe_timeout_s = pipe_timeout_s
        self.publisher_grace_s = publisher_grace_s
        self._ice = IceGathering(ice_host_addresses, ice_ports)
        self.pipe_ports = pipe_ports
        self._keyframe_interval = keyframe_interval
        self._rooms: dict[RoomKey, MediaRoom] = {}
        self._joining = 0
        self._watchdog: asyncio.Task[None] | None = None
        self._counted: weakref.WeakKeyDictionary[PipeIn, tuple[int, int]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, key: RoomKey) -> MediaRoom | None:
        return self._rooms.get(key)

    @property
    def subscriber_count(self) -> int:
        return sum(len(room.sessions) for room in self._rooms.values())

    def _room(self, key: RoomKey) -> MediaRoom:
        room = self._rooms.get(key)
        if room is None:
            room = self._rooms[key] = MediaRoom(key, keyframe_interval=self._keyframe_interval)
            metrics.ROOMS.set(len(self._rooms))
        return room

    async def open_pipe(
        self,
        key: RoomKey,
        *,
        stream_id: str,
        subject: str,
        streams: dict[int, ForwardedStream],
        takeover: bool = False,
        ingest_time_extension_id: int = 0,
    ) -> tuple[str, tuple[str, int]]:
        """Open `key`'s pipe for the streams by payload type; returns (pipe id, UDP address).

        The same `stream_id` again gets the same pipe. A room fed by another session is
        taken over when the subject is the same (a publisher reconnecting) or `takeover`
        is set: the old pipe gets a BYE. Otherwise Conflict.
        """
        self._start_watchdog()
        room = self._room(key)
        if room.owner is not None and room.pipe is not None:
            if room.owner.stream_id == stream_id:
                return room.owner.pipe_id, room.pipe.address
            if room.owner.subject != subject and not takeover:
                raise Conflict(
                    f"room {key.room!r} is live from another publisher; "
                    "a token with scope publish:takeover may replace it"
                )
            room.detach(bye=True)
        elif room.publisher is not None:
            raise Conflict(f"room {key.room!r} has a WebRTC publisher on this relay")
        where = self._pipe_address()
        kept = room.adopt({stream.kind: stream for stream in streams.values()})
        routes = {pt: kept[stream.kind] for pt, stream in streams.items()}
        pipe = await PipeIn.open(
            where,
            routes,
            room.forward,
            ingest_time_extension_id=ingest_time_extension_id,
            observe_latency=metrics.PLATFORM_LATENCY.observe,
        )
        owner = PipeOwner(secrets.token_urlsafe(12), stream_id, subject)
        room.attach(pipe, owner)
        metrics.PIPES.set(self._pipe_count())
        for kind in kept:  # viewers that stayed need a keyframe of the new source
            self._request_keyframe(room, kind)
        return owner.pipe_id, pipe.address

    async def close_pipe(self, key: RoomKey, pipe_id: str, *, ended: bool) -> None:
        """Close the pipe `pipe_id` of `key` (a pipe already replaced or gone: nothing to do).

        `ended`: the publisher ended the stream, the room closes now; otherwise it waits
        `publisher_grace_s` for the publisher to come back.
        """
        room = self._rooms.get(key)
        if room is None or room.owner is None or room.owner.pipe_id != pipe_id:
            return
        if ended:
            await self._close_room(room)
        else:
            room.detach()
        metrics.PIPES.set(self._pipe_count())

    async def publish(self, key: RoomKey, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Take a WebRTC publisher into `key`'s room and return the answer to its offer.

        The room ends, its subscribers with it, when the publisher's connection closes or
        fails. Raises Conflict if the room has a publisher.
        """
        room = self._room(key)
        pc = peer()
        try:
            async with self._ice():
                await room.publish(pc, offer)
        except BaseException:
            await pc.close()
            if room.source is None and room.publisher is None and not room.sessions:
                self._rooms.pop(key, None)
            raise

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in _GONE and self._rooms.get(key) is room:
                await self._close_room(room)

        return pc.localDescription

    async def subscribe(self, key: RoomKey, offer: RTCSessionDescription) -> SubscriberSession:
        """A new subscriber of `key`'s room; its answer is `session.answer`.

        Raises NotFound (no publisher), OverCapacity, UnsupportedCodecs or InvalidArgument.
        """
        room = self._rooms.get(key)
        if room is None or not room.streams:
            raise NotFound(f"room {key.room!r} has no publisher")
        if self.subscriber_count + self._joining >= self.max_subscribers:
            raise OverCapacity(
                f"this relay serves its maximum of {self.max_subscribers} viewers",
                retry_after_s=self.retry_after_s,
            )
        self._joining += 1
        pc = peer(self.connect_timeout_s)
        try:
            async with self._ice():
                session = await room.subscribe(pc, offer)
            metrics.VIEWERS.set(self.subscriber_count)
            return session
        except BaseException:
            await pc.close()
            raise
        finally:
            self._joining -= 1

    async def unsubscribe(self, key: RoomKey, session_id: str) -> None:
        """End a subscriber's session; NotFound if the room has no such session."""
        room = self._rooms.get(key)
        if room is None or not await room.remove(session_id):
            raise NotFound("no such WHEP session")

    async def sweep(self, now: float) -> None:
        """Detach silent pipes; close rooms whose publisher did not come back in time."""
        for room in list(self._rooms.values()):
            pipe = room.pipe
            if pipe is not None:
                self._count_pipe(pipe)
            if pipe is not None and now - pipe.last_packet > self.pipe_timeout_s:
                logger.info("pipe of %s went silent; waiting for its publisher", room.key)
                room.detach()
            for session in list(room.sessions.values()):
                if session.subscriber.hopelessly_behind(now):
                    # Its link loses half of what we send: forwarding on only adds to the
                    # congestion. Closed, its player reconnects (perhaps on a better path).
                    logger.info("closing viewer %s of %s: hopelessly behind", session.id, room.key)
                    metrics.VIEWER_CLOSES.labels("behind").inc()
                    await room.remove(session.id)
            if pipe is not None and room.sessions:
                floor = viewers_bitrate([s.subscriber.remb_bitrate for s in room.sessions.values()])
                if floor is not None:
                    pipe.send_remb(floor)
            orphaned = room.orphaned_at
            if orphaned is not None and now - orphaned > self.publisher_grace_s:
                logger.info("publisher of %s did not come back; closing the room", room.key)
                await self._close_room(room)
        metrics.PIPES.set(self._pipe_count())
        metrics.VIEWERS.set(self.subscriber_count)

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        rooms, self._rooms = list(self._rooms.values()), {}
        for room in rooms:
            await room.close()
        metrics.ROOMS.set(0)

    async def _close_room(self, room: MediaRoom) -> None:
        if self._rooms.get(room.key) is room:
            del self._rooms[room.key]
            metrics.ROOMS.set(len(self._rooms))
        await room.close()

    def _count_pipe(self, pipe: PipeIn) -> None:
        # Counted here, about once a second, rather than per packet on the hot path.
        received, dropped = self._counted.get(pipe, (0, 0))
        metrics.PIPE_PACKETS.inc(pipe.received - received)
        metrics.PIPE_DROPPED.inc(pipe.dropped - dropped)
        self._counted[pipe] = (pipe.received, pipe.dropped)

    def _pipe_address(self) -> str | socket.socket:
        """Where a new pipe listens: `pipe_host`, on a free port of `pipe_ports` if set."""
        if self.pipe_ports is None:
            return self.pipe_host
        try:
            return self.pipe_ports.bind_udp(self.pipe_host)
        except OSError as exc:
            raise OverCapacity(
                f"this relay has no free pipe port ({exc})", retry_after_s=self.retry_after_s
            ) from None

    def _pipe_count(self) -> int:
        return sum(room.pipe is not None for room in self._rooms.values())

    def _request_keyframe(self, room: MediaRoom, kind: Kind) -> None:
        if kind == "video" and room.sessions and room.source is not None:
            room._spawn(room.source.request_keyframe(kind))

    def _start_watchdog(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.pipe_timeout_s / 4, self.publisher_grace_s / 4))
            try:
                await self.sweep(time.monotonic())
            except Exception:
                logger.exception("sweeping the relay's rooms failed")


def viewers_bitrate(estimates: Sequence[int | None]) -> int | None:
    """What the publisher should send for a room: the bitrate its viewers' REMBs allow,
    leaving out the weakest tenth (one viewer on a bad link must not lower the picture for
    thousands; one who truly cannot keep up is closed by its receiver reports instead).
    None when no viewer has sent a REMB (players with transport-wide feedback do not)."""
    known = sorted(e for e in estimates if e is not None)
    if not known:
        return None
    return known[len(known) // 10]
