"""Commerce events: built once here, written to the outbox in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from livecart.events.v1.commerce_pb2 import CommerceEvent

TOPIC = "commerce.events"


def event(tenant: str, occurred_at: datetime, **change: Any) -> CommerceEvent:
    """A new event with its own id; ``change`` is one field of the ``change`` oneof."""
    stamp = Timestamp()
    stamp.FromDatetime(occurred_at)
    return CommerceEvent(event_id=str(uuid.uuid4()), tenant_id=tenant, occurred_at=stamp, **change)


async def append(conn: asyncpg.Connection, events: Sequence[CommerceEvent]) -> None:
    """Write ``events`` to the outbox (binary COPY), keyed by tenant; the relay publishes them."""
    await conn.copy_records_to_table(
        "outbox",
        schema_name="commerce",
        columns=("event_id", "topic", "key", "payload"),
        records=[
            (uuid.UUID(e.event_id), TOPIC, e.tenant_id, e.SerializeToString()) for e in events
        ],
    )
