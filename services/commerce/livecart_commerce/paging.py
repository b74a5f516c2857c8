"""Opaque page cursors over a unique, stable sort key.

A listing sorted by a timestamp alone loses rows at page boundaries: every order of one
group-commit batch shares its transaction's ``now()``. Listings sort by (timestamp, id)
instead, and hand the last row's pair back as an opaque cursor, so a client cannot come to
depend on what is inside it.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime

from livecart_core.errors import InvalidArgument

MAX_CURSOR_LENGTH = 200


def encode(at: datetime, row_id: uuid.UUID) -> str:
    """The cursor that resumes a listing after the row (``at``, ``row_id``)."""
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode(cursor: str, field: str = "cursor") -> tuple[datetime, uuid.UUID]:
    """The (timestamp, id) inside a cursor from :func:`encode`; InvalidArgument naming
    ``field`` for anything else."""
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, row_id = text.partition("|")
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError
        return parsed.astimezone(UTC), uuid.UUID(row_id)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(f"{field} is not a cursor this service handed out") from None
