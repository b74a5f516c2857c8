"""A chat node's rooms: their recent history, moderation state and viewers, and the batched
fan-out of each room's events.

Every node applies every room's events in the order of the room's partition, so all nodes
agree on history and moderation state. Viewers get one frame per room per batch interval: the
frame is encoded once and the same bytes go to every viewer of the room. Priorities: system and
moderation events always go out; comments beyond ``comments_per_batch`` are sampled down for
the whole room; likes travel as counts. A viewer whose socket has not drained gets only the
high-priority events until it catches up, and is closed (4408) if it stays behind. What it has
not drained counts the kernel's send queue too: a socket that stops reading fills that first,
with megabytes the transport's own buffer never sees.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import sys
import termios
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from livecart.events.v1.chat_pb2 import ChatEvent
from livecart_chat import events
from livecart_chat.metrics import DROPPED, FRAMES, SLOW_CLOSES

log = logging.getLogger("livecart.chat.rooms")

SLOW_CLOSE = 4408
BANNED_CLOSE = 4403
RECENT_ON_JOIN = 20  # events a new viewer gets, so the screen does not start empty
SEEN_IDS = 512  # recent event ids per room, to drop a redelivered event or a comment's resend
YIELD_EVERY = 500  # writes between yields to the event loop during a flush (~8 ms)
# Linux: the bytes of a TCP socket its peer has not acknowledged (sent or not); ~0.3 µs a call.
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None)


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked WebSocket text frame (RFC 6455 §5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def write(conn: ServerConnection, frame: bytes) -> bool:
    """Queue a pre-serialised frame on an open connection (no await, so frames written this
    way keep their order). The websockets library handles the handshake, reading, pings and
    closing; we write frames ourselves because its ``broadcast()`` serialises the frame again
    for every connection, and a room's batch is the same bytes for all of its viewers."""
    if conn.protocol.state is not State.OPEN or conn.send_in_progress is not None:
        return False
    conn.transport.write(frame)
    return True


@dataclass(slots=True)
class Entry:
    """One event of a room as viewers see it, encoded once."""

    seq: int
    high: bool  # system and moderation events: never dropped
    data: bytes


@dataclass(eq=False, slots=True)
class Viewer:
    conn: ServerConnection
    user_id: str
    name: str
    scopes: frozenset[str]
    token: str = ""  # the one it joined with: each reservation carries it to commerce
    buying: int = 0  # its reservations awaiting commerce
    behind_since: float | None = None
    # A viewer that recovered on a node which had not yet read as far as the viewer's previous
    # node: it has seen every event up to this seq, so batches skip those (0: nothing skipped).
    seen_through: int = 0
    closing: bool = False
    refusals: deque[float] = field(default_factory=deque)
    fd: int = -1
    _outq: bytearray = field(default_factory=lambda: bytearray(4))

    def __post_init__(self) -> None:
        sock = self.conn.transport.get_extra_info("socket")
        if sock is not None:
            self.fd = sock.fileno()

    @property
    def moderator(self) -> bool:
        return "chat:moderate" in self.scopes

    def unsent(self) -> int:
        """Bytes written to this viewer that its host has not received: the transport's
        buffer plus the kernel's send queue."""
        queued = self.conn.transport.get_write_buffer_size()
        if _OUTQ is None or self.fd < 0:
            return queued
        try:
            fcntl.ioctl(self.fd, _OUTQ, self._outq, True)
        except OSError:  # closed under us: nothing more will be sent anyway
            return queued
        return queued + int.from_bytes(self._outq, sys.byteorder)


