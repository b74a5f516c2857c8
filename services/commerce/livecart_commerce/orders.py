"""Reading orders (tenant-scoped; a buyer sees their own, an admin any of the tenant's)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from livecart_core.errors import NotFound


class Order(BaseModel):
    id: uuid.UUID
    state: str
    sku_id: uuid.UUID
    flash_sale_id: uuid.UUID | None
    quantity: int
    unit_price_minor: int
    currency: str
    expires_at: datetime


async def get_order(
    pool: asyncpg.Pool, tenant: str, order_id: uuid.UUID, user: str, *, any_user: bool = False
) -> Order:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "select id, state, sku_id, flash_sale_id, quantity, unit_price_minor, currency,"
            " expires_at from orders where id = $1 and tenant_id = $2 and (user_id = $3 or $4)",
            order_id,
            tenant,
            user,
            any_user,
        )
    if row is None:
        raise NotFound(f"order {order_id} not found")
    return Order(**dict(row))
