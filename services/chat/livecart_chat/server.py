"""The viewers' WebSocket endpoint, ``/ws/rooms/{room}`` (docs/chat-protocol.md).

The websockets library does the handshake, frame parsing, size and UTF-8 checks, pings and
closing; this module authenticates the viewer, joins it to the room (recovering what it missed),
and acts on the commands ``livecart_chat.protocol`` parses from its frames. A refused message
gets an error frame with the reason; a socket that keeps sending refused or invalid messages is
closed (4429).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import unicodedata
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from livecart.events.v1.chat_pb2 import ChatEvent, Comment
from livecart_chat import events, protocol
from livecart_chat.buying import Checkout
from livecart_chat.metrics import MESSAGES, VIEWERS
from livecart_chat.moderation import Moderator, disallowed_character
from livecart_chat.node import ChatNode
from livecart_chat.protocol import Refused
from livecart_chat.rooms import Room, Viewer, close, text_frame, write
from livecart_chat.settings import ChatSettings
from livecart_core.auth import Principal, TokenAuthority
from livecart_core.bus.failures import is_transient
from livecart_core.errors import PermissionDenied, Unauthenticated
from livecart_core.rules import INT64_MAX

log = logging.getLogger("livecart.chat.server")

PATH = re.compile(r"^/ws/rooms/([^/?]+)$")
MAX_FRAME = 4096
MAX_NAME = 50
FLOOD_WINDOW_S = 10.0
SEQ_RULE = "2^63-1"
MAX_BUYING = 4  # a viewer's reservations awaiting commerce at once
UNAVAILABLE_CLOSE = 4503  # a dependency is down: reconnect after a pause
_DIGITS = re.compile(r"[0-9]{1,19}")


class ChatServer:
    def __init__(
        self,
        settings: ChatSettings,
        node: ChatNode,
        tokens: TokenAuthority,
        moderator: Moderator,
        checkout: Checkout,
    ) -> None:
        self.settings = settings
        self.node = node
        self.tokens = tokens
        self.moderator = moderator
        self.checkout = checkout
        self.server: Server | None = None
        self._buying: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        # The library logs every connection opened and closed at INFO: not at this scale.
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
        self.server = await serve(
            self.handle,
            self.settings.ws_host,
            self.settings.ws_port,
            compression=None,  # one encoding of a batch serves every viewer
            max_size=MAX_FRAME,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=5,
            # Several node processes may share the port (one per core); the kernel spreads
            # new connections across them.
            reuse_port=self.settings.ws_reuse_port,
        )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()  # viewers get 1001 and reconnect to another node
            await self.server.wait_closed()

    async def handle(self, conn: ServerConnection) -> None:
        joined = await self._join(conn)
        if joined is None:
            return
        viewer, room = joined
        VIEWERS.inc()
        try:
            async for message in conn:
                await self._on_message(viewer, room, message)
        except ConnectionClosed:
            pass
        finally:
            room.viewers.discard(viewer)
            VIEWERS.dec()

    async def _join(self, conn: ServerConnection) -> tuple[Viewer, Room] | None:
        assert conn.request is not None
        url = urlsplit(conn.request.path)
        query = parse_qs(url.query)
        matched = PATH.match(url.path)
        if matched is None or not events.ROOM_ID.match(matched.group(1)):
            await conn.close(
                4404, "no such room: the path is /ws/rooms/{room}, room [A-Za-z0-9._:-]"
            )
            return None
        room_id = matched.group(1)
        header = conn.request.headers.get("Authorization", "")
        token = (query.get("token") or [""])[0] or header.removeprefix("Bearer ").strip()
        try:
            if not token:
                raise Unauthenticated("missing token (?token= or Authorization: Bearer)")
            caller = self.tokens.verify(token)
        except Unauthenticated as exc:
            await conn.close(4401, str(exc)[:120])
            return None
        refusal = _refusal(caller, room_id)
        if refusal:
            await conn.close(4403, refusal)
            return None
        last_seq = None
        if "last_seq" in query:
            last_seq = _seq(query["last_seq"][0])
            if last_seq is None:
                await conn.close(4400, f"last_seq is an integer from 0 to {SEQ_RULE}")
                return None
        name = unicodedata.normalize("NFC", (query.get("name") or [caller.subject])[0]).strip()
        problem = self._bad_name(caller.tenant_id, name)
        if problem:
            await conn.close(4400, problem)
            return None
        try:
            room = await self.node.room(caller.tenant_id, room_id)
        except Exception as exc:
            if not is_transient(exc):
                raise
            # A room this node has not opened yet needs its state from Postgres.
            log.warning("room not opened: history unavailable", extra={"why": repr(exc)})
            await conn.close(UNAVAILABLE_CLOSE, "unavailable: the room cannot be opened now; retry")
            return None
        if caller.subject in room.bans:
            await conn.close(4403, "banned from this room")
            return None
        missed = None if last_seq is None else await self._recover(room, last_seq)
        # From here to adding the viewer nothing awaits: the welcome, what it missed and every
        # later batch reach it in order, none twice.
        welcome: dict[str, Any] = {
            "type": "welcome", "room": room_id, "user_id": caller.subject,
            "seq": room.flushed_seq, "slow_mode_s": room.slow_mode_s, "pinned": room.pinned,
            "total_likes": room.total_likes,
            "batch_ms": self.settings.batch_ms,
        }  # fmt: skip
        if last_seq is not None:
            welcome["recovered"] = missed is not None
        write(conn, text_frame(events.encode(welcome)))
        replay = missed if missed is not None else [e.data for e in room.recent()]
        if replay:
            write(conn, text_frame(replay_batch(replay, room.total_likes)))
        viewer = Viewer(conn, caller.subject, name, caller.scopes, token)
        if last_seq is not None and last_seq > room.flushed_seq:
            # Its last node had read further than this one: what this node has yet to send
            # up to ``last_seq`` the viewer has already seen.
            viewer.seen_through = last_seq
        room.viewers.add(viewer)
        return viewer, room

    async def _recover(self, room: Room, last_seq: int) -> list[bytes] | None:
        """What the viewer missed; None (it is told ``recovered: false`` and gets the room's
        recent events) also when the stored history it needs cannot be read right now."""
        try:
            return await self.node.recover(room, last_seq)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("recovery from history unavailable", extra={"why": repr(exc)})
            return None

    def _bad_name(self, tenant: str, name: str) -> str | None:
        """Why a display name cannot be shown, or None: the same rules as a comment's text."""
        if not 1 <= len(name) <= MAX_NAME:
            return f"name must be 1 to {MAX_NAME} characters"
        if disallowed_character(name) is not None:
            return "name holds a character chat does not show"
        if self.moderator.keywords.find(tenant, name) is not None:
            return "name holds a word this shop does not allow"
        return None

    async def _on_message(self, viewer: Viewer, room: Room, message: str | bytes) -> None:
        ref: str | None = None
        try:
            request = protocol.parse(message)
            ref = request.ref
            command = request.command
            if command.scope not in viewer.scopes:
                raise Refused("permission_denied", f"this needs the {command.scope!r} scope")
            if isinstance(command, protocol.Reserve):
                self._start_buying(viewer, command, ref)
                return
            acked = await self._act(viewer, room, command)
            MESSAGES.labels("ok").inc()
            if ref is not None:
                ack = {"type": "ack", "ref": ref, **(acked or {})}
                write(viewer.conn, text_frame(events.encode(ack)))
        except Refused as refused:
            MESSAGES.labels(refused.code).inc()
            ref = refused.ref if ref is None else ref
            error = {"type": "error", "ref": ref, "code": refused.code, "message": refused.message}
            write(viewer.conn, text_frame(events.encode(error)))
            self._count_refusal(viewer)

    def _start_buying(self, viewer: Viewer, command: protocol.Reserve, ref: str | None) -> None:
        """Reserve in a task of its own: the viewer's comments and likes go on meanwhile."""
        if viewer.buying >= MAX_BUYING:
            raise Refused(
                "too_many_reservations",
                f"wait for the answers to your {MAX_BUYING} reservations first",
            )
        viewer.buying += 1
        task = asyncio.create_task(self._buy(viewer, command, ref))
        self._buying.add(task)
        task.add_done_callback(self._buying.discard)

    async def _buy(self, viewer: Viewer, command: protocol.Reserve, ref: str | None) -> None:
        """Answer a reservation with an ack carrying the order, or an error frame with
        commerce's code. Commerce's refusals (sold out, over the limit) are the sale's answer,
        not the viewer's fault: they do not count towards closing a flooding socket."""
        try:
            order = await self.checkout.reserve(viewer.token, command)
            MESSAGES.labels("ok").inc()
            reply: dict[str, Any] = {"type": "ack", "ref": ref, "order": order}
        except Refused as refused:
            MESSAGES.labels(refused.code).inc()
            reply = {"type": "error", "ref": ref, "code": refused.code, "message": refused.message}
        finally:
            viewer.buying -= 1
        write(viewer.conn, text_frame(events.encode(reply)))

    def _count_refusal(self, viewer: Viewer) -> None:
        now = time.monotonic()
        viewer.refusals.append(now)
        while viewer.refusals and viewer.refusals[0] < now - FLOOD_WINDOW_S:
            viewer.refusals.popleft()
        if len(viewer.refusals) > self.settings.flood_limit:
            close(viewer, 4429, "flooding: too many refused or invalid messages")

    async def _act(
        self, viewer: Viewer, room: Room, command: protocol.Command
    ) -> dict[str, Any] | None:
        """Carry out a command; what its ack says besides ``ref``, if anything."""
        match command:
            case protocol.Comment(text, client_id):
                return await self._comment(viewer, room, text, client_id)
            case protocol.Like(count):
                room.local_likes += count
            case protocol.Pin(seq):
                shown = room.comment_by_seq(seq)
                if shown is None:
                    raise Refused("not_found", f"no recent comment with seq {seq}")
                pinned = Comment(
                    user_id=shown["user_id"], display_name=shown["name"], text=shown["text"]
                )
                await self._moderate(viewer, room, action="pin", pinned_seq=seq, pinned=pinned)
            case protocol.Unpin():
                await self._moderate(viewer, room, action="unpin")
            case protocol.Mute(user, duration):
                await self._moderate(
                    viewer, room, action="mute", target_user_id=user, duration_s=duration
                )
            case protocol.Unmute(user):
                await self._moderate(viewer, room, action="unmute", target_user_id=user)
            case protocol.Ban(user):
                if user == viewer.user_id:
                    raise Refused("invalid_message", "you cannot ban yourself")
                await self._moderate(viewer, room, action="ban", target_user_id=user)
            case protocol.SlowMode(interval):
                await self._moderate(viewer, room, action="slow_mode", interval_s=interval)
            case protocol.Clear():
                await self._moderate(viewer, room, action="clear")
        return None

    async def _comment(
        self, viewer: Viewer, room: Room, text: str, client_id: str | None
    ) -> dict[str, Any] | None:
        if client_id is not None:
            event_id = events.comment_id(room.tenant, room.room, viewer.user_id, client_id)
            seq = room.seen_at(event_id)
            if seq is not None:
                # A send whose answer the client missed (or was told 'unavailable' about, and
                # the producer delivered later) is in the stream already: not published again.
                return {"duplicate": True, "seq": seq}
        now = time.time()
        muted = room.muted_until(viewer.user_id, now)
        if muted is not None:
            raise Refused("muted", f"you are muted in this room for {int(muted - now) + 1} s more")
        if room.slow_mode_s and not viewer.moderator:
            last = room.last_comment.get(viewer.user_id)
            if last is not None and now - last < room.slow_mode_s:
                wait = int(room.slow_mode_s - (now - last)) + 1
                raise Refused("slow_mode", f"slow mode: wait {wait} s")
        verdict = self.moderator.check(
            room.tenant, room.room, viewer.user_id, text, exempt=viewer.moderator
        )
        if verdict.code is not None:
            raise Refused(verdict.code, verdict.message)
        event = events.comment(
            room.tenant, room.room, viewer.user_id, viewer.name, verdict.text, client_id
        )
        await self._publish(room, event)
        room.last_comment[viewer.user_id] = now
        return None

    async def _moderate(self, viewer: Viewer, room: Room, **action: Any) -> None:
        event = events.moderation(room.tenant, room.room, by_user_id=viewer.user_id, **action)
        await self._publish(room, event)

    async def _publish(self, room: Room, event: ChatEvent) -> None:
        """Into the room's stream, within ``publish_timeout_s``: a bus that cannot take it in
        time (down, or slow to acknowledge) is a refusal the sender can retry, not a silence
        nor a dropped socket. A comment refused so may still reach the stream once the bus is
        back (the producer had queued it); a resend with the same ``client_id`` is then the
        same event, shown once."""
        try:
            async with asyncio.timeout(self.settings.publish_timeout_s):
                await self.node.bus.publish(events.TOPIC, room.key, event)
        except Exception as exc:  # whichever backend's error: the sender hears it, the socket lives
            log.warning("publish failed", extra={"why": repr(exc)})
            raise Refused("unavailable", "the room cannot take messages right now; retry") from None


def _seq(text: str) -> int | None:
    """A sequence number written in decimal digits (no sign, no spaces), or None."""
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= INT64_MAX else None


def _refusal(caller: Principal, room: str) -> str | None:
    if "play" not in caller.scopes:
        return "the token does not have the 'play' scope"
    try:
        caller.require_room(room)
    except PermissionDenied as exc:
        return str(exc)
    return None


def replay_batch(encoded: list[bytes], total_likes: int) -> bytes:
    """What a joining viewer missed (or the room's recent events), marked as a replay."""
    return (
        b'{"type":"batch","events":[' + b",".join(encoded)
        + b'],"likes":0,"total_likes":%d,"dropped":0,"replay":true}' % total_likes
    )  # fmt: skip
