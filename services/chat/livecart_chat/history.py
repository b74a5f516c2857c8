"""A room's history and moderation state in Postgres.

The ``chat-history`` consumer group (one member per partition across all chat nodes) writes
every event of ``chat.messages`` to ``events`` and applies moderation and likes to the room's
state, each in one transaction with the partition's progress. A node reads it back when it
opens a room it has not seen since it started, when a reconnecting viewer's gap reaches back
before the node's memory, and for ``GET /v1/rooms/{room}/history``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import asyncpg
from google.protobuf.message import DecodeError

from livecart.events.v1.chat_pb2 import ChatEvent
from livecart_chat import events
from livecart_chat.rooms import SEEN_IDS, Room
from livecart_core.bus import Event, PoisonEvent

log = logging.getLogger("livecart.chat.history")


class History:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def write(self, message: Event) -> None:
        """The ``chat-history`` handler: one event, stored with its effects and progress.

        An event that can never be stored still advances the partition's progress (so
        ``complete_through`` does not wait on it) and is then refused with ``PoisonEvent``,
        which dead-letters it; a database that is away raises what asyncpg raises, and the bus
        retries that until it is back.
        """
        refused: str | None = None
        try:
            event: ChatEvent | None = message.decode(ChatEvent)
        except DecodeError:
            event, refused = None, "not a ChatEvent"
        if event is not None and not (event.tenant_id and event.room_id):
            refused = "no tenant or room"
        async with self.pool.acquire() as conn, conn.transaction():
            if event is not None and refused is None:
                try:
                    async with conn.transaction():
                        await self._store(conn, event, message.offset + 1)
                except (asyncpg.DataError, ValueError) as exc:
                    # Values Postgres cannot hold (a NUL, a lone surrogate): retrying cannot
                    # help, and would hold up the partition's history.
                    refused = f"cannot be stored: {exc!r}"
            await conn.execute(
                "insert into history_progress (partition, next_offset) values ($1, $2)"
                " on conflict (partition) do update set next_offset = excluded.next_offset"
                " where history_progress.next_offset < excluded.next_offset",
                message.partition,
                message.offset + 1,
            )
        if refused is not None:
            raise PoisonEvent(f"chat event {refused}")

    async def _store(self, conn: asyncpg.Connection, event: ChatEvent, seq: int) -> None:
        tenant, room, at = event.tenant_id, event.room_id, events.sent_at(event)
        kind = event.WhichOneof("body")
        shown = events.shown(event, seq)
        if shown is not None and kind is not None:
            await conn.execute(
                "insert into events (tenant_id, room_id, seq, event_id, kind, shown, sent_at)"
                " values ($1, $2, $3, $4, $5, $6::jsonb, $7) on conflict do nothing",
                tenant, room, seq, event.event_id, kind, events.encode(shown).decode(), at,
            )  # fmt: skip
        applied = await conn.fetchval(
            "insert into room_state (tenant_id, room_id, state_seq) values ($1, $2, $3)"
            " on conflict (tenant_id, room_id) do update set state_seq = excluded.state_seq"
            " where room_state.state_seq < excluded.state_seq returning true",
            tenant,
            room,
            seq,
        )
        if not applied:  # a redelivered event: its effects are in already
            return
        if kind == "likes":
            await conn.execute(
                "update room_state set total_likes = total_likes + $3"
                " where tenant_id = $1 and room_id = $2",
                tenant,
                room,
                event.likes.count,
            )
        elif kind == "moderation":
            await self._moderate(conn, event, seq)

    @staticmethod
    async def _moderate(conn: asyncpg.Connection, event: ChatEvent, seq: int) -> None:
        tenant, room, m = event.tenant_id, event.room_id, event.moderation
        at = events.sent_at(event)
        if m.action == "mute":
            await conn.execute(
                "insert into room_mutes (tenant_id, room_id, user_id, until, by_user)"
                " values ($1, $2, $3, $4::timestamptz + make_interval(secs => $5), $6)"
                " on conflict (tenant_id, room_id, user_id)"
                " do update set until = excluded.until, by_user = excluded.by_user",
                tenant, room, m.target_user_id, at, m.duration_s, m.by_user_id,
            )  # fmt: skip
        elif m.action == "unmute":
            await conn.execute(
                "delete from room_mutes where tenant_id = $1 and room_id = $2 and user_id = $3",
                tenant,
                room,
                m.target_user_id,
            )
        elif m.action == "ban":
            await conn.execute(
                "insert into room_bans (tenant_id, room_id, user_id, by_user, banned_at)"
                " values ($1, $2, $3, $4, $5) on conflict do nothing",
                tenant, room, m.target_user_id, m.by_user_id, at,
            )  # fmt: skip
        elif m.action in ("slow_mode", "pin", "unpin"):
            pinned = json.dumps(events.pinned(m, seq)) if m.action == "pin" else None
            await conn.execute(
                "update room_state set"
                " slow_mode_s = case when $3 = 'slow_mode' then $4 else slow_mode_s end,"
                " pinned = case when $3 = 'pin' then $5::jsonb"
                "               when $3 = 'unpin' then null else pinned end"
                " where tenant_id = $1 and room_id = $2",
                tenant, room, m.action, m.interval_s, pinned,
            )  # fmt: skip

    async def load(self, room: Room) -> None:
        """Fill a room just opened on this node with its state as of ``state_seq``."""
        async with self.pool.acquire() as conn:
            state = await conn.fetchrow(
                "select slow_mode_s, pinned, total_likes, state_seq from room_state"
                " where tenant_id = $1 and room_id = $2",
                room.tenant,
                room.room,
            )
            mutes = await conn.fetch(
                "select user_id, extract(epoch from until)::float8 as until from room_mutes"
                " where tenant_id = $1 and room_id = $2 and until > now()",
                room.tenant,
                room.room,
            )
            bans = await conn.fetch(
                "select user_id from room_bans where tenant_id = $1 and room_id = $2",
                room.tenant,
                room.room,
            )
            # The room's last event ids, so a copy of one that comes after this node opens the
            # room (a resend of a comment it skipped while closed) is dropped like on the nodes
            # that had it open.
            recent = await conn.fetch(
                "select event_id, seq from events where tenant_id = $1 and room_id = $2"
                " order by seq desc limit $3",
                room.tenant,
                room.room,
                SEEN_IDS,
            )
        if state is not None:
            room.slow_mode_s = state["slow_mode_s"]
            room.pinned = json.loads(state["pinned"]) if state["pinned"] else None
            room.total_likes = state["total_likes"]
            room.state_seq = state["state_seq"]
        room.mutes.update({r["user_id"]: r["until"] for r in mutes})
        room.bans.update(r["user_id"] for r in bans)
        for row in reversed(recent):
            room.remember(row["event_id"], row["seq"])
        room.flushed_seq = max(room.flushed_seq, recent[0]["seq"] if recent else 0)

    async def after(
        self, tenant: str, room: str, after_seq: int, limit: int, *, up_to: int | None = None
    ) -> list[tuple[int, str]]:
        """Stored events of a room after ``after_seq`` (and at most ``up_to``), oldest first."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "select seq, shown::text as shown from events"
                " where tenant_id = $1 and room_id = $2 and seq > $3"
                " and ($4::bigint is null or seq <= $4) order by seq limit $5",
                tenant, room, after_seq, up_to, limit,
            )  # fmt: skip
        return [(r["seq"], r["shown"]) for r in rows]

    async def complete_through(self, partition: int, seq: int, wait_s: float = 2.0) -> bool:
        """Whether the history holds every event of ``partition`` up to ``seq``, waiting a little
        for the writer to catch up."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            async with self.pool.acquire() as conn:
                done = await conn.fetchval(
                    "select next_offset from history_progress where partition = $1", partition
                )
            if done is not None and done >= seq:  # next_offset = the last seq written
                return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.1)


def shown_json(rows: list[tuple[int, str]]) -> list[dict[str, Any]]:
    return [json.loads(shown) for _, shown in rows]
