"""The parser of viewers' frames is total: any text or bytes become a command or a Refused
with a protocol error code, never another exception, and a command holds only usable values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livecart_chat import protocol
from livecart_chat.protocol import Refused, Request, parse
from livecart_core.rules import INT64_MAX, json_problem

CODES = {"invalid_json", "invalid_message", "unknown_type"}
TYPES = ["comment", "like", "pin", "unpin", "mute", "unmute", "ban", "slow_mode", "clear"]
FIELDS = ["type", "text", "ref", "count", "seq", "user_id", "duration_s", "interval_s"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80)
    | st.sampled_from(TYPES)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
messages = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), values, max_size=6)


def outcome(frame: str | bytes) -> Request | Refused:
    try:
        return parse(frame)
    except Refused as refused:
        assert refused.code in CODES and refused.message
        return refused


def usable(request: Request) -> None:
    """What a parsed command holds can be published and shown."""
    fields = {k: getattr(request.command, k) for k in request.command.__dataclass_fields__}
    assert json_problem(fields) is None and json_problem(request.ref) is None
    for value in fields.values():
        if isinstance(value, int):
            assert not isinstance(value, bool) and 0 <= value <= INT64_MAX
    assert request.ref is None or len(request.ref) <= protocol.MAX_REF


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_frame_is_a_command_or_refused(frame: str | bytes) -> None:
    result = outcome(frame)
    if isinstance(result, Request):
        usable(result)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_any_json_object_is_a_command_or_refused(message: dict[str, Any]) -> None:
    frame = json.dumps(message)  # NaN and Infinity as Python's json writes them
    result = outcome(frame)
    if isinstance(result, Request):
        usable(result)
        assert message["type"] in TYPES


@settings(max_examples=200)
@given(st.text(alphabet='[]{}",:0 ', max_size=3000))
def test_deep_or_broken_nesting_is_refused_not_raised(frame: str) -> None:
    outcome(frame)


@pytest.mark.parametrize("depth", [100, 1000, 2047])
def test_nesting_past_the_stack_is_invalid_json(depth: int) -> None:
    with pytest.raises(Refused) as refused:
        parse("[" * depth + "]" * depth)
    assert refused.value.code in {"invalid_json", "invalid_message"}


@given(st.text(min_size=1, max_size=200), st.text(max_size=64))
def test_a_comment_is_parsed_with_its_ref(text: str, ref: str) -> None:
    result = outcome(json.dumps({"type": "comment", "text": text, "ref": ref}))
    if json_problem([text, ref]) is None:
        assert result == Request(protocol.Comment(text), ref)
    else:
        assert isinstance(result, Refused) and result.code == "invalid_message"


@given(st.integers())
def test_integers_outside_their_range_are_refused(n: int) -> None:
    for message, low, high in [
        ({"type": "like", "count": n}, 1, protocol.MAX_LIKES),
        ({"type": "pin", "seq": n}, 0, INT64_MAX),
        ({"type": "mute", "user_id": "u", "duration_s": n}, 1, protocol.MAX_MUTE_S),
        ({"type": "slow_mode", "interval_s": n}, 0, protocol.MAX_SLOW_MODE_S),
    ]:
        result = outcome(json.dumps(message))
        assert isinstance(result, Request) == (low <= n <= high)
