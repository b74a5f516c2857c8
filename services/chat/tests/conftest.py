"""Chat test fixtures: chat nodes as their own processes on the session's real Kafka and
Postgres, and a WebSocket viewer that records what it is sent."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from livecart_chat.app import SERVICE
from livecart_core.auth import TokenAuthority
from livecart_core.db import Database
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import TEST_AUTH_SECRET, ServiceProcess

TOKENS = TokenAuthority(TEST_AUTH_SECRET)
# Tests send faster than a person: the rate limit and sampling are tested on their own.
FAST = {
    "LIVECART_COMMENT_BURST": "1000",
    "LIVECART_COMMENT_RATE_PER_S": "1000",
    "LIVECART_COMMENTS_PER_BATCH": "1000",
}


def token(tenant: str, user: str, *scopes: str, room: str | None = None) -> str:
    return TOKENS.issue(tenant, user, scopes or ("play", "chat"), room=room)


def new_room() -> str:
    return f"room-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
async def chat_db(postgres: EmbeddedPostgres) -> AsyncIterator[Database]:
    db = Database(postgres.url, "chat", pool_size=4)
    await db.connect()
    await db.migrate(SERVICE.migrations)
    yield db
    await db.close()


NodeFactory = Callable[..., ServiceProcess]


@pytest.fixture(scope="module")
def chat_nodes(
    kafka_broker: KafkaBroker, postgres: EmbeddedPostgres, chat_db: Database
) -> Iterator[NodeFactory]:
    """Start chat nodes (each its own process); all are stopped at the end of the module."""
    started: list[ServiceProcess] = []

    def start(**settings: str) -> ServiceProcess:
        env = {
            "LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
            "LIVECART_DATABASE_URL": postgres.url,
            **FAST,
            **settings,
        }
        node = ServiceProcess("livecart_chat", env).start()
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


class Viewer:
    """A WebSocket client that keeps every frame it is sent, in order."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.conn:
                self.frames.append(json.loads(message))
        except ConnectionClosed:
            pass
        self.closed = (self.conn.close_code or 1006, self.conn.close_reason or "")

    @property
    def welcome(self) -> dict[str, Any]:
        return self.frames[0]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for f in self.frames if f["type"] == "batch" for e in f["events"]]

    def comments(self) -> list[str]:
        return [e["text"] for e in self.events if e["kind"] == "comment"]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    async def send(self, **message: Any) -> None:
        await self.conn.send(json.dumps(message))

    async def until(self, predicate: Callable[[Viewer], bool], timeout_s: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not predicate(self):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not reached in {timeout_s}s; frames: {self.frames[-5:]}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.conn.close()
        await self._reader


OPEN: list[Viewer] = []


@pytest.fixture(autouse=True)
async def close_viewers() -> AsyncIterator[None]:
    """Close the test's sockets while its event loop still runs: a node stopped with viewers
    that cannot answer its close handshake waits out its close timeout."""
    yield
    while OPEN:
        viewer = OPEN.pop()
        if viewer.closed is None:
            await viewer.close()


async def join(
    node: ServiceProcess, room: str, tok: str, *, last_seq: int | None = None, name: str = ""
) -> Viewer:
    query = f"token={tok}" + (f"&last_seq={last_seq}" if last_seq is not None else "")
    query += f"&name={name}" if name else ""
    conn = await connect(f"ws://127.0.0.1:{node.ws_port}/ws/rooms/{room}?{query}", max_size=None)
    viewer = Viewer(conn)
    OPEN.append(viewer)
    await viewer.until(lambda v: bool(v.frames) or v.closed is not None)
    return viewer


async def refused_with(node: ServiceProcess, path: str) -> tuple[int, str]:
    """Connect to ``path`` and return how the node closed the socket."""
    async with connect(f"ws://127.0.0.1:{node.ws_port}{path}") as conn:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(conn.recv(), 10)
    rcvd = closed.value.rcvd
    assert rcvd is not None
    return rcvd.code, rcvd.reason
