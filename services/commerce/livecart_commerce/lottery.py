"""Chat-keyword lotteries (弹幕抽奖): viewers enter by sending a keyword in the room's chat.

A host opens a lottery on a room with a keyword, a window and a prize SKU; ``winners`` units of
the SKU leave its stock at once. Each chat comment (topic ``chat.messages``) is one SQL
statement that enters its sender into every open lottery of the room whose window holds the
comment's ``sent_at`` and whose keyword the text contains; the primary key (lottery, user) makes
a second entry, or a redelivered comment, a no-op.

The draw is commit-reveal: the 32-byte seed is fixed when the lottery is created and only its
SHA-256 is published then; the result reveals the seed and the entrant list's hash, and anyone
can redo it with :func:`draw`. Winners get a paid order for one prize unit at price 0; units
nobody won go back to stock. A lottery is drawn once, under its row lock, by the host or by the
background drawer shortly after it closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import logging
import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, NamedTuple

import asyncpg
from fastapi import APIRouter, Depends, Query
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field, StringConstraints, model_validator

from livecart.events.v1.chat_pb2 import ChatEvent
from livecart.events.v1.commerce_pb2 import LotteryDrawn, LotteryOpened
from livecart_commerce.api import ADMIN, BUY
from livecart_commerce.errors import NotEnoughStock, refusals
from livecart_commerce.events import append, event
from livecart_commerce.idempotency import IdempotencyKey, fingerprint, once
from livecart_core.auth import Principal, TokenAuthority, require
from livecart_core.bus import Event, Handler, PoisonEvent
from livecart_core.db import Executor, connection
from livecart_core.errors import FailedPrecondition, InvalidArgument, NotFound
from livecart_core.rules import Instant, RoomId

log = logging.getLogger("livecart.commerce.lottery")

CHAT_TOPIC = "chat.messages"
ALGORITHM = "sha256-rank-v1"
MAX_WINNERS = 10_000


class LotteryOpen(FailedPrecondition):
    code = "lottery_open"


class LotteryIn(BaseModel):
    room_id: RoomId
    keyword: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)
    ] = Field(description="a comment that contains it, in any case, enters")
    prize_sku_id: uuid.UUID
    winners: int = Field(ge=1, le=MAX_WINNERS, description="each wins one unit of the prize SKU")
    opens_at: Instant | None = Field(default=None, description="now if unset or earlier")
    closes_at: Instant = Field(description="in the future, and after opens_at")

    @model_validator(mode="after")
    def _closes_after_opening(self) -> LotteryIn:
        if self.opens_at is not None and self.closes_at <= self.opens_at:
            raise ValueError("closes_at must be after opens_at")
        if self.closes_at <= datetime.now(UTC):
            raise ValueError("closes_at must be in the future")
        return self


class DrawResult(BaseModel):
    """What an auditor needs to redo the draw with :func:`draw`."""

    algorithm: str
    seed: str = Field(description="hex; its SHA-256 is the lottery's seed_sha256")
    entrants_sha256: str = Field(description="hex SHA-256 of the sorted entrant ids, \\n-joined")
    winner_user_ids: list[str] = Field(description="in rank order")
    prize_order_ids: list[uuid.UUID] = Field(description="the winners' orders, in the same order")
    drawn_at: datetime


class Lottery(BaseModel):
    id: uuid.UUID
    room_id: str
    keyword: str
    prize_sku_id: uuid.UUID
    winners: int
    opens_at: datetime
    closes_at: datetime
    seed_sha256: str = Field(description="hex SHA-256 of the seed, fixed before anyone enters")
    state: Literal["open", "drawn"]
    entrants: int
    result: DrawResult | None = Field(default=None, description="set once drawn")


class Entrants(BaseModel):
    user_ids: list[str] = Field(description="sorted by code point, as the draw sorts them")
    next_after: str | None = Field(description="pass as `after` for the next page")


class Drawn(NamedTuple):
    entrants_sha256: str
    winners: list[str]


def draw(seed: bytes, entrants: Iterable[str], winners: int) -> Drawn:
    """The draw "sha256-rank-v1": the hex SHA-256 of the entrants' user ids, sorted and joined
    by newlines, and the ``winners`` entrants whose SHA-256(seed || that hex || user id) is
    lowest, in rank order."""
    ordered = sorted(set(entrants))
    entrants_sha256 = hashlib.sha256("\n".join(ordered).encode()).hexdigest()
    prefix = hashlib.sha256(seed + entrants_sha256.encode())

    def rank(user: str) -> bytes:
        h = prefix.copy()
        h.update(user.encode())
        return h.digest()

    return Drawn(entrants_sha256, heapq.nsmallest(winners, ordered, key=rank))


async def create_lottery(db: Executor, tenant: str, host: str, lottery: LotteryIn) -> Lottery:
    """Open the lottery: take the prize units from stock, fix the seed, announce its hash."""
    seed = secrets.token_bytes(32)
    seed_sha256 = hashlib.sha256(seed).hexdigest()
    async with connection(db) as conn, conn.transaction():
        await _take_prize_units(conn, tenant, lottery.prize_sku_id, lottery.winners)
        try:
            row = await conn.fetchrow(
                "insert into lotteries (tenant_id, room_id, keyword, keyword_folded, prize_sku_id,"
                " winners, opens_at, closes_at, seed, seed_sha256, created_by)"
                " values ($1, $2, $3, $4, $5, $6, greatest($7::timestamptz, now()), $8, $9, $10,"
                " $11) returning id, opens_at, closes_at, now() as now",
                tenant, lottery.room_id, lottery.keyword, lottery.keyword.casefold(),
                lottery.prize_sku_id, lottery.winners, lottery.opens_at, lottery.closes_at, seed,
                seed_sha256, host,
            )  # fmt: skip
        except asyncpg.CheckViolationError:  # closes_at passed since the body was validated
            raise InvalidArgument("closes_at must be after opens_at and now") from None
        opened = LotteryOpened(
            lottery_id=str(row["id"]),
            room_id=lottery.room_id,
            keyword=lottery.keyword,
            prize_sku_id=str(lottery.prize_sku_id),
            winners=lottery.winners,
            opens_at=_timestamp(row["opens_at"]),
            closes_at=_timestamp(row["closes_at"]),
            seed_sha256=seed_sha256,
        )
        await append(conn, [event(tenant, row["now"], lottery_opened=opened)])
        return await get_lottery(conn, tenant, row["id"])


async def _take_prize_units(
    conn: asyncpg.Connection, tenant: str, sku_id: uuid.UUID, units: int
) -> None:
    taken = await conn.fetchval(
        "update skus set stock = stock - $3 where id = $1 and tenant_id = $2 and stock >= $3"
        " returning true",
        sku_id,
        tenant,
        units,
    )
    if taken:
        return
    stock = await conn.fetchval(
        "select stock from skus where id = $1 and tenant_id = $2", sku_id, tenant
    )
    if stock is None:
        raise NotFound(f"sku {sku_id} not found")
    raise NotEnoughStock(f"sku {sku_id} has {stock} units, the lottery needs {units}")


_SELECT = (
    "select l.id, l.room_id, l.keyword, l.prize_sku_id, l.winners, l.opens_at, l.closes_at,"
    " l.seed_sha256, l.state, l.seed, l.drawn_at, l.entrants_sha256, l.winner_user_ids,"
    " l.prize_order_ids, l.algorithm,"
    " coalesce(l.entrants, (select count(*) from lottery_entries e where e.lottery_id = l.id))"
    " as entrants"
    " from lotteries l"
)


async def get_lottery(db: Executor, tenant: str, lottery_id: uuid.UUID) -> Lottery:
    async with connection(db) as conn:
        row = await conn.fetchrow(
            f"{_SELECT} where l.id = $1 and l.tenant_id = $2", lottery_id, tenant
        )
    if row is None:
        raise NotFound(f"lottery {lottery_id} not found")
    result = None
    if row["state"] == "drawn":
        result = DrawResult(
            algorithm=row["algorithm"],
            seed=bytes(row["seed"]).hex(),
            entrants_sha256=row["entrants_sha256"],
            winner_user_ids=row["winner_user_ids"],
            prize_order_ids=row["prize_order_ids"],
            drawn_at=row["drawn_at"],
        )
    return Lottery(result=result, **{k: row[k] for k in Lottery.model_fields if k != "result"})


async def list_entrants(
    pool: asyncpg.Pool, tenant: str, lottery_id: uuid.UUID, *, after: str | None, limit: int
) -> Entrants:
    """A page of the entrants' user ids, in the order the draw sorts them."""
    async with pool.acquire() as conn:
        if not await conn.fetchval(
            "select true from lotteries where id = $1 and tenant_id = $2", lottery_id, tenant
        ):
            raise NotFound(f"lottery {lottery_id} not found")
        users = [
            r["user_id"]
            for r in await conn.fetch(
                "select user_id from lottery_entries where lottery_id = $1"
                " and ($2::text is null or user_id > $2) order by user_id limit $3",
                lottery_id,
                after,
                limit,
            )
        ]
    return Entrants(user_ids=users, next_after=users[-1] if len(users) == limit else None)


