"""Flash-sale inventory: reservations that never oversell, with many commerce processes at once.

Postgres is the source of truth: a sale's ``remaining`` counter lives in its row, and a
reservation changes it only while holding that row's lock. What makes it fast is *group
commit*: concurrent reservations for one sale are collected for a few milliseconds and settled
together in one transaction — one row lock, then one statement for the counter, the buyers,
the orders and their outbox events — instead of one ``SELECT … FOR UPDATE`` transaction per
order. Processes settle their batches one after another on the row lock, so the invariant
``remaining >= 0`` and the per-user limit hold across all of them.

One process keeps up to ``pipeline`` batches of a sale in flight: while one transaction holds
the row lock, the next has its connection and waits on the lock, and the process goes on
collecting the batch after that. They are as safe as batches from two processes: each reads the
buyers' counts only once it holds the lock, so it sees what the one before committed. Earlier
orders (for idempotency keys) are looked up before the lock, and again under it for the buyers
who already bought: a retry that raced its original is answered with the order, never refused.

With ``coalesce=False`` every reservation is its own row-lock transaction: the naive design,
kept because the benchmark measures the two side by side.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Histogram

from livecart.events.v1.commerce_pb2 import OrderLine, OrderReserved
from livecart_commerce.events import TOPIC, event, new_ids

# The most units one reservation asks for (REST and gRPC refuse more).
MAX_UNITS_PER_RESERVATION = 100

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_SIZE = Histogram(
    "livecart_flash_sale_batch_size",
    "Reservations settled together in one flash-sale transaction",
    buckets=(1, 4, 16, 64, 256, 1024, 4096),
)
LOCK_WAIT = Histogram(
    "livecart_flash_sale_lock_wait_seconds",
    "How long a batch waited for its sale's row lock (held by the sale's other batches)",
    buckets=_SECONDS,
)
LOCK_HELD = Histogram(
    "livecart_flash_sale_lock_held_seconds",
    "How long a batch held its sale's row lock, to its commit: the part of a sale that is serial",
    buckets=_SECONDS,
)

# A settled batch's writes: the sale's stock, its buyers' counts, the new orders and their
# events for the outbox (keyed by tenant, as events.append writes them).
_WRITE_BATCH = """
with stock as (update flash_sales set remaining = $4 where id = $1),
buyers as (
    insert into flash_sale_buyers (flash_sale_id, user_id, quantity)
    select $1, u, q from unnest($2::text[], $3::int[]) as b(u, q)
    on conflict (flash_sale_id, user_id) do update set quantity = excluded.quantity
),
new_orders as (
    insert into orders (tenant_id, id, user_id, sku_id, flash_sale_id, quantity,
        unit_price_minor, currency, state, idempotency_key, request_hash, expires_at)
    select $5, o.id, o.u, $6, $1, o.q, $7, $8, 'reserved', o.k, o.h, $9
    from unnest($10::uuid[], $11::text[], $12::int[], $13::text[], $14::text[])
        as o(id, u, q, k, h)
)
insert into outbox (event_id, topic, key, payload)
select e.id, $17, $5, e.p from unnest($15::uuid[], $16::bytea[]) with ordinality
    as e(id, p, n) order by e.n
"""


class Outcome(StrEnum):
    RESERVED = "reserved"
    SOLD_OUT = "sold_out"
    LIMIT_EXCEEDED = "limit_exceeded"
    NOT_ACTIVE = "not_active"
    NOT_FOUND = "not_found"
    KEY_REUSED = "idempotency_key_reused"


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    tenant_id: str
    flash_sale_id: uuid.UUID
    user_id: str
    quantity: int
    idempotency_key: str

    @property
    def request_hash(self) -> str:
        return hashlib.sha256(f"{self.flash_sale_id}:{self.quantity}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ReserveResult:
    outcome: Outcome
    order: ReservedOrder | None = None

    @property
    def order_id(self) -> uuid.UUID | None:
        return self.order.id if self.order else None


@dataclass(frozen=True, slots=True)
class ReservedOrder:
    """The order a reservation made (or found again for a repeated key), as the API shows it."""

    id: uuid.UUID
    state: str
    sku_id: uuid.UUID
    flash_sale_id: uuid.UUID
    quantity: int
    unit_price_minor: int
    currency: str
    created_at: datetime
    expires_at: datetime
    buyer_id: str


_Item = tuple[ReserveRequest, asyncio.Future[ReserveResult]]


@dataclass
class _Pending:
    """One sale's reservations waiting for a batch, and its batches in flight."""

    items: list[_Item] = field(default_factory=list)
    task: asyncio.Task[None] | None = None  # collects the next batch
    settling: set[asyncio.Task[None]] = field(default_factory=set)
    freed: asyncio.Event = field(default_factory=asyncio.Event)  # a batch in flight ended


