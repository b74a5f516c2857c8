"""What viewers send over the WebSocket (docs/chat-protocol.md): one text frame in, one typed
command out, or :class:`Refused` with the protocol's error code.

:func:`parse` is total: whatever a client sends, it returns a :class:`Request` or raises
``Refused``, never anything else, so one bad frame costs its sender an error frame and never
the socket. It is pure (no room state, no I/O); who may do what, and what the room allows, is
decided by the server and the moderator after it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from livecart_core.rules import INT64_MAX, json_problem, may_break_json_rules, text_problem

MAX_REF = 64
MAX_CLIENT_ID = 64
MAX_USER_ID = 200
MAX_LIKES = 100
MAX_MUTE_S = 7 * 86_400
MAX_SLOW_MODE_S = 3600
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

CHAT = "chat"
MODERATE = "chat:moderate"
BUY = "commerce:buy"
MAX_UNITS = 100  # commerce's most units per reservation
MAX_IDEMPOTENCY_KEY = 100


class Refused(Exception):
    """A client message the node will not act on; becomes an error frame. ``ref`` is the
    message's own ``ref`` once it is known to be safe to echo."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


@dataclass(frozen=True, slots=True)
class Comment:
    scope: ClassVar[str] = CHAT
    text: str  # as sent: the moderator trims, normalises and judges it
    client_id: str | None = None  # the sender's id for it: a resend is shown once


@dataclass(frozen=True, slots=True)
class Like:
    scope: ClassVar[str] = CHAT
    count: int


@dataclass(frozen=True, slots=True)
class Pin:
    scope: ClassVar[str] = MODERATE
    seq: int


@dataclass(frozen=True, slots=True)
class Unpin:
    scope: ClassVar[str] = MODERATE


@dataclass(frozen=True, slots=True)
class Mute:
    scope: ClassVar[str] = MODERATE
    user_id: str
    duration_s: int


@dataclass(frozen=True, slots=True)
class Unmute:
    scope: ClassVar[str] = MODERATE
    user_id: str


@dataclass(frozen=True, slots=True)
class Ban:
    scope: ClassVar[str] = MODERATE
    user_id: str


@dataclass(frozen=True, slots=True)
class SlowMode:
    scope: ClassVar[str] = MODERATE
    interval_s: int


@dataclass(frozen=True, slots=True)
class Clear:
    scope: ClassVar[str] = MODERATE


@dataclass(frozen=True, slots=True)
class Reserve:
    """The buy button: reserve units of a flash sale, answered by commerce."""

    scope: ClassVar[str] = BUY
    flash_sale_id: str
    quantity: int
    idempotency_key: str


Command = Comment | Like | Pin | Unpin | Mute | Unmute | Ban | SlowMode | Clear | Reserve


@dataclass(frozen=True, slots=True)
class Request:
    """One client message: what it asks for, and the ``ref`` its reply echoes."""

    command: Command
    ref: str | None


def parse(frame: str | bytes) -> Request:
    """The command a WebSocket frame holds; Refused (``invalid_json``, ``invalid_message``,
    ``unknown_type``) when it holds none."""
    if not isinstance(frame, str):
        raise Refused("invalid_message", "send JSON text frames")
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the stack
        raise Refused("invalid_json", "the message is not valid JSON") from None
    if not isinstance(message, dict):
        raise Refused("invalid_message", "a message is a JSON object with a type")
    ref = message.get("ref")
    if ref is not None and (
        not isinstance(ref, str) or len(ref) > MAX_REF or text_problem(ref) is not None
    ):
        raise Refused("invalid_message", f"ref must be a string of at most {MAX_REF} characters")
    # NaN, NUL and lone surrogates could not be published or shown to other viewers; the
    # sender hears why here, for every field at once.
    problem = json_problem(message) if may_break_json_rules(frame) else None
    if problem is not None:
        raise Refused("invalid_message", f"the message cannot be used: {problem}", ref)
    kind = message.get("type")
    build = _COMMANDS.get(kind) if isinstance(kind, str) else None
    if build is None:
        raise Refused("unknown_type", f"unknown message type {repr(kind)[:64]}", ref)
    try:
        return Request(build(message), ref)
    except Refused as refused:
        refused.ref = ref
        raise


def _comment(m: dict[str, Any]) -> Comment:
    text = m.get("text")
    if not isinstance(text, str):
        raise Refused("invalid_message", "a comment needs a text string")
    client_id = m.get("client_id")
    if client_id is not None and (
        not isinstance(client_id, str)
        or not 1 <= len(client_id) <= MAX_CLIENT_ID
        or text_problem(client_id) is not None
    ):
        raise Refused(
            "invalid_message", f"client_id must be a string of 1 to {MAX_CLIENT_ID} characters"
        )
    return Comment(text, client_id)


def _like(m: dict[str, Any]) -> Like:
    return Like(_int(m.get("count", 1), 1, MAX_LIKES, "like.count is an integer from 1 to 100"))


def _pin(m: dict[str, Any]) -> Pin:
    return Pin(_int(m.get("seq"), 0, INT64_MAX, "pin.seq is the comment's sequence number"))


def _mute(m: dict[str, Any]) -> Mute:
    duration = _int(m.get("duration_s", 600), 1, MAX_MUTE_S, "mute.duration_s is 1 s to 7 days")
    return Mute(_user(m), duration)


def _slow_mode(m: dict[str, Any]) -> SlowMode:
    why = f"slow_mode.interval_s is 0 (off) to {MAX_SLOW_MODE_S} seconds"
    return SlowMode(_int(m.get("interval_s"), 0, MAX_SLOW_MODE_S, why))


def _reserve(m: dict[str, Any]) -> Reserve:
    sale = m.get("flash_sale_id")
    if not isinstance(sale, str) or not _UUID.fullmatch(sale):
        raise Refused("invalid_message", "reserve.flash_sale_id is the sale's id (a UUID)")
    quantity = _int(m.get("quantity", 1), 1, MAX_UNITS, f"reserve.quantity is 1 to {MAX_UNITS}")
    key = m.get("idempotency_key")
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY
        or text_problem(key) is not None
    ):
        raise Refused(
            "invalid_message",
            f"reserve.idempotency_key is a string of 1 to {MAX_IDEMPOTENCY_KEY} characters;"
            " send the same one again to retry safely",
        )
    return Reserve(sale.lower(), quantity, key)


_COMMANDS: dict[str, Callable[[dict[str, Any]], Command]] = {
    "comment": _comment,
    "like": _like,
    "pin": _pin,
    "unpin": lambda m: Unpin(),
    "mute": _mute,
    "unmute": lambda m: Unmute(_user(m)),
    "ban": lambda m: Ban(_user(m)),
    "slow_mode": _slow_mode,
    "clear": lambda m: Clear(),
    "reserve": _reserve,
}


def _int(value: object, low: int, high: int, why: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Refused("invalid_message", why)
    return value


def _user(m: dict[str, Any]) -> str:
    user = m.get("user_id")
    if not isinstance(user, str) or not 1 <= len(user) <= MAX_USER_ID:
        raise Refused("invalid_message", f"user_id is the user's id (1 to {MAX_USER_ID} chars)")
    return user