_ENTER = (
    "insert into lottery_entries (lottery_id, user_id, entered_at)"
    " select id, $3, $4 from lotteries"
    " where tenant_id = $1 and room_id = $2 and state = 'open'"
    " and opens_at <= $4 and $4 < closes_at and strpos($5, keyword_folded) > 0"
    # Waits for a draw holding the lottery's row lock, then finds it drawn: no entry can land
    # after the draw has read the entrants.
    " for key share"
    " on conflict do nothing"
)


async def enter(db: Executor, chat: ChatEvent) -> int:
    """Enter the comment's sender into every open lottery of the room that the comment matches;
    returns the number of new entries."""
    async with connection(db) as conn:
        status: str = await conn.execute(
            _ENTER,
            chat.tenant_id,
            chat.room_id,
            chat.comment.user_id,
            chat.sent_at.ToDatetime(tzinfo=UTC),
            chat.comment.text.casefold(),
        )
    return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <rows>"


def chat_entries(pool: asyncpg.Pool) -> Handler:
    """The ``chat.messages`` handler. A comment that cannot be read or stored is refused with
    ``PoisonEvent``, which dead-letters it (retrying would hold up every later comment of its
    partition); a database that is away is retried by the bus until it is back."""

    async def handle(message: Event) -> None:
        try:
            chat = message.decode(ChatEvent)
        except DecodeError:
            raise PoisonEvent("not a ChatEvent") from None
        if chat.WhichOneof("body") != "comment":
            return
        if not (chat.tenant_id and chat.room_id and chat.comment.user_id):
            raise PoisonEvent("chat comment has no tenant, room or user")
        if not chat.HasField("sent_at"):
            raise PoisonEvent("chat comment has no sent_at")
        try:
            await enter(pool, chat)
        except (asyncpg.DataError, ValueError, OverflowError) as exc:
            # A NUL in the text (Postgres text cannot hold one) or a sent_at out of range.
            raise PoisonEvent(f"chat comment cannot be stored: {exc!r}") from exc

    return handle


