"""Red packets (红包): a host drops an amount split into shares; viewers grab one share each.

The amounts are split when the packet is created, one ``red_packet_shares`` row per share, so a
grab is one row claim in Postgres: the lowest unclaimed share, taken ``FOR UPDATE SKIP LOCKED``
(concurrent grabs, from any number of commerce processes, take different rows instead of queuing
on one). The unique ``(red_packet_id, user_id)`` makes a second share for the same user
impossible, so grabbing is idempotent per user: a repeat answers with the user's first share.
Each create and grab writes its event to the outbox in the same transaction.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import uuid
from datetime import datetime, timedelta

import asyncpg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator

from livecart.events.v1.commerce_pb2 import RedPacketCreated, RedPacketGrabbed
from livecart_commerce.api import ADMIN, BUY
from livecart_commerce.catalog import Currency
from livecart_commerce.errors import refusals
from livecart_commerce.events import append, event
from livecart_commerce.idempotency import IdempotencyKey, fingerprint, once
from livecart_core.auth import Principal, TokenAuthority, require
from livecart_core.db import Executor, connection
from livecart_core.errors import FailedPrecondition, NotFound
from livecart_core.rules import MONEY_MAX, RoomId

MAX_SHARES = 10_000
_RNG: random.Random = secrets.SystemRandom()


class RedPacketEmpty(FailedPrecondition):
    code = "red_packet_empty"


class RedPacketExpired(FailedPrecondition):
    code = "red_packet_expired"


class RedPacketIn(BaseModel):
    room_id: RoomId
    total_minor: int = Field(
        gt=0, le=MONEY_MAX, description="in minor units of currency; at least shares"
    )
    currency: Currency
    shares: int = Field(ge=1, le=MAX_SHARES, description="at most total_minor")
    expires_in_s: int = Field(default=86_400, ge=1, le=7 * 86_400)

    @model_validator(mode="after")
    def _a_unit_per_share(self) -> RedPacketIn:
        if self.total_minor < self.shares:
            raise ValueError(
                f"total_minor ({self.total_minor}) must be at least shares ({self.shares}):"
                " every share is at least 1 minor unit"
            )
        return self


class RedPacket(BaseModel):
    id: uuid.UUID
    room_id: str
    total_minor: int
    currency: str
    shares: int
    shares_left: int
    expires_at: datetime


class Grabbed(BaseModel):
    amount_minor: int
    currency: str
    shares_left: int


def split(total_minor: int, shares: int, rng: random.Random = _RNG) -> list[int]:
    """``shares`` random amounts, each at least 1, that add up to exactly ``total_minor``.

    Random cut points: ``shares - 1`` distinct points in ``1 .. total_minor - 1`` cut the total
    into pieces, every split being equally likely.
    """
    if not 1 <= shares <= total_minor:
        raise ValueError(f"cannot split {total_minor} into {shares} shares of at least 1")
    cuts = sorted(rng.sample(range(1, total_minor), shares - 1))
    return [b - a for a, b in itertools.pairwise([0, *cuts, total_minor])]


async def create_red_packet(
    db: Executor, tenant: str, host: str, packet: RedPacketIn, rng: random.Random = _RNG
) -> RedPacket:
    """Store the packet and its pre-split shares, and its ``RedPacketCreated`` event."""
    amounts = split(packet.total_minor, packet.shares, rng)
    async with connection(db) as conn, conn.transaction():
        row = await conn.fetchrow(
            "insert into red_packets (tenant_id, room_id, total_minor, currency, shares,"
            " shares_left, created_by, expires_at) values ($1, $2, $3, $4, $5, $5, $6, now() + $7)"
            " returning id, room_id, total_minor, currency, shares, shares_left, expires_at,"
            " now() as now",
            tenant, packet.room_id, packet.total_minor, packet.currency, packet.shares, host,
            timedelta(seconds=packet.expires_in_s),
        )  # fmt: skip
        await conn.copy_records_to_table(
            "red_packet_shares",
            schema_name="commerce",
            columns=("red_packet_id", "seq", "amount_minor"),
            records=[(row["id"], seq, amount) for seq, amount in enumerate(amounts)],
        )
        created = RedPacketCreated(
            red_packet_id=str(row["id"]),
            room_id=packet.room_id,
            total_minor=packet.total_minor,
            currency=packet.currency,
            shares=packet.shares,
        )
        await append(conn, [event(tenant, row["now"], red_packet_created=created)])
    return RedPacket(**{name: row[name] for name in RedPacket.model_fields})


async def get_red_packet(pool: asyncpg.Pool, tenant: str, red_packet_id: uuid.UUID) -> RedPacket:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "select id, room_id, total_minor, currency, shares, shares_left, expires_at"
            " from red_packets where id = $1 and tenant_id = $2",
            red_packet_id,
            tenant,
        )
    if row is None:
        raise NotFound(f"red packet {red_packet_id} not found")
    return RedPacket(**dict(row))


async def grab(
    pool: asyncpg.Pool,
    tenant: str,
    red_packet_id: uuid.UUID,
    user: str,
    *,
    caller: Principal | None = None,
) -> Grabbed:
    """Claim one share for ``user``, or answer with the share they already hold; with
    ``caller``, only when their token may act in the packet's room."""
    async with pool.acquire() as conn, conn.transaction():
        packet = await conn.fetchrow(
            "select room_id, currency, expires_at <= now() as expired, now() as now"
            " from red_packets where id = $1 and tenant_id = $2",
            red_packet_id,
            tenant,
        )
        if packet is None:
            raise NotFound(f"red packet {red_packet_id} not found")
        if caller is not None:
            caller.require_room(packet["room_id"])
        earlier = await _share_of(conn, red_packet_id, user)
        if earlier is not None:
            return earlier
        if packet["expired"]:
            raise RedPacketExpired(f"red packet {red_packet_id} has expired")
        try:
            async with conn.transaction():  # a savepoint: the conflict below must not end ours
                amount = await _claim(conn, red_packet_id, user)
        except asyncpg.UniqueViolationError:
            amount = None  # this user's concurrent grab committed first
            earlier = await _share_of(conn, red_packet_id, user)
            if earlier is not None:
                return earlier
        if amount is None:
            raise RedPacketEmpty(f"red packet {red_packet_id} has no shares left")
        shares_left: int = await conn.fetchval(
            "update red_packets set shares_left = shares_left - 1 where id = $1"
            " returning shares_left",
            red_packet_id,
        )
        grabbed = RedPacketGrabbed(
            red_packet_id=str(red_packet_id),
            room_id=packet["room_id"],
            user_id=user,
            amount_minor=amount,
            currency=packet["currency"],
            shares_left=shares_left,
        )
        await append(conn, [event(tenant, packet["now"], red_packet_grabbed=grabbed)])
    return Grabbed(amount_minor=amount, currency=packet["currency"], shares_left=shares_left)


