"""Chat events: building them for the bus, and showing them as the WebSocket protocol does.

A room's events travel on ``chat.messages`` keyed by ``<tenant>/<room>``, so one room lives in
one partition, and the event's offset there plus one is its sequence number in the room (so 0
can mean "nothing yet").
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from livecart.events.v1.chat_pb2 import ChatEvent, Comment, Likes, Moderation, SystemEvent
from livecart_core import rules
from livecart_core.errors import InvalidArgument

log = logging.getLogger("livecart.chat.events")

TOPIC = "chat.messages"
ROOM_ID = rules.ROOM_ID


def room_key(tenant: str, room: str) -> str:
    return f"{tenant}/{room}"


def new_event(tenant: str, room: str, event_id: str | None = None, **body: Any) -> ChatEvent:
    """A ChatEvent stamped now; ``body`` is one field of its ``body`` oneof."""
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return ChatEvent(
        event_id=event_id or uuid.uuid4().hex, tenant_id=tenant, room_id=room, sent_at=stamp,
        **body,
    )  # fmt: skip


# Event ids of comments that carry the sender's client id: a resend has the same id.
_CLIENT_IDS = uuid.UUID("6f1d0a52-8c1e-4c55-9d55-2b7f3c2a9e10")


def comment(
    tenant: str, room: str, user: str, name: str, text: str, client_id: str | None = None
) -> ChatEvent:
    """A viewer's comment. With the sender's ``client_id`` its event id is derived from
    (tenant, room, user, client id), so a resend of it is the same event: every node shows it
    once and history stores it once (both drop a seen event id)."""
    event_id = None if client_id is None else comment_id(tenant, room, user, client_id)
    comment = Comment(user_id=user, display_name=name, text=text)
    return new_event(tenant, room, event_id, comment=comment)


def comment_id(tenant: str, room: str, user: str, client_id: str) -> str:
    """The event id of a comment sent with ``client_id``: the same for each of its resends."""
    return uuid.uuid5(_CLIENT_IDS, f"{tenant}\n{room}\n{user}\n{client_id}").hex


def likes(tenant: str, room: str, count: int) -> ChatEvent:
    return new_event(tenant, room, likes=Likes(count=count))


def system(
    tenant: str, room: str, kind: str, data: dict[str, Any], source: str, event_id: str | None
) -> ChatEvent:
    """A system event; InvalidArgument when ``data`` holds what no consumer can store or show
    (see :func:`livecart_core.rules.json_problem`), so it never enters the room's stream."""
    problem = rules.json_problem(data)
    if problem is not None:
        raise InvalidArgument(f"data_json: {problem}")
    body = SystemEvent(kind=kind, data_json=json.dumps(data, allow_nan=False), source=source)
    return new_event(tenant, room, event_id, system=body)


def moderation(tenant: str, room: str, **action: Any) -> ChatEvent:
    return new_event(tenant, room, moderation=Moderation(**action))


def shown(event: ChatEvent, seq: int) -> dict[str, Any] | None:
    """The event as viewers see it (see docs/chat-protocol.md); None for likes, which travel
    as counts on the batch instead."""
    ts = round(event.sent_at.seconds + event.sent_at.nanos / 1e9, 3)
    kind = event.WhichOneof("body")
    if kind == "comment":
        c = event.comment
        return {"seq": seq, "kind": "comment", "user_id": c.user_id, "name": c.display_name,
                "text": c.text, "ts": ts}  # fmt: skip
    if kind == "system":
        return {"seq": seq, "kind": "system", "event": event.system.kind,
                "data": _system_data(event), "ts": ts}  # fmt: skip
    if kind == "moderation":
        m = event.moderation
        shown_: dict[str, Any] = {"seq": seq, "kind": "moderation", "action": m.action,
                                  "by": m.by_user_id, "ts": ts}  # fmt: skip
        if m.target_user_id:
            shown_["user_id"] = m.target_user_id
        if m.action == "mute":
            shown_["duration_s"] = m.duration_s
        if m.action == "slow_mode":
            shown_["interval_s"] = m.interval_s
        if m.action == "pin":
            shown_["pinned"] = pinned(m, seq)
        return shown_
    return None


def _system_data(event: ChatEvent) -> Any:
    # Producers refuse such data since it was found; an older event already in the stream is
    # shown without it rather than stopping every consumer that meets it.
    try:
        data = json.loads(event.system.data_json or "{}")
    except (ValueError, RecursionError):
        data = None
    if data is None or rules.json_problem(data) is not None:
        log.warning("system event data not shown", extra={"event_id": event.event_id})
        return {}
    return data


def pinned(m: Moderation, seq: int) -> dict[str, Any]:
    return {"seq": m.pinned_seq, "user_id": m.pinned.user_id, "name": m.pinned.display_name,
            "text": m.pinned.text, "pinned_at_seq": seq}  # fmt: skip


def encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def sent_at(event: ChatEvent) -> datetime:
    return datetime.fromtimestamp(event.sent_at.seconds + event.sent_at.nanos / 1e9, tz=UTC)
