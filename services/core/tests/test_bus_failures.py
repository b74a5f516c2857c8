"""Which failures the bus waits out and which it dead-letters, as real Postgres and Kafka
clients raise them."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from google.protobuf.message import DecodeError

from livecart.events.v1.chat_pb2 import ChatEvent
from livecart_core.bus import PoisonEvent, Transient, is_transient
from livecart_core.bus.failures import is_poison
from livecart_core.localinfra import free_port
from livecart_core.localinfra.postgres import EmbeddedPostgres


async def raised(awaitable: object) -> BaseException:
    with pytest.raises(Exception) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value


async def test_a_database_that_is_away_is_transient(postgres: EmbeddedPostgres) -> None:
    assert is_transient(await raised(asyncpg.connect(f"postgresql://x@127.0.0.1:{free_port()}/x")))
    conn = await asyncpg.connect(postgres.url)
    await conn.close()
    assert is_transient(await raised(conn.fetchval("select 1")))  # "connection is closed"
    # What a pooled connection raised when its server was SIGKILLed mid-operation.
    broken = asyncpg.exceptions.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"
    )
    assert is_transient(broken)


async def test_input_the_database_refuses_is_not_transient(postgres: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(postgres.url)
    try:
        refused = [
            await raised(conn.fetchval("select $1::int", "not a number")),  # client-side
            await raised(conn.fetchval("select $1::text", "nul \x00 inside")),  # server-side
            await raised(conn.fetchval("select $1::text", "\ud800")),
            await raised(conn.fetchval("select 1 / 0")),
        ]
    finally:
        await conn.close()
    assert [is_transient(exc) for exc in refused] == [False] * 4


async def test_a_kafka_that_is_away_is_transient() -> None:
    producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{free_port()}")
    assert is_transient(await raised(producer.start()))
    await producer.stop()


def test_explicit_markers_and_undecodable_protobuf() -> None:
    try:
        try:
            raise ConnectionResetError("peer went away")
        except ConnectionResetError as cause:
            raise RuntimeError("lookup failed") from cause
    except RuntimeError as wrapped:
        assert is_transient(wrapped)  # what it was raised from decides
    assert is_transient(Transient("search index rebuilding"))
    assert not is_transient(RuntimeError("bug")) and not is_poison(RuntimeError("bug"))
    with pytest.raises(DecodeError) as undecodable:
        ChatEvent().ParseFromString(b"\xff\xff\xff")
    assert is_poison(undecodable.value) and is_poison(PoisonEvent("no room"))
