"""A live room's lineup (the products the host will present, in order) and the pinned product.

Pinning writes a ``ProductPinned`` event to the outbox in the same transaction; chat turns it
into a product card in the room.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from pydantic import BaseModel, Field

from livecart.events.v1.commerce_pb2 import ProductPinned
from livecart_commerce.events import append, event
from livecart_core.errors import FailedPrecondition, InvalidArgument, NotFound


class NotInLineup(FailedPrecondition):
    code = "not_in_lineup"


class LineupIn(BaseModel):
    product_ids: list[uuid.UUID] = Field(max_length=200)


class Lineup(BaseModel):
    room_id: str
    product_ids: list[uuid.UUID]
    pinned: uuid.UUID | None


async def set_lineup(pool: asyncpg.Pool, tenant: str, room: str, lineup: LineupIn) -> Lineup:
    """Replace the room's lineup; every product must be the tenant's, none twice."""
    if len(set(lineup.product_ids)) != len(lineup.product_ids):
        raise InvalidArgument("a product appears twice in the lineup")
    async with pool.acquire() as conn, conn.transaction():
        known = await conn.fetchval(
            "select count(*) from products where tenant_id = $1 and id = any($2::uuid[])",
            tenant,
            lineup.product_ids,
        )
        if known != len(lineup.product_ids):
            raise NotFound("a product in the lineup does not exist")
        await conn.execute(
            "delete from room_lineup where tenant_id = $1 and room_id = $2", tenant, room
        )
        await conn.executemany(
            "insert into room_lineup (tenant_id, room_id, position, product_id)"
            " values ($1, $2, $3, $4)",
            [(tenant, room, i, p) for i, p in enumerate(lineup.product_ids)],
        )
        await conn.execute(
            "delete from room_pins where tenant_id = $1 and room_id = $2"
            " and product_id <> all($3::uuid[])",
            tenant,
            room,
            lineup.product_ids,
        )
    return await get_lineup(pool, tenant, room)


async def get_lineup(pool: asyncpg.Pool, tenant: str, room: str) -> Lineup:
    async with pool.acquire() as conn:
        products = await conn.fetch(
            "select product_id from room_lineup where tenant_id = $1 and room_id = $2"
            " order by position",
            tenant,
            room,
        )
        pinned = await conn.fetchval(
            "select product_id from room_pins where tenant_id = $1 and room_id = $2", tenant, room
        )
    return Lineup(room_id=room, product_ids=[r["product_id"] for r in products], pinned=pinned)


async def pin(pool: asyncpg.Pool, tenant: str, room: str, product_id: uuid.UUID) -> Lineup:
    """Put a lineup product on screen and announce it (outbox → commerce.events → chat)."""
    async with pool.acquire() as conn, conn.transaction():
        product = await conn.fetchrow(
            "select p.title, min(s.price_minor) as price, min(s.currency) as currency, now() as now"
            " from room_lineup l join products p on p.id = l.product_id"
            " join skus s on s.product_id = p.id"
            " where l.tenant_id = $1 and l.room_id = $2 and l.product_id = $3"
            " group by p.title",
            tenant,
            room,
            product_id,
        )
        if product is None:
            raise NotInLineup(f"product {product_id} is not in room {room}'s lineup")
        await conn.execute(
            "insert into room_pins (tenant_id, room_id, product_id) values ($1, $2, $3)"
            " on conflict (tenant_id, room_id)"
            " do update set product_id = excluded.product_id, pinned_at = now()",
            tenant,
            room,
            product_id,
        )
        pinned = ProductPinned(
            room_id=room,
            product_id=str(product_id),
            title=product["title"],
            price_from_minor=product["price"],
            currency=product["currency"],
        )
        await append(conn, [event(tenant, product["now"], product_pinned=pinned)])
    return await get_lineup(pool, tenant, room)


async def pinned(pool: asyncpg.Pool, tenant: str, room: str) -> tuple[uuid.UUID, datetime] | None:
    """The room's pinned product and when it was pinned, or None."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "select product_id, pinned_at from room_pins where tenant_id = $1 and room_id = $2",
            tenant,
            room,
        )
    return None if row is None else (row["product_id"], row["pinned_at"])
