"""Input rules every service shares: what a room id is, what text may hold, how large an integer
may be. Routes and servicers name these types instead of writing their own patterns, so one
class of bad input ends in one place (the HTTP and gRPC boundaries apply the text rule to every
string before a handler runs)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, StringConstraints

from livecart_core.errors import InvalidArgument

# A room id, in URLs, Kafka keys and every API: 1 to 200 of these characters.
ROOM_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,200}$"
ROOM_ID = re.compile(ROOM_ID_PATTERN)
ROOM_ID_RULE = "1 to 200 of [A-Za-z0-9._:-]"
RoomId = Annotated[str, StringConstraints(pattern=ROOM_ID_PATTERN)]

# Integer ranges of the columns and wire types behind them; every integer field names one.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# Money in minor units: below 2^53, so a JSON client in any language reads it exactly, and a
# sum of up to 1,000 of them still fits a bigint.
MONEY_MAX = 2**53 - 1


def _not_a_boolean(value: Any) -> Any:
    # Pydantic's lax mode reads JSON true/false as 1/0; the schema says integer.
    if isinstance(value, bool):
        raise ValueError("a boolean is not an integer")
    return value


_INTEGER = BeforeValidator(_not_a_boolean)
# The validator after the bounds: before them, pydantic leaves the bounds out of the schema.
Int32 = Annotated[int, Field(ge=-(2**31), le=INT32_MAX), _INTEGER]
Count = Annotated[int, Field(ge=0, le=INT32_MAX), _INTEGER]
Seq = Annotated[int, Field(ge=0, le=INT64_MAX), _INTEGER]
MinorUnits = Annotated[int, Field(ge=0, le=MONEY_MAX), _INTEGER]

# NUL ends strings in C and Postgres text; a lone surrogate cannot be encoded as UTF-8.
_BAD_TEXT = re.compile(r"[\x00\ud800-\udfff]")
MAX_JSON_DEPTH = 32


def room_id(value: str, field: str = "room_id") -> str:
    """``value`` when it is a room id; InvalidArgument naming ``field`` otherwise."""
    if not ROOM_ID.match(value):
        raise InvalidArgument(f"{field} is {ROOM_ID_RULE}")
    return value


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored or sent on (NUL, a lone surrogate); None when it can."""
    bad = _BAD_TEXT.search(value)
    if bad is None:
        return None
    char = bad.group()
    return "NUL characters are not allowed" if char == "\x00" else "lone surrogates are not text"


# Escapes and tokens that may hide what json_problem refuses: JSON text without any of them (and
# with few brackets) decodes to a value json_problem passes, so it need not be walked.
_SUSPECT_PATTERN = r"\\u0000|\\u[dD][89a-fA-F][0-9a-fA-F]{2}|NaN|Infinity|[eE]\+?[0-9]{3}|\x00"
_SUSPECT_TEXT = re.compile(_SUSPECT_PATTERN)
_SUSPECT_BYTES = re.compile(_SUSPECT_PATTERN.encode())


def may_break_json_rules(text: str | bytes) -> bool:
    """Whether JSON ``text`` may decode to a value :func:`json_problem` refuses (a cheap test
    that spares the walk for nearly every message)."""
    if isinstance(text, str):
        found = _SUSPECT_TEXT.search(text) is not None
        brackets = text.count("[") + text.count("{")
    else:
        found = _SUSPECT_BYTES.search(text) is not None
        brackets = text.count(b"[") + text.count(b"{")
    return found or brackets > MAX_JSON_DEPTH


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why a decoded JSON value cannot be stored or sent to browsers (a non-finite number, bad
    text in a key or string, nesting past ``max_depth``); None when it can. Iterative, so a
    deeply nested value cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return problem
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "NaN and Infinity are not JSON numbers"
        elif isinstance(item, dict | list):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    stack.append((key, depth))
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must fall between the years 1 and 9999 in UTC") from None


# A moment in time, with its UTC offset (a time without one means different things to different
# clients), that stays within the years 1 to 9999 once in UTC, as Python and Postgres hold it.
Instant = Annotated[AwareDatetime, AfterValidator(_in_utc)]