_CLAIM = (
    "update red_packet_shares set user_id = $2, grabbed_at = now()"
    " where (red_packet_id, seq) = (select red_packet_id, seq from red_packet_shares"
    "  where red_packet_id = $1 and user_id is null order by seq limit 1 for update skip locked)"
    " returning amount_minor"
)
_RECHECK_S = 0.005


async def _claim(conn: asyncpg.Connection, red_packet_id: uuid.UUID, user: str) -> int | None:
    """The amount of the share claimed for ``user``; None when every share is taken."""
    while True:
        amount: int | None = await conn.fetchval(_CLAIM, red_packet_id, user)
        if amount is not None:
            return amount
        unclaimed = await conn.fetchval(
            "select exists (select from red_packet_shares"
            " where red_packet_id = $1 and user_id is null)",
            red_packet_id,
        )
        if not unclaimed:
            return None
        # Every unclaimed share is locked by a grab still in flight, which may yet roll back (a
        # user's duplicate grab does): look again shortly rather than answer "empty" too early.
        # Polling, not a blocking FOR UPDATE: waiting on those row locks can close a deadlock
        # cycle with the duplicate grab's wait on the unique (red_packet_id, user_id).
        await asyncio.sleep(_RECHECK_S)


async def _share_of(
    conn: asyncpg.Connection, red_packet_id: uuid.UUID, user: str
) -> Grabbed | None:
    row = await conn.fetchrow(
        "select s.amount_minor, p.currency, p.shares_left from red_packet_shares s"
        " join red_packets p on p.id = s.red_packet_id"
        " where s.red_packet_id = $1 and s.user_id = $2",
        red_packet_id,
        user,
    )
    return None if row is None else Grabbed(**dict(row))


def red_packet_routes(pool: asyncpg.Pool, tokens: TokenAuthority) -> APIRouter:
    """``/v1/red-packets``: hosts (``commerce:admin``) drop them, viewers (``commerce:buy``)
    grab them."""
    router = APIRouter(prefix="/v1", tags=["red packets"])
    # Plain defaults, not local Annotated aliases (see api.py).
    admin = Depends(require(tokens, ADMIN))
    buyer = Depends(require(tokens, BUY))

    @router.post(
        "/red-packets",
        status_code=201,
        summary="Drop a red packet: an amount split at random into shares",
        responses=refusals(
            _422="invalid body (e.g. total_minor below shares), or idempotency_key_reused"
        ),
    )
    async def create(
        body: RedPacketIn, key: IdempotencyKey, caller: Principal = admin
    ) -> RedPacket:
        caller.require_room(body.room_id)
        return await once(
            pool, caller, key, fingerprint("red-packets", body), RedPacket,
            lambda conn: create_red_packet(conn, caller.tenant_id, caller.subject, body),
        )  # fmt: skip

    @router.get(
        "/red-packets/{red_packet_id}",
        summary="A red packet and the shares left",
        responses=refusals(_404="no such red packet for this tenant", _422="invalid red packet id"),
    )
    async def get(red_packet_id: uuid.UUID, caller: Principal = buyer) -> RedPacket:
        packet = await get_red_packet(pool, caller.tenant_id, red_packet_id)
        caller.require_room(packet.room_id)
        return packet

    @router.post(
        "/red-packets/{red_packet_id}/grab",
        summary="Grab one share; grabbing again answers with the same share",
        responses=refusals(
            _404="no such red packet for this tenant",
            _409="red_packet_empty or red_packet_expired",
            _422="invalid red packet id",
        ),
    )
    async def grab_share(red_packet_id: uuid.UUID, caller: Principal = buyer) -> Grabbed:
        return await grab(pool, caller.tenant_id, red_packet_id, caller.subject, caller=caller)

    return router
