"""Chaos scenarios: real Kafka and Postgres SIGKILLed and restarted under load, with the
invariants checked afterwards from the database and the topic (Jepsen-style: what clients were
told is compared with what the system holds). ``tests/chaos`` runs them small inside
``make test``; ``bench/chaos.py`` runs them longer and prints the figures.

Each scenario starts its own broker and database (SIGKILLing the session's shared ones would
disturb other tests), and the services as their own processes, as deployed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from livecart.events.v1.commerce_pb2 import CommerceEvent
from livecart_core.auth import TokenAuthority
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import TEST_AUTH_SECRET, ServiceProcess

TOKENS = TokenAuthority(TEST_AUTH_SECRET)
TENANT = "chaos-shop"
COMMERCE_TOPIC = "commerce.events"
CHAT_TOPIC = "chat.messages"
# A dependency is "back" once its restart returns; the system is "normal" again when requests
# succeed at the latency they had before the outage (within this factor, or this floor).
NORMAL_FACTOR = 3.0
NORMAL_FLOOR_S = 0.25


@dataclass
class Outage:
    """One dependency (``kafka`` or ``postgres``) SIGKILLed for ``down_s``, then restarted."""

    dependency: str
    down_s: float


@dataclass
class Timeline:
    """When each outage began and ended (monotonic seconds)."""

    outages: list[tuple[str, float, float]] = field(default_factory=list)


@dataclass
class Infra:
    kafka: KafkaBroker
    postgres: EmbeddedPostgres

    def kill(self, dependency: str) -> None:
        (self.kafka if dependency == "kafka" else self.postgres).kill()

    def start(self, dependency: str) -> None:
        (self.kafka if dependency == "kafka" else self.postgres).start()

    def env(self, **settings: str) -> dict[str, str]:
        """A service's environment on this broker and database (plus ``settings``)."""
        return {
            "LIVECART_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "LIVECART_DATABASE_URL": self.postgres.url,
            "LIVECART_MIGRATE_ON_START": "true",
            "LIVECART_DATABASE_CONNECT_TIMEOUT_S": "1",
            "LIVECART_LOG_LEVEL": "WARNING",
            **settings,
        }


@contextlib.contextmanager
def infrastructure() -> Iterator[Infra]:
    root = Path(tempfile.mkdtemp(prefix="livecart-chaos-"))
    (root / "kafka").mkdir()
    kafka = KafkaBroker(root / "kafka").start()
    try:
        postgres = EmbeddedPostgres(root / "pg").start()
        try:
            yield Infra(kafka, postgres)
        finally:
            postgres.stop()
    finally:
        kafka.stop()
        shutil.rmtree(root, ignore_errors=True)  # ~40 MB of broker log and database a run


async def run_outages(
    infra: Infra,
    outages: list[Outage],
    timeline: Timeline,
    gap_s: float,
    on_back: Callable[[float], Awaitable[None]] | None = None,
) -> None:
    """Each outage in turn, ``gap_s`` of normal operation before and after each;
    ``on_back(back_at)`` runs beside the load once each dependency is back."""
    watchers: list[asyncio.Task[None]] = []
    for outage in outages:
        await asyncio.sleep(gap_s)
        began = time.monotonic()
        infra.kill(outage.dependency)
        await asyncio.sleep(outage.down_s)
        await asyncio.to_thread(infra.start, outage.dependency)
        back = time.monotonic()
        timeline.outages.append((outage.dependency, began, back))
        if on_back is not None:
            watchers.append(asyncio.create_task(on_back(back)))
    await asyncio.sleep(gap_s)
    await asyncio.gather(*watchers)


class ReadinessWatch:
    """Polls ``/readyz`` of every process; sums how long any of them said 503 while it was
    alive (a pod that can serve must not leave the load balancer)."""

    def __init__(self, urls: list[str], every_s: float = 0.2) -> None:
        self.urls = urls
        self.every_s = every_s
        self.unready_s = 0.0
        self.degraded_seen = False

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                began = time.monotonic()
                for url in self.urls:
                    try:
                        answer = await client.get(f"{url}/readyz")
                    except httpx.HTTPError:
                        self.unready_s += self.every_s / len(self.urls)
                        continue
                    if answer.status_code != 200:
                        self.unready_s += self.every_s / len(self.urls)
                    elif answer.json().get("status") == "degraded":
                        self.degraded_seen = True
                await asyncio.sleep(max(0.0, self.every_s - (time.monotonic() - began)))


