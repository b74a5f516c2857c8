"""A buyer's cart in a tenant's shop: SKUs and quantities, checked out as one order.

The cart holds no prices: it shows the catalog's current ones, and checkout takes them under
the SKU locks that take the stock (``orders.place``), so the price paid is the catalog's at
that moment, whatever the client saw or sends.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import timedelta

import asyncpg
from pydantic import BaseModel, Field

from livecart_commerce import orders
from livecart_core.errors import FailedPrecondition, NotFound

MAX_ITEMS = orders.MAX_LINES


class CartFull(FailedPrecondition):
    code = "cart_full"


class CartEmpty(FailedPrecondition):
    code = "cart_empty"


class CartItemIn(BaseModel):
    quantity: int = Field(gt=0, le=orders.MAX_UNITS_PER_LINE)


class CartItem(BaseModel):
    sku_id: uuid.UUID
    product_id: uuid.UUID
    title: str
    attributes: dict[str, str]
    quantity: int
    unit_price_minor: int = Field(description="the catalog's price now")
    currency: str
    in_stock: bool = Field(description="whether the SKU has the quantity right now")


class Cart(BaseModel):
    items: list[CartItem]
    totals_minor: dict[str, int] = Field(description="per currency, at the catalog's prices now")


async def get_cart(pool: asyncpg.Pool, tenant: str, user: str) -> Cart:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "select c.sku_id, s.product_id, p.title, s.attributes, c.quantity,"
            " s.price_minor as unit_price_minor, s.currency, s.stock >= c.quantity as in_stock"
            " from cart_items c join skus s on s.id = c.sku_id"
            " join products p on p.id = s.product_id"
            " where c.tenant_id = $1 and c.user_id = $2 order by c.added_at, c.sku_id",
            tenant,
            user,
        )
    items = [
        CartItem.model_validate({**dict(r), "attributes": json.loads(r["attributes"])})
        for r in rows
    ]
    totals: dict[str, int] = defaultdict(int)
    for item in items:
        totals[item.currency] += item.quantity * item.unit_price_minor
    return Cart(items=items, totals_minor=dict(totals))


async def set_item(
    pool: asyncpg.Pool, tenant: str, user: str, sku_id: uuid.UUID, item: CartItemIn
) -> Cart:
    """Put ``quantity`` of a SKU in the cart (replacing what was there)."""
    async with pool.acquire() as conn, conn.transaction():
        # Serialises one buyer's cart writes, so the item cap holds under concurrent adds.
        await conn.execute("select pg_advisory_xact_lock(hashtext($1 || '/' || $2))", tenant, user)
        if not await conn.fetchval(
            "select true from skus where id = $1 and tenant_id = $2", sku_id, tenant
        ):
            raise NotFound(f"sku {sku_id} not found")
        count = await conn.fetchval(
            "select count(*) filter (where sku_id <> $3) from cart_items"
            " where tenant_id = $1 and user_id = $2",
            tenant,
            user,
            sku_id,
        )
        if count >= MAX_ITEMS:
            raise CartFull(f"a cart holds at most {MAX_ITEMS} SKUs")
        await conn.execute(
            "insert into cart_items (tenant_id, user_id, sku_id, quantity) values ($1, $2, $3, $4)"
            " on conflict (tenant_id, user_id, sku_id) do update set quantity = excluded.quantity",
            tenant,
            user,
            sku_id,
            item.quantity,
        )
    return await get_cart(pool, tenant, user)


async def remove_item(pool: asyncpg.Pool, tenant: str, user: str, sku_id: uuid.UUID) -> Cart:
    async with pool.acquire() as conn:
        await conn.execute(
            "delete from cart_items where tenant_id = $1 and user_id = $2 and sku_id = $3",
            tenant,
            user,
            sku_id,
        )
    return await get_cart(pool, tenant, user)


async def checkout(
    conn: asyncpg.Connection,
    tenant: str,
    user: str,
    *,
    idempotency_key: str,
    request_hash: str,
    payment_timeout: timedelta,
) -> orders.Order:
    """Reserve the whole cart as one order and empty it, in the caller's transaction."""
    await conn.execute("select pg_advisory_xact_lock(hashtext($1 || '/' || $2))", tenant, user)
    rows = await conn.fetch(
        "delete from cart_items where tenant_id = $1 and user_id = $2 returning sku_id, quantity",
        tenant,
        user,
    )
    if not rows:
        raise CartEmpty("the cart is empty")
    items = [orders.LineIn(sku_id=r["sku_id"], quantity=r["quantity"]) for r in rows]
    return await orders.place(
        conn, tenant, user, items, idempotency_key=idempotency_key, request_hash=request_hash,
        payment_timeout=payment_timeout,
    )  # fmt: skip
