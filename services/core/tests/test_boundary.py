"""The HTTP boundary every service shares, tried on a real uvicorn server as an attacker would:
oversized and stalled requests, text that cannot be stored, numbers JSON does not have."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Query
from pydantic import BaseModel

from livecart_core.boundary import Limits, body_limit
from livecart_core.health import Readiness
from livecart_core.http import HttpServer, create_http_app, validation_detail


class Note(BaseModel):
    text: str
    stars: int = 0
    weight: float = 1.0


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[HttpServer]:
    app = create_http_app("boundary", Readiness("boundary"), limits=Limits(body_timeout_s=1.0))

    @app.post("/notes")
    async def add_note(note: Note) -> dict[str, object]:
        return {"text": note.text, "stars": note.stars}

    @app.post("/small", openapi_extra=body_limit(64))
    async def small(note: Note) -> dict[str, str]:
        return {"text": note.text}

    @app.get("/search")
    async def search(q: str = Query(max_length=100)) -> dict[str, str]:
        return {"q": q}

    http = HttpServer(app, "127.0.0.1", 0)
    task = asyncio.create_task(http.serve())
    while not http.started:
        await asyncio.sleep(0.01)
    yield http
    http.stop()
    await task


@pytest.fixture
async def client(server: HttpServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        yield client


async def raw(server: HttpServer, request: bytes, *, then: bytes = b"") -> tuple[bytes, float]:
    """Send ``request`` on a fresh connection (and ``then`` after it); the answer's head and
    how long it took to come."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    writer.write(request)
    if then:
        writer.write(then)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), timeout=10)
    writer.close()
    return answer, time.monotonic() - started


async def test_text_that_cannot_be_stored_is_refused_in_any_json_string(
    client: httpx.AsyncClient,
) -> None:
    for body in (b'{"text": "a\\u0000b"}', b'{"text": "\\ud800"}', b'{"text": "x\\udc00"}'):
        answer = await client.post(
            "/notes", content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, body
        assert answer.json()["error"] == "invalid_argument"
    # Also in keys and nested values the route never reads.
    answer = await client.post("/notes", json={"text": "ok", "extra": [{"k\x00": 1}]})
    assert answer.status_code == 400
    # A paired surrogate escape is an ordinary character, and an escaped backslash is text.
    fine = await client.post(
        "/notes",
        content=b'{"text": "\\ud83d\\ude00 \\\\u0000"}',
        headers={"content-type": "application/json"},
    )
    assert fine.status_code == 200
    assert fine.json()["text"] == "\U0001f600 \\u0000"


async def test_nan_and_infinity_get_a_clear_400(client: httpx.AsyncClient) -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        answer = await client.post(
            "/notes",
            content=b'{"text": "t", "weight": ' + literal + b"}",
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 400, literal
        assert "JSON number" in answer.json()["message"]
    # In the field of another type it used to crash the 422 handler itself.
    answer = await client.post(
        "/notes",
        content=b'{"text": "t", "stars": NaN}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400


def test_the_validation_answer_encodes_whatever_the_input_was() -> None:
    detail = validation_detail(
        [
            {"type": "int_type", "loc": ("body", "stars"), "msg": "bad", "input": math.nan},
            {"type": "x", "loc": ("body", "k\ud800"), "msg": "m\ud800", "input": "\ud800"},
            {"type": "x", "loc": ("query",), "msg": "m", "input": object()},
        ]
    )
    encoded = json.dumps(detail, allow_nan=False).encode()
    assert b"NaN" not in encoded
    assert [item.get("input") for item in detail] == [None, None, None]


async def test_deep_nesting_is_refused_not_crashed(client: httpx.AsyncClient) -> None:
    body = b'{"text": "t", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    answer = await client.post("/notes", content=body, headers={"content-type": "application/json"})
    assert 400 <= answer.status_code < 500


async def test_nul_in_the_url_is_refused(client: httpx.AsyncClient) -> None:
    answer = await client.get("/search", params={"q": "a\x00b"})
    assert answer.status_code == 400
    assert answer.json()["message"] == "NUL characters are not allowed in the URL"
    assert (await client.get("/search", params={"q": "ok"})).status_code == 200


async def test_bodies_past_the_limit_get_413_before_they_are_read(server: HttpServer) -> None:
    # Announced and never sent: answered at once, not after the client gives up.
    head = (
        b"POST /notes HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 99999999999\r\n\r\n"
    )
    answer, took = await raw(server, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert took < 2.0
    # A route's own, smaller limit.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        small = await client.post("/small", json={"text": "x" * 100})
        assert small.status_code == 413
        assert small.json()["error"] == "payload_too_large"


async def test_a_large_upload_is_answered_413_not_reset(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        for _ in range(5):
            answer = await client.post(
                "/notes", content=b"x" * (10 << 20), headers={"content-type": "application/json"}
            )
            assert answer.status_code == 413
            assert answer.json()["error"] == "payload_too_large"


async def test_a_stalled_body_gets_408(server: HttpServer) -> None:
    head = (
        b"POST /notes HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    answer, took = await raw(server, head, then=b'{"text": ')
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"connection: close" in answer.lower()
    assert 0.9 <= took < 5.0


async def test_too_many_or_too_large_headers_get_431(server: HttpServer) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(2000))
    answer, _ = await raw(server, b"GET /healthz2 HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    large = b"X-Big: " + b"a" * (1 << 20) + b"\r\n"
    answer, _ = await raw(server, b"GET /search?q=a HTTP/1.1\r\nHost: t\r\n" + large + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    answer, _ = await raw(
        server, b"GET /search?q=" + b"a" * 10000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 414"), answer[:100]


async def test_routing_refusals_have_the_error_body(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = await client.delete("/notes")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
    assert "POST" in wrong.headers["allow"]


async def test_the_openapi_lists_the_boundarys_answers(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    notes = schema["paths"]["/notes"]["post"]["responses"]
    assert {"400", "408", "413", "414", "422", "431"} <= set(notes)
    search = schema["paths"]["/search"]["get"]["responses"]
    assert "413" not in search and "422" in search
    error = schema["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"error", "message"}


def test_bounded_integers_refuse_booleans_and_show_their_bounds() -> None:
    from pydantic import BaseModel, ValidationError

    from livecart_core.rules import INT32_MAX, Count

    class Stock(BaseModel):
        units: Count

    assert Stock(units=3).units == 3
    for bad in (True, False, -1, INT32_MAX + 1):
        with pytest.raises(ValidationError):
            Stock(units=bad)
    schema = Stock.model_json_schema()["properties"]["units"]
    assert (schema["minimum"], schema["maximum"]) == (0, INT32_MAX)