async def draw_lottery(pool: asyncpg.Pool, tenant: str, lottery_id: uuid.UUID) -> Lottery:
    """Draw a closed lottery now, or answer with its result when it was drawn already."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"{_LOCK} where l.id = $1 and l.tenant_id = $2 for update of l", lottery_id, tenant
        )
        if row is None:
            raise NotFound(f"lottery {lottery_id} not found")
        if row["state"] == "open":
            if row["now"] < row["closes_at"]:
                raise LotteryOpen(
                    f"lottery {lottery_id} takes entries until {row['closes_at'].isoformat()}"
                )
            await _draw(conn, row)
        return await get_lottery(conn, tenant, lottery_id)


_LOCK = (
    "select l.id, l.tenant_id, l.room_id, l.prize_sku_id, l.winners, l.closes_at, l.seed,"
    " l.state, s.currency, now() as now"
    " from lotteries l join skus s on s.id = l.prize_sku_id"
)
_PRIZE_ORDERS = (
    "insert into orders (tenant_id, id, user_id, origin, sku_id, quantity, unit_price_minor,"
    " total_minor, currency, state, idempotency_key, request_hash, expires_at)"
    " select $1, o, u, 'lottery', $2, 1, 0, 0, $3, 'paid', k, 'lottery', now()"
    " from unnest($4::uuid[], $5::text[], $6::text[]) as t(o, u, k)"
    " on conflict (tenant_id, user_id, idempotency_key) do nothing returning id"
)


async def _draw(conn: asyncpg.Connection, lottery: asyncpg.Record) -> None:
    """Draw ``lottery``, locked by the caller's transaction: prize orders, unused units back to
    stock, the result, and its ``LotteryDrawn`` event."""
    lottery_id, tenant, sku = lottery["id"], lottery["tenant_id"], lottery["prize_sku_id"]
    entrants = [
        r["user_id"]
        for r in await conn.fetch(
            "select user_id from lottery_entries where lottery_id = $1", lottery_id
        )
    ]
    drawn = await asyncio.to_thread(draw, bytes(lottery["seed"]), entrants, lottery["winners"])
    orders = [uuid.uuid4() for _ in drawn.winners]
    key = f"lottery:{lottery_id}"
    placed = await conn.fetch(
        _PRIZE_ORDERS, tenant, sku, lottery["currency"], orders, drawn.winners,
        [key] * len(orders),
    )  # fmt: skip
    if len(placed) < len(orders):
        # Clients choose their own Idempotency-Keys, so a winner's earlier order may hold this
        # one already: their prize order takes a key of its own instead.
        placed_ids = {r["id"] for r in placed}
        taken = [(o, u) for o, u in zip(orders, drawn.winners, strict=True) if o not in placed_ids]
        await conn.fetch(
            _PRIZE_ORDERS, tenant, sku, lottery["currency"], [o for o, _ in taken],
            [u for _, u in taken], [f"{key}:{o}" for o, _ in taken],
        )  # fmt: skip
    unused = lottery["winners"] - len(drawn.winners)
    if unused:
        await conn.execute("update skus set stock = stock + $2 where id = $1", sku, unused)
    await conn.execute(
        "update lotteries set state = 'drawn', drawn_at = $2, entrants = $3, entrants_sha256 = $4,"
        " winner_user_ids = $5, prize_order_ids = $6, algorithm = $7 where id = $1",
        lottery_id, lottery["now"], len(entrants), drawn.entrants_sha256, drawn.winners, orders,
        ALGORITHM,
    )  # fmt: skip
    result = LotteryDrawn(
        lottery_id=str(lottery_id),
        room_id=lottery["room_id"],
        seed=bytes(lottery["seed"]).hex(),
        entrants_sha256=drawn.entrants_sha256,
        entrants=len(entrants),
        winner_user_ids=drawn.winners,
        prize_order_ids=[str(o) for o in orders],
        algorithm=ALGORITHM,
    )
    await append(conn, [event(tenant, lottery["now"], lottery_drawn=result)])
    log.info(
        "lottery drawn",
        extra={"lottery_id": str(lottery_id), "entrants": len(entrants), "won": len(orders)},
    )


class LotteryDrawer:
    """Draws each lottery ``delay_s`` after it closes, so that comments chat accepted just before
    the close, still on their way through Kafka, enter first. Any number of commerce processes
    run one: each takes a different due lottery (SKIP LOCKED)."""

    def __init__(self, pool: asyncpg.Pool, *, delay_s: float, interval_s: float = 0.5) -> None:
        self.pool = pool
        self.delay = timedelta(seconds=delay_s)
        self.interval_s = interval_s

    async def draw_once(self) -> bool:
        """Draw the lottery due longest; False when none is due."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"{_LOCK} where l.state = 'open' and l.closes_at <= now() - $1::interval"
                " order by l.closes_at limit 1 for update of l skip locked",
                self.delay,
            )
            if row is None:
                return False
            await _draw(conn, row)
            return True

    async def round(self) -> bool:
        """One round for :meth:`Service.repeat_in_background` (every ``interval_s``, at once
        again while lotteries are due; retried with backoff whatever it raises)."""
        return await self.draw_once()


