"""WHIP publishers: each one's WebRTC connection, its pipe to the relay, and its lifecycle.

A publisher's offer is answered receive-only with a raw RTP tap (`livecart_media.webrtc`:
nothing is decoded). The relay's `OpenPipe` then gives a UDP address, and every packet
from the publisher goes there as plain RTP (`livecart_media.pipe.PipeOut`), its sender
reports with it. Ingest owns the publisher's leg, the lossy one (4G, WiFi):

- it NACKs gaps in the publisher's sequence numbers (`LossDetector`), because aiortc's
  receiver, which would, never sees the packets;
- it tells the publisher how much to send with REMB: the most allowed, cut when the
  publisher's packets go missing and raised again when they do not (loss-based, as in
  the loss half of Google Congestion Control), and never more than the relay says the
  room's viewers take (their REMBs, without the weakest tenth);
- it answers the relay's NACKs from its own packet cache, and passes the relay's keyframe
  requests on to the publisher, at most one per kind per interval.

The room's state goes on the bus as `StreamLifecycle` events: STARTED when the publisher's
connection is up, STOPPED on a WHIP DELETE, FAILED when the connection is lost or another
publisher took the room over. A lost publisher's pipe is closed with `ended=False`, so the
relay keeps its viewers waiting for the publisher to come back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiortc import RTCPeerConnection, RTCSessionDescription
from google.protobuf.timestamp_pb2 import Timestamp

from livecart.events.v1.stream_lifecycle_pb2 import StreamLifecycle, StreamState
from livecart.relay.v1 import relay_service_pb2 as relay_pb
from livecart_core.auth import Principal, TokenAuthority
from livecart_core.bus import EventBus
from livecart_core.errors import Conflict, NotFound, PermissionDenied
from livecart_ingest.relays import Relays
from livecart_media import rtp
from livecart_media.errors import OverCapacity, Unavailable, UnsupportedCodecs
from livecart_media.pipe import INGEST_TIME_EXTENSION_ID, PipeOut
from livecart_media.ports import PortRange
from livecart_media.rtp import rtcp
from livecart_media.rtp.cache import KeyframeRequests
from livecart_media.rtp.header import RtpHeader
from livecart_media.rtp.loss import LossDetector
from livecart_media.webrtc import (
    ForwardedStream,
    IceGathering,
    Kind,
    ReceiveTap,
    answer_publisher,
    negotiate,
    peer,
)
from livecart_media.whipwhep import RoomKey

logger = logging.getLogger(__name__)

TOPIC = "stream.lifecycle"
PIPE_SCOPES = frozenset({"publish", "publish:takeover"})
_GONE = ("closed", "failed")
_FEEDBACK_EVERY_S = 0.05
_REMB_EVERY_S = 1.0
_VIEWERS_REMB_FRESH_S = 5.0
_SYNC_RELAYS_EVERY_S = 10.0


@dataclass(eq=False)
class RelayLink:
    """A session's pipe to one relay."""

    target: str
    pipe: PipeOut
    pipe_id: str
    viewers_bitrate: tuple[int, float] | None = None
    """That relay's REMB for the room (what most of its viewers take) and when it came."""