class Room:
    def __init__(self, tenant: str, room: str, history_size: int, complete_after: int) -> None:
        self.tenant = tenant
        self.room = room
        self.key = events.room_key(tenant, room)
        self.viewers: set[Viewer] = set()
        self.history: deque[Entry] = deque(maxlen=history_size)
        # Memory holds every event of the room with a seq above this (what the node has read
        # of the partition since it started, less what fell out of ``history``).
        self.complete_after = complete_after
        self.pending: list[Entry] = []
        self.flushed_seq = 0  # the last seq viewers were sent (or would have been)
        self.likes_pending = 0
        self.total_likes = 0
        self.local_likes = 0  # likes from this node's viewers, not yet published
        self.slow_mode_s = 0
        self.mutes: dict[str, float] = {}
        self.bans: set[str] = set()
        self.pinned: dict[str, Any] | None = None
        self.state_seq = -1  # events up to this seq are already in the loaded state
        self.last_comment: dict[str, float] = {}
        self.seen_ids: OrderedDict[str, int] = OrderedDict()  # event id -> its seq
        self.touched = time.monotonic()
        self.last_flush = 0.0

    # -- applying the room's stream (every node, in partition order) --

    def apply(self, event: ChatEvent, seq: int) -> bool:
        """Apply one event of the room's stream; False when it was a duplicate."""
        self.touched = time.monotonic()
        if event.event_id in self.seen_ids:
            return False
        self.remember(event.event_id, seq)
        kind = event.WhichOneof("body")
        if seq > self.state_seq:  # not yet part of the state loaded from Postgres
            self._change_state(event, seq)
        if kind == "likes":
            return True
        shown = events.shown(event, seq)
        if shown is None:
            return False
        entry = Entry(seq, kind != "comment", events.encode(shown))
        if len(self.history) == self.history.maxlen:
            self.complete_after = max(self.complete_after, self.history[0].seq)
        self.history.append(entry)
        self.pending.append(entry)
        return True

    def remember(self, event_id: str, seq: int) -> None:
        """Count ``event_id`` as seen in the room's stream (at ``seq``): a later copy of it is
        dropped. The memory is bounded, and every node keeps the same one: it sees the same
        events in the same order."""
        self.seen_ids[event_id] = seq
        if len(self.seen_ids) > SEEN_IDS:
            self.seen_ids.popitem(last=False)

    def seen_at(self, event_id: str) -> int | None:
        """The seq ``event_id`` was seen at in the room's recent stream, or None."""
        return self.seen_ids.get(event_id)

    def _change_state(self, event: ChatEvent, seq: int) -> None:
        kind = event.WhichOneof("body")
        if kind == "likes":
            self.likes_pending += event.likes.count
            self.total_likes += event.likes.count
            return
        if kind != "moderation":
            return
        m = event.moderation
        if m.action == "mute":
            self.mutes[m.target_user_id] = events.sent_at(event).timestamp() + m.duration_s
        elif m.action == "unmute":
            self.mutes.pop(m.target_user_id, None)
        elif m.action == "ban":
            self.bans.add(m.target_user_id)
            for viewer in [v for v in self.viewers if v.user_id == m.target_user_id]:
                close(viewer, BANNED_CLOSE, "banned from this room")
        elif m.action == "slow_mode":
            self.slow_mode_s = m.interval_s
        elif m.action == "pin":
            self.pinned = events.pinned(m, seq)
        elif m.action == "unpin":
            self.pinned = None

    def muted_until(self, user: str, now: float) -> float | None:
        until = self.mutes.get(user)
        if until is None or until <= now:
            return None
        return until

    def comment_by_seq(self, seq: int) -> dict[str, Any] | None:
        for entry in reversed(self.history):
            if entry.seq == seq:
                shown: dict[str, Any] = json.loads(entry.data)
                return shown if shown.get("kind") == "comment" else None
        return None

    # -- joining --

    def since(self, last_seq: int) -> list[Entry] | None:
        """The flushed events after ``last_seq`` from memory, or None when memory does not
        hold all of them."""
        if last_seq < self.complete_after:
            return None
        return [e for e in self.history if last_seq < e.seq <= self.flushed_seq]

    def recent(self) -> list[Entry]:
        flushed = [e for e in self.history if e.seq <= self.flushed_seq]
        return flushed[-RECENT_ON_JOIN:]

    # -- fan-out --

    async def flush(
        self,
        comments_per_batch: int,
        batch_s: float,
        slow_bytes: int,
        limit_bytes: int,
        limit_s: float,
    ) -> int:
        """Send what arrived since the last batch to every viewer; returns the frames written.

        It yields to the event loop every ``YIELD_EVERY`` writes, so reading the bus and the
        viewers' messages go on while a big room is written to."""
        now = time.monotonic()
        # A late batch (a busy node) may carry proportionally more: the limit is a rate.
        elapsed = now - self.last_flush if self.last_flush else batch_s
        self.last_flush = now
        readable = max(comments_per_batch, int(comments_per_batch * elapsed / batch_s))
        pending, self.pending = self.pending, []
        likes, self.likes_pending = self.likes_pending, 0
        if pending:
            self.flushed_seq = pending[-1].seq
        if not self.viewers or not (pending or likes):
            return 0
        high = [e for e in pending if e.high]
        comments = [e for e in pending if not e.high]
        dropped = 0
        if len(comments) > readable:
            # Sampled evenly for the whole room: a viewer cannot read more anyway.
            step = len(comments) / readable
            kept = [comments[int(i * step)] for i in range(readable)]
            dropped = len(comments) - len(kept)
            DROPPED.inc(dropped)
            comments = kept
        chosen = sorted(high + comments, key=lambda e: e.seq) if high else comments
        frame = text_frame(batch(chosen, likes, self.total_likes, dropped))
        reduced: bytes | None = None
        ahead: dict[int, bytes] = {}  # seen_through -> the frame without what it has seen
        written = 0
        for n, viewer in enumerate(list(self.viewers), 1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if viewer.closing:
                continue
            if viewer.seen_through:
                # Rare (a recovery onto a node that lags), and only until the node catches up:
                # such a viewer gets a frame of its own, without the slow-viewer rules.
                seen = viewer.seen_through
                if seen <= self.flushed_seq:
                    viewer.seen_through = 0  # caught up: the room's frame from the next batch
                if seen not in ahead:
                    unseen = [e for e in chosen if e.seq > seen]
                    ahead[seen] = text_frame(batch(unseen, likes, self.total_likes, dropped))
                written += write(viewer.conn, ahead[seen])
                continue
            unsent = viewer.unsent()
            if unsent <= slow_bytes:
                viewer.behind_since = None
                written += write(viewer.conn, frame)
                continue
            if viewer.behind_since is None:
                viewer.behind_since = now
            if unsent > limit_bytes or now - viewer.behind_since > limit_s:
                SLOW_CLOSES.inc()
                close(viewer, SLOW_CLOSE, "too far behind: the connection does not keep up")
                continue
            if high:
                if reduced is None:
                    skipped = len(pending) - len(high)
                    reduced = text_frame(batch(high, likes, self.total_likes, skipped))
                written += write(viewer.conn, reduced)
        FRAMES.inc(written)
        return written


def batch(entries: list[Entry], likes: int, total_likes: int, dropped: int) -> bytes:
    return (
        b'{"type":"batch","events":['
        + b",".join(e.data for e in entries)
        + b'],"likes":%d,"total_likes":%d,"dropped":%d}' % (likes, total_likes, dropped)
    )


_closing: set[asyncio.Task[None]] = set()


def close(viewer: Viewer, code: int, reason: str) -> None:
    """Close a viewer's socket with a reason, without waiting (the room goes on)."""
    if viewer.closing:
        return
    viewer.closing = True
    task = asyncio.get_running_loop().create_task(viewer.conn.close(code, reason))
    _closing.add(task)
    task.add_done_callback(_closing.discard)