class FlashSaleEngine:
    """Reserve flash-sale stock; ``reserve()`` answers once the reservation is committed.

    An order's payment window is its sale's ``payment_timeout_s``, else its tenant's, else
    ``payment_timeout_s`` here."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        coalesce: bool = True,
        window_s: float = 0.002,
        max_batch: int = 5000,
        pipeline: int = 2,
        payment_timeout_s: float = 600.0,
        sold_out_recheck_s: float = 0.5,
    ) -> None:
        self.pool = pool
        self.coalesce = coalesce
        self.window_s = window_s
        self.max_batch = max_batch
        self.pipeline = max(1, pipeline)
        self.payment_timeout = timedelta(seconds=payment_timeout_s)
        self.sold_out_recheck_s = sold_out_recheck_s
        self._pending: dict[uuid.UUID, _Pending] = {}
        # Sales seen sold out, with their tenant, until when: their batches skip the row lock
        # and only look up earlier orders for the idempotency keys (stock can come back when
        # orders expire). The tenant is kept so another tenant still hears "not found" first.
        self._sold_out_until: dict[uuid.UUID, tuple[str, float]] = {}

    async def reserve(self, request: ReserveRequest) -> ReserveResult:
        if not self.coalesce:
            self._check(request)
            return (await self._settle(request.flash_sale_id, [request]))[0]
        return await self._enqueue(request)

    async def reserve_many(
        self, requests: list[ReserveRequest]
    ) -> list[ReserveResult | BaseException]:
        """Reserve for each request, all joining the batches at once: a result, or the
        exception that settling its batch raised, per request, in order."""
        for request in requests:  # before any joins a batch
            self._check(request)
        if not self.coalesce:
            return await asyncio.gather(*map(self.reserve, requests), return_exceptions=True)
        return await asyncio.gather(*map(self._enqueue, requests), return_exceptions=True)

    @staticmethod
    def _check(request: ReserveRequest) -> None:
        if request.quantity <= 0:
            raise ValueError("quantity must be positive")

    def _enqueue(self, request: ReserveRequest) -> asyncio.Future[ReserveResult]:
        """The future of ``request``'s result, once its batch is settled."""
        self._check(request)
        future: asyncio.Future[ReserveResult] = asyncio.get_running_loop().create_future()
        pending = self._pending.setdefault(request.flash_sale_id, _Pending())
        pending.items.append((request, future))
        if pending.task is None:
            pending.task = asyncio.create_task(self._drain(request.flash_sale_id, pending))
        return future

    async def _drain(self, sale_id: uuid.UUID, pending: _Pending) -> None:
        """Collect the sale's queue into batches, each settled in its own task, at most
        ``pipeline`` of them in flight."""
        try:
            await asyncio.sleep(self.window_s)
            while pending.items:
                while len(pending.settling) >= self.pipeline:
                    pending.freed.clear()
                    await pending.freed.wait()
                batch, pending.items = (
                    pending.items[: self.max_batch],
                    pending.items[self.max_batch :],
                )
                task = asyncio.create_task(self._answer(sale_id, pending, batch))
                pending.settling.add(task)
        except asyncio.CancelledError:
            self._fail(pending.items, asyncio.CancelledError())
            pending.items = []
            raise
        finally:
            pending.task = None
            self._forget_if_idle(sale_id, pending)

    async def _answer(self, sale_id: uuid.UUID, pending: _Pending, batch: list[_Item]) -> None:
        try:
            results = await self._settle(sale_id, [r for r, _ in batch])
        except BaseException as exc:
            self._fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            current = asyncio.current_task()
            if current is not None:
                pending.settling.discard(current)
            pending.freed.set()
            self._forget_if_idle(sale_id, pending)

    @staticmethod
    def _fail(items: list[_Item], exc: BaseException) -> None:
        for _, future in items:
            if not future.done():
                future.set_exception(exc)

    def _forget_if_idle(self, sale_id: uuid.UUID, pending: _Pending) -> None:
        if not (pending.items or pending.task or pending.settling):
            if self._pending.get(sale_id) is pending:
                del self._pending[sale_id]

    async def _settle(
        self, sale_id: uuid.UUID, requests: list[ReserveRequest]
    ) -> list[ReserveResult]:
        try:
            return await self._settle_batch(sale_id, requests)
        except asyncpg.UniqueViolationError:
            # An idempotency key reused for another sale, racing in another transaction: settle
            # one by one so only the offending request is refused.
            if len(requests) == 1:
                return [ReserveResult(Outcome.KEY_REUSED)]
            return [(await self._settle(sale_id, [r]))[0] for r in requests]

    async def _settle_batch(
        self, sale_id: uuid.UUID, requests: list[ReserveRequest]
    ) -> list[ReserveResult]:
        BATCH_SIZE.observe(len(requests))
        locked: list[float] = []  # when the sale's row lock was granted, if it was
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    return await self._settle_in(conn, sale_id, requests, locked)
            finally:
                if locked:  # to the commit (or rollback) that let it go
                    LOCK_HELD.observe(time.perf_counter() - locked[0])

    async def _settle_in(
        self,
        conn: asyncpg.Connection,
        sale_id: uuid.UUID,
        requests: list[ReserveRequest],
        locked: list[float],
    ) -> list[ReserveResult]:
        """Settle a batch in ``conn``'s transaction; appends to ``locked`` when it holds the
        sale's row lock."""
        owner, until = self._sold_out_until.get(sale_id, ("", 0.0))
        if until > time.monotonic():
            earlier = await self._earlier_orders(conn, requests)
            return [
                ReserveResult(Outcome.NOT_FOUND)
                if r.tenant_id != owner
                else self._replay(r, earlier) or ReserveResult(Outcome.SOLD_OUT)
                for r in requests
            ]
        # Earlier orders are looked up before the sale's row lock, so the lookup overlaps
        # the batch that holds it: the lock is held only for what must be serial.
        earlier = await self._earlier_orders(conn, requests)
        asked = time.perf_counter()
        sale = await conn.fetchrow(
            "select s.tenant_id, s.sku_id, s.remaining, s.per_user_limit, s.sale_price_minor,"
            " s.currency, s.starts_at, s.ends_at, now() as now,"
            " coalesce(s.payment_timeout_s, t.payment_timeout_s) as payment_timeout_s"
            " from flash_sales s left join tenant_settings t on t.tenant_id = s.tenant_id"
            " where s.id = $1 for update of s",
            sale_id,
        )
        locked.append(time.perf_counter())
        LOCK_WAIT.observe(locked[0] - asked)
        if sale is None:
            return [self._replay(r, earlier) or ReserveResult(Outcome.NOT_FOUND) for r in requests]
        active = sale["starts_at"] <= sale["now"] < sale["ends_at"]
        bought: dict[str, int] = {
            row["user_id"]: row["quantity"]
            for row in await conn.fetch(
                "select user_id, quantity from flash_sale_buyers"
                " where flash_sale_id = $1 and user_id = any($2::text[])",
                sale_id,
                list({r.user_id for r in requests}),
            )
        }
        # A buyer who bought may have bought with one of these keys in a batch that
        # committed after the lookup above (a retry racing its original): look again, under
        # the lock, for those alone, so a retry is answered with its order, never refused.
        unsure = [
            r for r in requests if r.user_id in bought and (r.user_id, r.idempotency_key)
            not in earlier
        ]  # fmt: skip
        if unsure:
            earlier.update(await self._earlier_orders(conn, unsure))
        remaining: int = sale["remaining"]
        window = sale["payment_timeout_s"]
        expires_at: datetime = sale["now"] + (
            self.payment_timeout if window is None else timedelta(seconds=window)
        )
        results: list[ReserveResult] = []
        granted: dict[tuple[str, str], ReserveResult] = {}
        new_orders: list[tuple[uuid.UUID, ReserveRequest]] = []
        order_ids = iter(new_ids(len(requests)))
        for r in requests:
            replay = self._replay(r, earlier) or granted.get((r.user_id, r.idempotency_key))
            if r.tenant_id != sale["tenant_id"]:
                results.append(ReserveResult(Outcome.NOT_FOUND))  # another tenant's sale
            elif replay is not None:
                results.append(replay)
            elif not active:
                results.append(ReserveResult(Outcome.NOT_ACTIVE))
            elif bought.get(r.user_id, 0) + r.quantity > sale["per_user_limit"]:
                results.append(ReserveResult(Outcome.LIMIT_EXCEEDED))
            elif r.quantity > remaining:
                results.append(ReserveResult(Outcome.SOLD_OUT))
            else:
                remaining -= r.quantity
                bought[r.user_id] = bought.get(r.user_id, 0) + r.quantity
                order_id = next(order_ids)
                new_orders.append((order_id, r))
                result = ReserveResult(
                    Outcome.RESERVED,
                    ReservedOrder(
                        order_id, "reserved", sale["sku_id"], sale_id, r.quantity,
                        sale["sale_price_minor"], sale["currency"], sale["now"], expires_at,
                        r.user_id,
                    ),
                )  # fmt: skip
                granted[(r.user_id, r.idempotency_key)] = result
                results.append(result)
        if new_orders:
            await self._write(conn, sale_id, sale, remaining, bought, new_orders, expires_at)
        if remaining == 0:
            self._sold_out_until[sale_id] = (
                sale["tenant_id"],
                time.monotonic() + self.sold_out_recheck_s,
            )
        return results

    @staticmethod
    async def _earlier_orders(
        conn: asyncpg.Connection, requests: list[ReserveRequest]
    ) -> dict[tuple[str, str], asyncpg.Record]:
        rows = await conn.fetch(
            "select o.user_id, o.idempotency_key, o.request_hash, o.id, o.expires_at, o.state,"
            " o.created_at,"
            " o.sku_id, o.flash_sale_id, o.quantity, o.unit_price_minor, o.currency"
            " from orders o join unnest($1::text[], $2::text[], $3::text[]) as k(tenant, u, key)"
            " on o.tenant_id = k.tenant and o.user_id = k.u and o.idempotency_key = k.key",
            [r.tenant_id for r in requests],
            [r.user_id for r in requests],
            [r.idempotency_key for r in requests],
        )
        return {(row["user_id"], row["idempotency_key"]): row for row in rows}

    @staticmethod
    def _replay(
        request: ReserveRequest, earlier: dict[tuple[str, str], asyncpg.Record]
    ) -> ReserveResult | None:
        row = earlier.get((request.user_id, request.idempotency_key))
        if row is None:
            return None
        if row["request_hash"] != request.request_hash:
            return ReserveResult(Outcome.KEY_REUSED)
        return ReserveResult(
            Outcome.RESERVED,
            ReservedOrder(
                row["id"], row["state"], row["sku_id"], row["flash_sale_id"], row["quantity"],
                row["unit_price_minor"], row["currency"], row["created_at"], row["expires_at"],
                row["user_id"],
            ),
        )  # fmt: skip

    @staticmethod
    async def _write(
        conn: asyncpg.Connection,
        sale_id: uuid.UUID,
        sale: asyncpg.Record,
        remaining: int,
        bought: dict[str, int],
        orders: list[tuple[uuid.UUID, ReserveRequest]],
        expires_at: datetime,
    ) -> None:
        """The batch's stock, buyers' counts, orders and OrderReserved events, in one statement:
        one round trip while the sale's row is locked (a COPY per table took three)."""
        buyers = {r.user_id for _, r in orders}
        tenant, sku, price, currency = (
            sale["tenant_id"],
            sale["sku_id"],
            sale["sale_price_minor"],
            sale["currency"],
        )
        # What every order of the batch shares is built once, outside the loop.
        expires, now = Timestamp(), Timestamp()
        expires.FromDatetime(expires_at)
        now.FromDatetime(sale["now"])
        sku_text = str(sku)
        sale_text = str(sale_id)
        event_ids = new_ids(len(orders))
        payloads = [
            event(
                tenant,
                now,
                event_id,
                order_reserved=OrderReserved(
                    order_id=str(order_id),
                    user_id=r.user_id,
                    sku_id=sku_text,
                    flash_sale_id=sale_text,
                    quantity=r.quantity,
                    unit_price_minor=price,
                    currency=currency,
                    expires_at=expires,
                    lines=[OrderLine(sku_id=sku_text, quantity=r.quantity, unit_price_minor=price)],
                    total_minor=r.quantity * price,
                ),
            ).SerializeToString()
            for (order_id, r), event_id in zip(orders, event_ids, strict=True)
        ]
        await conn.execute(
            _WRITE_BATCH,
            sale_id,
            list(buyers),
            [bought[u] for u in buyers],
            remaining,
            tenant,
            sku,
            price,
            currency,
            expires_at,
            [order_id for order_id, _ in orders],
            [r.user_id for _, r in orders],
            [r.quantity for _, r in orders],
            [r.idempotency_key for _, r in orders],
            [r.request_hash for _, r in orders],
            event_ids,
            payloads,
            TOPIC,
        )
