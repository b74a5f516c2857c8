"""Commerce events into live rooms: pins, red packets and lotteries as chat system events.

The ``chat-commerce`` consumer group reads ``commerce.events`` and posts the events that belong
to a room into ``chat.messages``. The chat event keeps the commerce event's id, so a commerce
event the outbox relay published twice is shown and stored once.
"""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from livecart.events.v1.commerce_pb2 import CommerceEvent
from livecart_chat import events
from livecart_core.bus import Event, EventBus, PoisonEvent
from livecart_core.errors import InvalidArgument
from livecart_core.rules import room_id

log = logging.getLogger("livecart.chat.bridge")

COMMERCE_TOPIC = "commerce.events"

# commerce change -> the system event's kind in the room
KINDS = {
    "product_pinned": "product_pinned",
    "red_packet_created": "red_packet",
    "red_packet_grabbed": "red_packet_grabbed",
    "lottery_opened": "lottery_open",
    "lottery_drawn": "lottery_result",
}


class CommerceBridge:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    async def handle(self, message: Event) -> None:
        event = message.decode(CommerceEvent)  # undecodable: the bus dead-letters it
        change = event.WhichOneof("change")
        if change not in KINDS:
            return
        data = plain(getattr(event, change))
        room = str(data.pop("room_id", ""))
        if not room:
            return
        try:
            posted = events.system(
                event.tenant_id, room_id(room), KINDS[change], data, "commerce", event.event_id
            )
        except InvalidArgument as exc:  # no consumer of the room could take it: dead-lettered
            raise PoisonEvent(f"commerce event not postable to chat: {exc}") from None
        await self.bus.publish(events.TOPIC, events.room_key(event.tenant_id, room), posted)


def plain(message: Message) -> dict[str, Any]:
    """A flat message as JSON-ready values: numbers stay numbers (proto3's JSON mapping would
    turn int64 into strings), timestamps become ISO 8601."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if isinstance(value, Timestamp):
            out[field.name] = value.ToDatetime().isoformat() + "Z"
        elif not isinstance(value, str | bytes | int | float | Message):  # a repeated field
            out[field.name] = list(value)
        else:
            out[field.name] = value
    return out