def _timestamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


EntrantsAfter = Annotated[
    str | None, Query(max_length=200, description="`next_after` of the previous page")
]


def lottery_routes(pool: asyncpg.Pool, tokens: TokenAuthority) -> APIRouter:
    """``/v1/lotteries``: hosts (``commerce:admin``) open and draw them, viewers
    (``commerce:buy``) read them and their entrants; entering is by chat."""
    router = APIRouter(prefix="/v1", tags=["lotteries"])
    # Plain defaults, not local Annotated aliases (see api.py).
    admin = Depends(require(tokens, ADMIN))
    buyer = Depends(require(tokens, BUY))

    @router.post(
        "/lotteries",
        status_code=201,
        summary="Open a chat-keyword lottery on a room; the prize units leave stock",
        responses=refusals(
            _400="closes_at passed while the lottery was being opened",
            _404="no such prize SKU for this tenant",
            _409="not_enough_stock for the winners",
            _422="invalid body (e.g. closes_at not after opens_at), or idempotency_key_reused",
        ),
    )
    async def create(body: LotteryIn, key: IdempotencyKey, caller: Principal = admin) -> Lottery:
        caller.require_room(body.room_id)
        return await once(
            pool, caller, key, fingerprint("lotteries", body), Lottery,
            lambda conn: create_lottery(conn, caller.tenant_id, caller.subject, body),
        )  # fmt: skip

    async def in_callers_room(lottery_id: uuid.UUID, caller: Principal) -> Lottery:
        lottery = await get_lottery(pool, caller.tenant_id, lottery_id)
        caller.require_room(lottery.room_id)
        return lottery

    @router.get(
        "/lotteries/{lottery_id}",
        summary="A lottery, its entrant count and, once drawn, the result to audit",
        responses=refusals(_404="no such lottery for this tenant", _422="invalid lottery id"),
    )
    async def get(lottery_id: uuid.UUID, caller: Principal = buyer) -> Lottery:
        return await in_callers_room(lottery_id, caller)

    @router.get(
        "/lotteries/{lottery_id}/entrants",
        summary="The entrants' user ids, in the order the draw hashes them",
        responses=refusals(_404="no such lottery for this tenant", _422="invalid query"),
    )
    async def entrants(
        lottery_id: uuid.UUID,
        after: EntrantsAfter = None,
        limit: int = Query(default=1000, ge=1, le=10_000),
        caller: Principal = buyer,
    ) -> Entrants:
        await in_callers_room(lottery_id, caller)
        return await list_entrants(pool, caller.tenant_id, lottery_id, after=after, limit=limit)

    @router.post(
        "/lotteries/{lottery_id}/draw",
        summary="Draw a closed lottery; drawing again answers with the same result",
        responses=refusals(
            _404="no such lottery for this tenant",
            _409="lottery_open: entries are still being taken",
            _422="invalid lottery id",
        ),
    )
    async def draw_now(lottery_id: uuid.UUID, caller: Principal = admin) -> Lottery:
        await in_callers_room(lottery_id, caller)
        return await draw_lottery(pool, caller.tenant_id, lottery_id)

    return router