@dataclass(eq=False)
class PublishSession:
    """One WHIP publisher: its connection, tap, pipes and upstream loss bookkeeping."""

    id: str
    key: RoomKey
    caller: Principal
    pc: RTCPeerConnection
    tap: ReceiveTap | None = None
    links: dict[str, RelayLink] = field(default_factory=dict)
    """Its pipe to each relay, by target."""
    bitrate: int = 0
    started: bool = False
    closing: bool = False
    reopening: set[str] = field(default_factory=set)
    loss: dict[Kind, LossDetector] = field(default_factory=dict)
    keyframes: KeyframeRequests = field(default_factory=KeyframeRequests)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def answer(self) -> str:
        return str(self.pc.localDescription.sdp)

    async def on_rtp(
        self, stream: ForwardedStream, packet: bytes, header: RtpHeader, start: bool
    ) -> None:
        """The tap's callback: note gaps, NACK them, and send the packet down every pipe."""
        loss = self.loss.get(stream.kind)
        if loss is None or stream.ssrc != header.ssrc:
            return
        missing = loss.on_packet(header.sequence, time.monotonic())
        if missing and self.tap is not None:
            self.spawn(self.tap.send_nack(stream.kind, missing))
        for link in self.links.values():
            link.pipe.send_rtp(stream.kind, packet, header)

    def send_rtcp(self, data: bytes) -> None:
        """The publisher's sender reports, to every relay."""
        for link in self.links.values():
            link.pipe.send_rtcp(data)

    def on_feedback(self, target: str, kind: Kind, message: rtcp.RtcpMessage) -> None:
        """A relay's PLI/FIR (to the publisher, rate-limited), NACK (from our cache, to that
        relay) or REMB (what its viewers take)."""
        tap, link = self.tap, self.links.get(target)
        if tap is None or link is None:
            return
        if isinstance(message, rtcp.Remb):
            link.viewers_bitrate = (message.bitrate, time.monotonic())
            return
        if isinstance(message, rtcp.Nack):
            stream = tap.streams.get(kind)
            if stream is None:
                return
            upstream = []
            for sequence in message.lost:
                packet = stream.cache.get(sequence)
                if packet is None:
                    upstream.append(sequence)
                else:
                    link.pipe.send_rtp(kind, packet, rtp.header.parse(packet))
            if upstream:
                self.spawn(tap.send_nack(kind, upstream))
        elif self.keyframes.should_forward(kind, time.monotonic()):
            self.spawn(tap.request_keyframe(kind))

    def viewers_bitrate(self, now: float, fresh_s: float) -> int | None:
        """The least any relay's viewers take, from REMBs no older than `fresh_s`."""
        recent = [
            rate
            for rate, at in (
                link.viewers_bitrate for link in self.links.values() if link.viewers_bitrate
            )
            if now - at <= fresh_s
        ]
        return min(recent, default=None)

    def spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class Publishers:
    """This process's WHIP publishers, with a cap, and the relays their pipes go to."""

    def __init__(
        self,
        *,
        relays: Relays,
        tokens: TokenAuthority,
        bus: EventBus,
        edge: str,
        max_publishers: int,
        retry_after_s: int = 5,
        connect_timeout_s: float | None = None,
        ice_host_addresses: Sequence[str] = (),
        ice_ports: PortRange | None = None,
        max_bitrate: int = 2_500_000,
        min_bitrate: int = 150_000,
    ) -> None:
        self.relays = relays
        self.tokens = tokens
        self.bus = bus
        self.edge = edge
        self.max_publishers = max_publishers
        self.retry_after_s = retry_after_s
        self.connect_timeout_s = connect_timeout_s
        self.max_bitrate = max_bitrate
        self.min_bitrate = min_bitrate
        self.sessions: dict[str, PublishSession] = {}
        self._ice = IceGathering(ice_host_addresses, ice_ports)
        self._joining = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    async def publish(
        self, caller: Principal, room: str, offer: RTCSessionDescription
    ) -> PublishSession:
        """Answer a WHIP offer and open the room's pipe; the answer is `session.answer`.

        Raises OverCapacity, UnsupportedCodecs or InvalidArgument for the offer, Conflict
        when the room is live from another publisher, Unavailable if the relay is down.
        """
        if len(self.sessions) + self._joining >= self.max_publishers:
            raise OverCapacity(
                f"this ingest takes at most {self.max_publishers} publishers",
                retry_after_s=self.retry_after_s,
            )
        self._joining += 1
        session = PublishSession(
            secrets.token_urlsafe(16),
            RoomKey(caller.tenant_id, room),
            caller,
            peer(self.connect_timeout_s),
        )
        try:
            async with self._ice():
                session.tap = await negotiate(answer_publisher(session.pc, offer, session.on_rtp))
            await self._open_pipes(session)
        except BaseException:
            await session.pc.close()
            raise
        finally:
            self._joining -= 1
        for other in list(self.sessions.values()):
            if other.key == session.key:  # taken over here: the relays dropped its pipes
                self._spawn(self._end(other, StreamState.STREAM_STATE_FAILED, "taken over"))
        self.sessions[session.id] = session
        session.pc.on("connectionstatechange", lambda: self._on_state(session))
        session.spawn(self._feedback_loop(session))
        return session

    async def end(self, caller: Principal, room: str, session_id: str) -> None:
        """The publisher's WHIP DELETE: the stream is over and the room closes."""
        session = self.sessions.get(session_id)
        if session is None or session.key != RoomKey(caller.tenant_id, room):
            raise NotFound("no such WHIP session")
        await self._end(session, StreamState.STREAM_STATE_STOPPED, "", ended=True)

    async def close(self) -> None:
        """Shutting down: publishers come back to another ingest, so rooms keep waiting."""
        for session in list(self.sessions.values()):
            await self._end(session, StreamState.STREAM_STATE_FAILED, "ingest shutting down")
        for task in list(self._tasks):
            task.cancel()

    async def _open_pipes(self, session: PublishSession) -> None:
        """Open the room's pipe on every relay; Conflict if any has another publisher live,
        the first refusal if none takes the stream."""
        targets = await self.relays.targets()
        if not targets:
            raise Unavailable("no relay address resolves; try again", retry_after_s=2)
        tap = session.tap
        assert tap is not None
        session.loss = {kind: LossDetector() for kind in tap.streams}
        session.bitrate = self.max_bitrate
        tap.on_sender_report = session.send_rtcp
        results = await asyncio.gather(
            *(self._open_pipe(session, target) for target in targets), return_exceptions=True
        )
        refusals = [r for r in results if isinstance(r, BaseException)]
        decisive = [r for r in refusals if isinstance(r, Conflict | PermissionDenied)]
        if decisive or len(refusals) == len(targets):
            await self._close_pipes(session, ended=False)
            raise (decisive or refusals)[0]
        for target, result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("relay %s did not take %s: %s", target, session.key, result)

    async def _open_pipe(self, session: PublishSession, target: str) -> None:
        tap = session.tap
        assert tap is not None
        caller = session.caller
        request = relay_pb.OpenPipeRequest(
            room_id=session.key.room,
            stream_id=session.id,
            takeover="publish:takeover" in caller.scopes,
            ingest_time_extension_id=INGEST_TIME_EXTENSION_ID,
            streams=[_declare(stream) for stream in tap.streams.values()],
        )
        try:
            reply = await self.relays.stub(target).OpenPipe(
                request, metadata=self._credentials(session)
            )
        except grpc.aio.AioRpcError as exc:
            raise _refusal(exc) from None
        pipe = await PipeOut.open(
            (reply.host, reply.port),
            lambda kind, message: session.on_feedback(target, kind, message),
            lambda: self._spawn(self._end(session, StreamState.STREAM_STATE_FAILED, "taken over")),
            on_refused=lambda: self._spawn(self._reopen(session, target)),
        )
        old = session.links.get(target)
        session.links[target] = RelayLink(target, pipe, reply.pipe_id)
        if old is not None:
            old.pipe.close()
        if session.closing:  # ended while this pipe was opening
            pipe.close()

    async def _reopen(self, session: PublishSession, target: str) -> None:
        """A relay's pipe port refuses our packets (ICMP port unreachable): that relay
        restarted and lost the room. Open the pipe again, with backoff, while the publisher
        stays and the relay is still one of ours; its viewers then get a keyframe."""
        if target in session.reopening or session.closing:
            return
        session.reopening.add(target)
        delay = 0.5
        try:
            while not session.closing:
                await asyncio.sleep(delay)
                if target not in await self.relays.targets():
                    link = session.links.pop(target, None)
                    if link is not None:
                        link.pipe.close()
                    return
                try:
                    await self._open_pipe(session, target)
                except Exception as exc:
                    logger.warning("reopening %s's pipe on %s failed: %s", session.key, target, exc)
                    delay = min(delay * 2, 10.0)
                    continue
                logger.info("reopened %s's pipe on relay %s", session.key, target)
                return
        finally:
            session.reopening.discard(target)

    async def _sync_relays(self, session: PublishSession) -> None:
        """Pipe the live room to relays that joined since; drop relays that left."""
        targets = await self.relays.targets()
        for target in targets:
            if target not in session.links:
                self._spawn(self._reopen(session, target))
        for target in list(session.links):
            if target not in targets:
                session.links.pop(target).pipe.close()

    async def _close_pipes(self, session: PublishSession, *, ended: bool) -> None:
        links, session.links = list(session.links.values()), {}

        async def close(link: RelayLink) -> None:
            link.pipe.close()
            request = relay_pb.ClosePipeRequest(
                room_id=session.key.room, pipe_id=link.pipe_id, ended=ended
            )
            try:
                await self.relays.stub(link.target).ClosePipe(
                    request, metadata=self._credentials(session)
                )
            except grpc.aio.AioRpcError as exc:
                # The relay notices a silent pipe by itself; the room is not stuck.
                logger.warning(
                    "closing %s's pipe on %s failed: %s", session.key, link.target, exc.details()
                )

        await asyncio.gather(*(close(link) for link in links))

    def _credentials(self, session: PublishSession) -> tuple[tuple[str, str], ...]:
        # Our own short token for the publisher's rights: theirs may expire mid-stream.
        caller = session.caller
        token = self.tokens.issue(
            caller.tenant_id,
            caller.subject,
            caller.scopes & PIPE_SCOPES,
            room=session.key.room,
            ttl_s=60,
        )
        return (("authorization", f"Bearer {token}"),)

    def _on_state(self, session: PublishSession) -> None:
        state = session.pc.connectionState
        if state == "connected" and not session.started:
            session.started = True
            self._spawn(self._announce(session, StreamState.STREAM_STATE_STARTED, ""))
        elif state in _GONE and not session.closing:
            reason = "publisher connection lost"
            self._spawn(self._end(session, StreamState.STREAM_STATE_FAILED, reason))

    async def _end(
        self,
        session: PublishSession,
        state: StreamState,
        reason: str,
        *,
        ended: bool = False,
    ) -> None:
        if session.closing:
            return
        session.closing = True
        self.sessions.pop(session.id, None)
        if reason == "taken over":  # the relays have let go of our pipes already
            for link in session.links.values():
                link.pipe.close()
            session.links = {}
        else:
            await self._close_pipes(session, ended=ended)
        for task in list(session.tasks):
            task.cancel()
        await session.pc.close()
        if session.started:
            await self._announce(session, state, reason)

    async def _announce(self, session: PublishSession, state: StreamState, reason: str) -> None:
        occurred = Timestamp()
        occurred.GetCurrentTime()
        event = StreamLifecycle(
            tenant_id=session.key.tenant,
            room_id=session.key.room,
            stream_id=session.id,
            edge=self.edge,
            state=state,
            occurred_at=occurred,
            reason=reason,
            publisher=session.caller.subject,
        )
        try:
            await self.bus.publish(TOPIC, f"{session.key.tenant}/{session.key.room}", event)
        except Exception:
            logger.exception("publishing %s for %s failed", StreamState.Name(state), session.key)

    async def _feedback_loop(self, session: PublishSession) -> None:
        """NACK again what is still missing; send REMB from the loss-based estimate."""
        next_remb = next_sync = 0.0
        gaps = received = 0
        while True:
            await asyncio.sleep(_FEEDBACK_EVERY_S)
            tap, now = session.tap, time.monotonic()
            if tap is None:
                continue
            for kind, loss in session.loss.items():
                again = loss.due(now)
                if again:
                    await tap.send_nack(kind, again)
            if now >= next_sync:
                next_sync = now + _SYNC_RELAYS_EVERY_S
                if next_remb:  # not on the first round: the pipes were just opened
                    await self._sync_relays(session)
            if now < next_remb:
                continue
            next_remb = now + _REMB_EVERY_S
            total_gaps = sum(loss.gaps for loss in session.loss.values())
            total_received = sum(loss.received for loss in session.loss.values())
            window_gaps, window_received = total_gaps - gaps, total_received - received
            gaps, received = total_gaps, total_received
            if window_received:
                session.bitrate = self._estimate(session.bitrate, window_gaps, window_received)
                await tap.send_remb(self._allowed(session, now))

    def _allowed(self, session: PublishSession, now: float) -> int:
        """The publisher's REMB: its own link's estimate, capped by what the room's viewers
        take (the relay's REMB, if recent)."""
        viewers = session.viewers_bitrate(now, _VIEWERS_REMB_FRESH_S)
        if viewers is None:
            return session.bitrate
        return max(self.min_bitrate, min(session.bitrate, viewers))

    def _estimate(self, bitrate: int, gaps: int, received: int) -> int:
        lost = gaps / (gaps + received)
        if lost > 0.10:
            bitrate = int(bitrate * (1 - 0.5 * lost))
        elif lost < 0.02:
            bitrate = int(bitrate * 1.08)
        return max(self.min_bitrate, min(self.max_bitrate, bitrate))

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _declare(stream: ForwardedStream) -> relay_pb.PipeStream:
    return relay_pb.PipeStream(
        kind=stream.kind,
        payload_type=stream.payload_type,
        mime_type=stream.mime,
        clock_rate=stream.clock_rate,
        channels=2 if stream.kind == "audio" else 0,
    )


def _refusal(exc: grpc.aio.AioRpcError) -> Exception:
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return Conflict(details)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return UnsupportedCodecs(details)
    logger.warning("the relay refused a pipe: %s %s", code, details)
    return Unavailable("the relay cannot take this stream now; try again", retry_after_s=2)