def recovery_s(answers: list[tuple[float, float, bool]], timeline: Timeline) -> float:
    """Per outage, from the dependency being back to the first request that succeeded at the
    latency normal before the outage; the worst of the outages. ``answers`` holds
    ``(sent_at, latency_s, succeeded)``."""
    worst = 0.0
    for _, began, back in timeline.outages:
        before = sorted(lat for at, lat, ok in answers if ok and at < began)
        normal = max(NORMAL_FLOOR_S, NORMAL_FACTOR * before[len(before) // 2]) if before else 1.0
        after = sorted(at + lat for at, lat, ok in answers if ok and at >= back and lat <= normal)
        worst = max(worst, (after[0] - back) if after else float("inf"))
    return worst


async def read_topic(bootstrap: str, topic: str) -> list[tuple[dict[str, bytes], bytes]]:
    """Every record of ``topic`` from the beginning: (headers, value)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    assert tps, described
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[tuple[dict[str, bytes], bytes]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1000)
            for batch in batches.values():
                records += [(dict(r.headers), r.value or b"") for r in batch]
        return records
    finally:
        await consumer.stop()


# -- commerce -------------------------------------------------------------------------------


@dataclass
class CommerceReport:
    buyers: int
    units: int
    reserved: int = 0
    sold_out: int = 0
    paid: int = 0
    orders_lost: int = 0  # a 201's order missing from the database
    orders_duplicated: int = 0  # a key with two orders, or a key answered with two order ids
    oversold: int = 0
    over_limit: int = 0  # buyers holding more than the per-user limit
    events_missing: int = 0  # a committed order without its OrderReserved (or paid: OrderPaid)
    events_duplicated: int = 0  # records on the topic whose event id was already there
    answers_5xx_non_503: int = 0
    answers_503: int = 0
    unexpected: Counter[str] = field(default_factory=Counter)
    unready_s: float = 0.0
    degraded_seen: bool = False
    recovery_s: float = 0.0
    outbox_drained_s: float = 0.0  # a dependency back → what the outbox held then is published

    def figures(self, scenario: str = "commerce") -> list[str]:
        return [
            f"{scenario}_orders_lost={self.orders_lost} orders",
            f"{scenario}_orders_duplicated={self.orders_duplicated} orders",
            f"{scenario}_oversold={self.oversold} units",
            f"{scenario}_over_limit={self.over_limit} buyers",
            f"{scenario}_events_missing={self.events_missing} events",
            f"{scenario}_events_duplicated={self.events_duplicated} events",
            f"{scenario}_answers_5xx_non_503={self.answers_5xx_non_503} answers",
            f"{scenario}_answers_503={self.answers_503} answers",
            f"{scenario}_unready_s={self.unready_s:.1f} s",
            f"{scenario}_recovery_s={self.recovery_s:.2f} s",
            f"{scenario}_outbox_drained_s={self.outbox_drained_s:.2f} s",
            f"{scenario}_reserved={self.reserved} orders",
            f"{scenario}_paid={self.paid} orders",
        ]


def _auth(user: str, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS.issue(TENANT, user, list(scopes))}"}


async def _open_sale(base: str, units: int) -> str:
    admin = _auth("merchant", "commerce:admin")
    async with httpx.AsyncClient(base_url=base, headers=admin, timeout=30) as client:
        product = await client.post(
            "/v1/products",
            headers={"Idempotency-Key": uuid.uuid4().hex},
            json={"title": "Chaos kettle", "skus": [{"price_minor": 1000, "currency": "EUR",
                  "stock": units}]},
        )  # fmt: skip
        assert product.status_code == 201, product.text
        now = datetime.now(UTC)
        sale = await client.post(
            "/v1/flash-sales",
            headers={"Idempotency-Key": uuid.uuid4().hex},
            json={
                "sku_id": product.json()["skus"][0]["id"],
                "sale_price_minor": 100,
                "quantity": units,
                "per_user_limit": 1,
                "starts_at": (now - timedelta(seconds=1)).isoformat(),
                "ends_at": (now + timedelta(hours=1)).isoformat(),
            },
        )
        assert sale.status_code == 201, sale.text
        return str(sale.json()["id"])


class _Shopper:
    """What every buyer does: reserve with its key until answered for good (retrying on 503
    and on a dropped connection, as a client SDK would), then sometimes pay."""

    def __init__(self, report: CommerceReport, urls: list[str], sale: str) -> None:
        self.report = report
        self.urls = urls
        self.sale = sale
        self.answers: list[tuple[float, float, bool]] = []
        self.orders_by_key: dict[str, set[str]] = {}
        self.paid: set[str] = set()
        # httpx's pool slows down badly past a few hundred waiting requests.
        self.in_flight = asyncio.Semaphore(100)

    async def _send(
        self, client: httpx.AsyncClient, method: str, path: str, attempt: int, **kwargs: Any
    ) -> httpx.Response | None:
        url = self.urls[attempt % len(self.urls)] + path
        sent = time.monotonic()
        try:
            async with self.in_flight:
                sent = time.monotonic()
                answer = await client.request(method, url, **kwargs)
        except httpx.TransportError:
            return None
        ok = answer.status_code < 500
        if path.endswith("/reservations"):
            self.answers.append((sent, time.monotonic() - sent, ok))
        if answer.status_code == 503:
            self.report.answers_503 += 1
        elif answer.status_code >= 500:
            self.report.answers_5xx_non_503 += 1
            self.report.unexpected[f"{answer.status_code} {answer.text[:120]}"] += 1
        return answer

    async def buy(self, client: httpx.AsyncClient, i: int, pay: bool) -> None:
        user, key = f"buyer-{i}", f"chaos-{self.sale}-{i}"
        headers = {**_auth(user, "commerce:buy"), "Idempotency-Key": key}
        path = f"/v1/flash-sales/{self.sale}/reservations"
        for attempt in range(400):
            answer = await self._send(client, "POST", path, i + attempt, headers=headers, json={})
            if answer is None or answer.status_code >= 500:
                await asyncio.sleep(0.2 + random.random() * 0.3)
                continue
            if answer.status_code == 201:
                order = answer.json()["id"]
                self.orders_by_key.setdefault(key, set()).add(order)
                self.report.reserved += 1
                if pay:
                    await self._pay(client, user, order, i)
                return
            if answer.status_code == 409 and answer.json().get("error") == "sold_out":
                self.report.sold_out += 1
                return
            self.report.unexpected[f"{answer.status_code} {answer.text[:120]}"] += 1
            return
        self.report.unexpected["never answered"] += 1

    async def _pay(self, client: httpx.AsyncClient, user: str, order: str, i: int) -> None:
        headers = _auth(user, "commerce:buy")
        for attempt in range(400):
            made = await self._send(
                client,
                "POST",
                f"/v1/orders/{order}/payments",
                i + attempt,
                headers={**headers, "Idempotency-Key": f"pay-{order}"},
            )
            if made is not None and made.status_code == 409:
                break  # already paid
            if made is None or made.status_code != 201:
                await asyncio.sleep(0.2 + random.random() * 0.3)
                continue
            reference = made.json()["reference"]
            done = await self._send(
                client,
                "POST",
                f"/v1/simulated-provider/payments/{reference}/complete",
                i + attempt,
                headers=headers,
            )
            if done is not None and done.status_code < 300:
                state = await self._send(
                    client, "GET", f"/v1/orders/{order}", i + attempt, headers=headers
                )
                if state is not None and state.status_code == 200:
                    if state.json()["state"] == "paid":
                        break
            await asyncio.sleep(0.2 + random.random() * 0.3)
        else:
            self.report.unexpected["payment never completed"] += 1
            return
        self.paid.add(order)


async def commerce_scenario(
    outages: list[Outage],
    *,
    buyers: int = 400,
    units: int = 300,
    replicas: int = 2,
    arrival_s: float = 20.0,
    pay_every: int = 3,
    gap_s: float = 3.0,
) -> CommerceReport:
    """``replicas`` commerce processes selling ``units`` to ``buyers`` arriving evenly over
    ``arrival_s`` (and during the outages), some of them paying; then the invariants.

    A few buyers per outage arrive only once its dependency is back: a restart's length varies
    with the machine's load (a Kafka broker's, 12 s to 40 s here), and recovery is measured on
    requests sent after it."""
    report = CommerceReport(buyers=buyers, units=units)
    late = max(5, buyers // 30)  # per outage
    steady = buyers - late * len(outages)
    assert steady > 0, "more buyers than the outages hold back"
    with infrastructure() as infra:
        env = infra.env()
        processes = [ServiceProcess("livecart_commerce", env).start()]
        processes += [ServiceProcess("livecart_commerce", env).start() for _ in range(replicas - 1)]
        try:
            urls = [p.url for p in processes]
            sale = await _open_sale(urls[0], units)
            shopper = _Shopper(report, urls, sale)
            watch = ReadinessWatch(urls)
            timeline = Timeline()
            watching = asyncio.create_task(watch.run())
            limits = httpx.Limits(max_connections=100)
            async with httpx.AsyncClient(timeout=10, limits=limits) as client:

                async def arrive(i: int, after_s: float) -> None:
                    await asyncio.sleep(after_s)
                    await shopper.buy(client, i, pay=i % pay_every == 0)

                backs = 0

                async def drained(back: float) -> None:
                    nonlocal backs
                    first, backs = steady + backs * late, backs + 1
                    arrivals = (arrive(first + j, j / late) for j in range(late))
                    drained_at, *_ = await asyncio.gather(
                        _backlog_drained(infra.postgres.url), *arrivals
                    )
                    report.outbox_drained_s = max(report.outbox_drained_s, drained_at - back)

                chaos = asyncio.create_task(
                    run_outages(infra, outages, timeline, gap_s, on_back=drained)
                )
                await asyncio.gather(*(arrive(i, arrival_s * i / steady) for i in range(steady)))
                await chaos
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            report.unready_s = watch.unready_s
            report.degraded_seen = watch.degraded_seen
            report.recovery_s = recovery_s(shopper.answers, timeline)
            await _check_commerce(report, shopper, infra, sale)
        finally:
            for process in processes:
                process.stop()
    return report


async def _backlog_drained(url: str, timeout_s: float = 90.0) -> float:
    """When (monotonic) every event in the outbox now has been published (later ones, of the
    load going on, are not waited for)."""
    deadline = time.monotonic() + timeout_s
    through: int | None = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await asyncpg.connect(url, timeout=2)
            try:
                if through is None:
                    through = await conn.fetchval(
                        "select coalesce(max(id), 0) from commerce.outbox"
                    )
                left = await conn.fetchval(
                    "select count(*) from commerce.outbox where published_at is null and id <= $1",
                    through,
                )
            finally:
                await conn.close()
            if left == 0:
                return time.monotonic()
        await asyncio.sleep(0.05)
    return float("inf")


async def _check_commerce(
    report: CommerceReport, shopper: _Shopper, infra: Infra, sale: str
) -> None:
    conn = await asyncpg.connect(infra.postgres.url)
    try:
        rows = await conn.fetch(
            "select id::text, user_id, state, idempotency_key as key from commerce.orders"
            " where flash_sale_id = $1",
            uuid.UUID(sale),
        )
        quantity, remaining = await conn.fetchrow(
            "select quantity, remaining from commerce.flash_sales where id = $1", uuid.UUID(sale)
        )
    finally:
        await conn.close()
    stored = {r["id"] for r in rows}
    answered = {order for orders in shopper.orders_by_key.values() for order in orders}
    report.orders_lost = len(answered - stored)
    report.orders_duplicated = sum(len(o) - 1 for o in shopper.orders_by_key.values())
    report.orders_duplicated += sum(n - 1 for n in Counter(r["key"] for r in rows).values())
    holding = [r for r in rows if r["state"] in ("reserved", "paid")]
    report.oversold = max(0, len(holding) - quantity) + (1 if remaining < 0 else 0)
    report.over_limit = sum(1 for n in Counter(r["user_id"] for r in holding).values() if n > 1)
    report.paid = sum(1 for r in rows if r["state"] == "paid")
    records = await read_topic(infra.kafka.bootstrap, COMMERCE_TOPIC)
    ids = Counter(headers.get("event-id", b"") for headers, _ in records)
    report.events_duplicated = sum(n - 1 for n in ids.values())
    reserved_events: set[str] = set()
    paid_events: set[str] = set()
    for _, value in records:
        event = CommerceEvent.FromString(value)
        if event.WhichOneof("change") == "order_reserved":
            reserved_events.add(event.order_reserved.order_id)
        elif event.WhichOneof("change") == "order_paid":
            paid_events.add(event.order_paid.order_id)
    paid_orders = {r["id"] for r in rows if r["state"] == "paid"}
    report.events_missing = len(stored - reserved_events) + len(paid_orders - paid_events)


# -- chat -----------------------------------------------------------------------------------


@dataclass
class ChatReport:
    viewers: int
    senders: int
    acked: int = 0
    comments_lost: int = 0  # acked, but missing in history or in some viewer's stream
    comments_duplicated: int = 0  # shown twice to some viewer, or stored twice
    viewers_disconnected: int = 0
    answers_late: int = 0  # answered after the bound (plus slack), or never
    unavailable_answers: int = 0
    answer_max_s: float = 0.0
    unready_s: float = 0.0
    recovery_s: float = 0.0

    def figures(self, scenario: str = "chat") -> list[str]:
        return [
            f"{scenario}_comments_lost={self.comments_lost} comments",
            f"{scenario}_comments_duplicated={self.comments_duplicated} comments",
            f"{scenario}_viewers_disconnected={self.viewers_disconnected} viewers",
            f"{scenario}_answers_late={self.answers_late} answers",
            f"{scenario}_answer_max_s={self.answer_max_s:.2f} s",
            f"{scenario}_unavailable_answers={self.unavailable_answers} answers",
            f"{scenario}_unready_s={self.unready_s:.1f} s",
            f"{scenario}_recovery_s={self.recovery_s:.2f} s",
            f"{scenario}_acked={self.acked} comments",
        ]


class _Socket:
    """A viewer's (or sender's) WebSocket, keeping every comment text it is shown."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.shown: Counter[str] = Counter()
        self.answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.closed = False
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.conn:
                frame = json.loads(message)
                if frame["type"] == "batch":
                    self.shown.update(
                        e["text"] for e in frame["events"] if e.get("kind") == "comment"
                    )
                elif frame["type"] in ("ack", "error"):
                    waiting = self.answers.pop(frame.get("ref") or "", None)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(frame)
        except ConnectionClosed:
            pass
        self.closed = True

    async def ask(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        ref = uuid.uuid4().hex[:16]
        answered = asyncio.get_running_loop().create_future()
        self.answers[ref] = answered
        await self.conn.send(json.dumps({**message, "ref": ref}))
        try:
            return await asyncio.wait_for(answered, timeout_s)
        except TimeoutError:
            self.answers.pop(ref, None)
            return None


@contextlib.asynccontextmanager
async def _socket(port: int, room: str, user: str) -> AsyncIterator[_Socket]:
    tok = TOKENS.issue(TENANT, user, ["play", "chat"])
    conn = await connect(f"ws://127.0.0.1:{port}/ws/rooms/{room}?token={tok}", max_size=None)
    socket = _Socket(conn)
    try:
        yield socket
    finally:
        await conn.close()
        await socket.reader


async def chat_scenario(
    outages: list[Outage],
    *,
    viewers: int = 50,
    senders: int = 10,
    send_every_s: float = 0.5,
    bound_s: float = 1.0,
    gap_s: float = 3.0,
) -> ChatReport:
    """Two chat nodes, ``viewers`` watching one room across them and ``senders`` commenting
    every ``send_every_s`` with client ids, resending on ``unavailable`` or silence."""
    report = ChatReport(viewers=viewers, senders=senders)
    slack_s = 1.0
    with infrastructure() as infra:
        env = infra.env(
            LIVECART_PUBLISH_TIMEOUT_S=str(bound_s),
            LIVECART_COMMENT_BURST="1000",
            LIVECART_COMMENT_RATE_PER_S="1000",
            LIVECART_COMMENTS_PER_BATCH="1000",
        )
        first = ServiceProcess("livecart_chat", env).start()
        nodes = [first, ServiceProcess("livecart_chat", env).start()]
        room = f"chaos-{uuid.uuid4().hex[:8]}"
        acked: set[str] = set()
        answers: list[tuple[float, float, bool]] = []
        try:
            async with contextlib.AsyncExitStack() as stack:
                watching = [
                    await stack.enter_async_context(
                        _socket(nodes[i % 2].ws_port, room, f"viewer-{i}")
                    )
                    for i in range(viewers)
                ]
                talking = [
                    await stack.enter_async_context(
                        _socket(nodes[i % 2].ws_port, room, f"sender-{i}")
                    )
                    for i in range(senders)
                ]
                watch = ReadinessWatch([n.url for n in nodes])
                readiness = asyncio.create_task(watch.run())
                timeline = Timeline()
                chaos = asyncio.create_task(run_outages(infra, outages, timeline, gap_s))

                async def speak(index: int, sender: _Socket) -> None:
                    count = 0
                    while not chaos.done():
                        text = f"s{index}-{count}"
                        while True:  # until acked: the same client id every time
                            sent = time.monotonic()
                            reply = await sender.ask(
                                {"type": "comment", "text": text, "client_id": text},
                                bound_s + 10,
                            )
                            took = time.monotonic() - sent
                            report.answer_max_s = max(report.answer_max_s, took)
                            if reply is None or took > bound_s + slack_s:
                                report.answers_late += 1
                            ok = reply is not None and reply["type"] == "ack"
                            answers.append((sent, took, ok))
                            if ok:
                                acked.add(text)
                                break
                            if reply is not None and reply.get("code") == "unavailable":
                                report.unavailable_answers += 1
                            await asyncio.sleep(0.3)
                        count += 1
                        await asyncio.sleep(send_every_s)

                await asyncio.gather(*(speak(i, s) for i, s in enumerate(talking)))
                await chaos
                report.acked = len(acked)
                everyone = [*watching, *talking]
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not all(
                    acked <= set(v.shown) for v in everyone
                ):
                    await asyncio.sleep(0.2)
                report.viewers_disconnected = sum(1 for v in everyone if v.closed)
                report.comments_lost = max(len(acked - set(v.shown)) for v in everyone)
                report.comments_duplicated = max(
                    sum(n - 1 for n in v.shown.values()) for v in everyone
                )
                readiness.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await readiness
                report.unready_s = watch.unready_s
                report.recovery_s = recovery_s(answers, timeline)
            stored = await _stored_comments(infra.postgres.url, room, acked)
            report.comments_lost = max(report.comments_lost, len(acked - set(stored)))
            report.comments_duplicated = max(
                report.comments_duplicated, sum(n - 1 for n in stored.values())
            )
        finally:
            for node in nodes:
                node.stop()
    return report


async def _stored_comments(url: str, room: str, acked: set[str]) -> Counter[str]:
    """What ``chat-history`` stored of the room, once it has caught up with the acked."""
    deadline = time.monotonic() + 30
    stored: Counter[str] = Counter()
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await asyncpg.connect(url)
            try:
                rows = await conn.fetch(
                    "select shown->>'text' as text from chat.events"
                    " where tenant_id = $1 and room_id = $2 and kind = 'comment'",
                    TENANT,
                    room,
                )
            finally:
                await conn.close()
            stored = Counter(r["text"] for r in rows)
            if acked <= set(stored):
                break
        await asyncio.sleep(0.2)
    return stored
