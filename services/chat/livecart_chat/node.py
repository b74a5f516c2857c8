"""One chat node: the rooms it knows, fed by its own read of ``chat.messages``.

Each node reads the whole topic in a consumer group of its own, starting where the topic ends
when the node starts, so every node applies every room's events in partition order. A ticker
flushes the rooms that changed every ``batch_ms``, and publishes the likes its viewers sent,
aggregated per room. Rooms nobody watches and nothing happens in are forgotten after a while.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from google.protobuf.message import DecodeError

from livecart.events.v1.chat_pb2 import ChatEvent
from livecart_chat import events
from livecart_chat.history import History
from livecart_chat.metrics import ROOMS
from livecart_chat.rooms import Room
from livecart_chat.settings import ChatSettings
from livecart_core.bus import Event, EventBus, Outgoing, Subscription
from livecart_core.bus.failures import is_transient
from livecart_core.bus.memory import partition_for

log = logging.getLogger("livecart.chat.node")

IDLE_ROOM_S = 900.0


class ChatNode:
    def __init__(self, settings: ChatSettings, bus: EventBus, history: History) -> None:
        self.settings = settings
        self.bus = bus
        self.history = history
        self.rooms: dict[tuple[str, str], Room] = {}
        self._opening: dict[tuple[str, str], asyncio.Future[Room]] = {}
        self.dirty: set[Room] = set()
        self.start: dict[int, int] = {}  # partition -> first offset this node reads
        self.read: dict[int, int] = {}  # partition -> next offset this node reads
        self.subscription: Subscription | None = None
        self.forgotten: set[tuple[str, str]] = set()

    async def join(self) -> None:
        """Read the topic from its end; returns once every partition has a position."""
        self.subscription = await self.bus.subscribe(
            events.TOPIC,
            f"chat-node-{uuid.uuid4().hex}",
            self.on_event,
            from_beginning=False,
            commit=False,  # a group of one that never resumes: committing would only wait
        )
        positions = await self.subscription.positions()
        self.start = {p: offset for (_, p), offset in positions.items()}
        self.read = dict(self.start)

    def partition(self, tenant: str, room: str) -> int:
        return partition_for(events.room_key(tenant, room), self.settings.kafka_topic_partitions)

    async def room(self, tenant: str, room: str) -> Room:
        """The room, opened (its state loaded from history) on first use."""
        key = (tenant, room)
        found = self.rooms.get(key)
        if found is not None:
            return found
        opening = self._opening.get(key)
        if opening is not None:
            return await asyncio.shield(opening)
        future: asyncio.Future[Room] = asyncio.get_running_loop().create_future()
        self._opening[key] = future
        try:
            partition = self.partition(tenant, room)
            # Memory will hold every event of the room this node reads: all since the node
            # started, or, for a room it forgot, since now.
            since = self.read if key in self.forgotten else self.start
            complete_after = since.get(partition, 0)  # seq = offset + 1
            self.forgotten.discard(key)
            opened = Room(tenant, room, self.settings.history_size, complete_after)
            await self.history.load(opened)
            self.rooms[key] = opened
            ROOMS.set(len(self.rooms))
            future.set_result(opened)
            return opened
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it from shield
            raise
        finally:
            del self._opening[key]

    async def on_event(self, message: Event) -> None:
        """This node's ``chat.messages`` handler: apply the event to its room."""
        try:
            event = message.decode(ChatEvent)
        except DecodeError:
            log.warning("chat event skipped: not a ChatEvent", extra={"offset": message.offset})
            event = None
        if event is not None and event.tenant_id and event.room_id:
            room = await self._open_for(event.tenant_id, event.room_id)
            if room is not None and room.apply(event, message.offset + 1):
                self.dirty.add(room)
        self.read[message.partition] = message.offset + 1

    async def _open_for(self, tenant: str, room: str) -> Room | None:
        """The room an event of the stream goes to; None when it is not open on this node and
        cannot be opened now (Postgres is away). No viewer of it is here then, and holding up
        the partition would stall every other room on it: the node leaves it as if forgotten,
        so opening it later reads what this node skipped from history."""
        try:
            return await self.room(tenant, room)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.forgotten.add((tenant, room))
            log.warning(
                "room not opened for its event: history unavailable", extra={"why": repr(exc)}
            )
            return None

    async def recover(self, room: Room, last_seq: int) -> list[bytes] | None:
        """The events after ``last_seq`` a reconnecting viewer missed (as encoded events), or
        None when they cannot all be given (beyond history, or more than ``recover_max``)."""
        limit = self.settings.recover_max
        in_memory = room.since(last_seq)
        if in_memory is not None:
            return [e.data for e in in_memory] if len(in_memory) <= limit else None
        # Older than this node's memory: the stored history covers up to where memory starts.
        through = room.complete_after
        if not await self.history.complete_through(self.partition(room.tenant, room.room), through):
            return None
        stored = await self.history.after(
            room.tenant, room.room, last_seq, limit + 1, up_to=through
        )
        newer = room.since(max(through, last_seq))
        if newer is None or len(stored) + len(newer) > limit:
            return None
        return [shown.encode() for _, shown in stored] + [e.data for e in newer]

    async def run(self) -> None:
        """Flush changed rooms every batch interval; publish likes; forget idle rooms."""
        interval = self.settings.batch_ms / 1000
        s = self.settings
        next_sweep = time.monotonic() + 60
        while True:
            began = time.monotonic()
            dirty, self.dirty = self.dirty, set()
            for room in dirty:
                await room.flush(
                    s.comments_per_batch, interval, s.slow_buffer_bytes, s.behind_limit_bytes,
                    s.behind_limit_s,
                )  # fmt: skip
            await self._publish_likes()
            if began >= next_sweep:
                self._forget_idle(began)
                next_sweep = began + 60
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

    async def _publish_likes(self) -> None:
        """One publish for every room's likes, within ``publish_timeout_s``: the ticker that
        flushes every room waits on it, so a bus that is away must not hold it longer."""
        outgoing = []
        for room in [r for r in self.rooms.values() if r.local_likes]:
            count, room.local_likes = room.local_likes, 0
            event = events.likes(room.tenant, room.room, count)
            outgoing.append(Outgoing(events.TOPIC, room.key, event))
        if not outgoing:
            return
        try:
            async with asyncio.timeout(self.settings.publish_timeout_s):
                await self.bus.publish_many(outgoing)
        except Exception as exc:  # the bus is down: likes are low priority, drop them
            log.warning("likes dropped: the bus refused them", extra={"why": repr(exc)})

    def _forget_idle(self, now: float) -> None:
        for key, room in list(self.rooms.items()):
            if not room.viewers and not room.pending and now - room.touched > IDLE_ROOM_S:
                del self.rooms[key]
                self.forgotten.add(key)
        ROOMS.set(len(self.rooms))

    async def stop(self) -> None:
        if self.subscription is not None:
            await self.subscription.stop()
