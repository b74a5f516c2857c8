"""The relay's rooms: one publisher's streams forwarded to that room's subscribers.

A `MediaRoom` wires a publisher's `ReceiveTap` to each subscriber's `RawSender`s and sends
subscribers' keyframe requests upstream, at most one per kind per interval. `MediaRooms`
is the process's registry by (tenant, room): it creates the peer connections, announces
the configured ICE host addresses and keeps the subscriber count under its capacity.

Publishers arrive through `MediaRooms.publish`; the WHIP endpoint that calls it belongs
to the ingest service, which is not connected yet.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from livecart_core.errors import Conflict, InvalidArgument, NotFound
from livecart_media.errors import OverCapacity, UnsupportedCodecs
from livecart_media.rtp.cache import KeyframeRequests
from livecart_media.rtp.header import RtpHeader
from livecart_media.webrtc import (
    ForwardedStream,
    Kind,
    NegotiationError,
    RawSender,
    ReceiveTap,
    Subscriber,
    answer_publisher,
    answer_subscriber,
    pinned_host_addresses,
)

logger = logging.getLogger(__name__)

_GONE = ("closed", "failed")
# What aiortc raises for an offer it cannot parse or use (its SDP parser asserts).
_MALFORMED = (ValueError, AssertionError, IndexError, KeyError, TypeError)


@dataclass(frozen=True, slots=True)
class RoomKey:
    tenant: str
    room: str


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


class MediaRoom:
    """One publisher and the subscribers its packets are forwarded to, without decoding."""

    def __init__(self, key: RoomKey, *, keyframe_interval: float = 0.5) -> None:
        self.key = key
        self.tap: ReceiveTap | None = None
        self.publisher: RTCPeerConnection | None = None
        self.sessions: dict[str, SubscriberSession] = {}
        self._targets: _Targets = {}
        self._keyframes = KeyframeRequests(keyframe_interval)
        self._tasks: set[asyncio.Task[object]] = set()

    async def publish(self, pc: RTCPeerConnection, offer: RTCSessionDescription) -> ReceiveTap:
        """Answer the publisher's offer on `pc` (the answer is `pc.localDescription`).

        Raises Conflict if the room has a publisher, UnsupportedCodecs or InvalidArgument
        for an offer the relay cannot take.
        """
        if self.publisher is not None:
            raise Conflict(f"room {self.key.room!r} already has a publisher")
        self.publisher = pc
        try:
            self.tap = await _negotiate(answer_publisher(pc, offer, self.forward))
        except BaseException:
            self.publisher = None
            raise
        return self.tap

    async def subscribe(
        self, pc: RTCPeerConnection, offer: RTCSessionDescription
    ) -> SubscriberSession:
        """Answer a viewer's recvonly offer on `pc`; it gets packets from the next keyframe.

        The session leaves the room by itself when `pc` closes or fails. Raises NotFound
        without a publisher, UnsupportedCodecs or InvalidArgument for an unusable offer.
        """
        if self.tap is None:
            raise NotFound(f"room {self.key.room!r} has no publisher")
        subscriber = await _negotiate(
            answer_subscriber(pc, offer, self.tap.streams, self._on_keyframe_request)
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
    ) -> None:
        """The tap's callback: one publisher packet to every subscriber of its kind."""
        for session, sender in self._targets.get(stream.kind, ()):
            await self.deliver(session, sender, packet, header, start)

    async def deliver(
        self,
        session: SubscriberSession,
        sender: RawSender,
        packet: bytes,
        header: RtpHeader,
        start: bool,
    ) -> None:
        """Write one packet to one subscriber (a seam for per-subscriber policy)."""
        await sender.forward(packet, header, start)

    async def close(self) -> None:
        """Close every subscriber and the publisher."""
        for session_id in list(self.sessions):
            await self.remove(session_id)
        if self.publisher is not None:
            await self.publisher.close()
        for task in list(self._tasks):
            task.cancel()

    async def _on_keyframe_request(self, sender: RawSender) -> None:
        kind = sender.stream.kind
        if self.tap is not None and self._keyframes.should_forward(kind, time.monotonic()):
            self._spawn(self.tap.request_keyframe(kind))

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
        ice_host_addresses: Sequence[str] = (),
        keyframe_interval: float = 0.5,
    ) -> None:
        self.max_subscribers = max_subscribers
        self.retry_after_s = retry_after_s
        self._addresses = tuple(ice_host_addresses)
        self._keyframe_interval = keyframe_interval
        self._rooms: dict[RoomKey, MediaRoom] = {}
        self._joining = 0
        # Pinning the host addresses patches aioice for the process: one negotiation at a time.
        self._gathering = asyncio.Lock()

    def get(self, key: RoomKey) -> MediaRoom | None:
        return self._rooms.get(key)

    @property
    def subscriber_count(self) -> int:
        return sum(len(room.sessions) for room in self._rooms.values())

    async def publish(self, key: RoomKey, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Take a publisher into `key`'s room and return the answer to its offer.

        The room ends, its subscribers with it, when the publisher's connection closes or
        fails. Raises Conflict if the room has a publisher.
        """
        room = self._rooms.get(key)
        if room is None:
            room = self._rooms[key] = MediaRoom(key, keyframe_interval=self._keyframe_interval)
        pc = _peer()
        try:
            async with self._ice():
                await room.publish(pc, offer)
        except BaseException:
            await pc.close()
            if room.publisher is None and not room.sessions:
                self._rooms.pop(key, None)
            raise

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in _GONE and self._rooms.get(key) is room:
                del self._rooms[key]
                await room.close()

        return pc.localDescription

    async def subscribe(self, key: RoomKey, offer: RTCSessionDescription) -> SubscriberSession:
        """A new subscriber of `key`'s room; its answer is `session.answer`.

        Raises NotFound (no publisher), OverCapacity, UnsupportedCodecs or InvalidArgument.
        """
        room = self._rooms.get(key)
        if room is None or room.tap is None:
            raise NotFound(f"room {key.room!r} has no publisher")
        if self.subscriber_count + self._joining >= self.max_subscribers:
            raise OverCapacity(
                f"this relay serves its maximum of {self.max_subscribers} viewers",
                retry_after_s=self.retry_after_s,
            )
        self._joining += 1
        pc = _peer()
        try:
            async with self._ice():
                return await room.subscribe(pc, offer)
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

    async def close(self) -> None:
        rooms, self._rooms = list(self._rooms.values()), {}
        for room in rooms:
            await room.close()

    @asynccontextmanager
    async def _ice(self) -> AsyncIterator[None]:
        if not self._addresses:
            yield
            return
        async with self._gathering:
            with pinned_host_addresses(self._addresses):
                yield


def _peer() -> RTCPeerConnection:
    # Host candidates only: a relay needs no STUN server to learn its own addresses.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def _negotiate(answering: Awaitable[T]) -> T:
    try:
        return await answering
    except NegotiationError as exc:
        raise UnsupportedCodecs(str(exc)) from None
    except _MALFORMED as exc:
        raise InvalidArgument(f"malformed SDP offer: {exc or type(exc).__name__}") from None
