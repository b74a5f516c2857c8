"""Commerce test fixtures: the commerce schema migrated on the session's real Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from livecart_commerce.app import SERVICE
from livecart_core.db import Database
from livecart_core.localinfra.postgres import EmbeddedPostgres


@pytest.fixture(scope="session")
async def commerce_db(postgres: EmbeddedPostgres) -> AsyncIterator[Database]:
    db = Database(postgres.url, "commerce", pool_size=20)
    await db.connect()
    await db.migrate(SERVICE.migrations)
    yield db
    await db.close()


async def create_flash_sale(
    pool: asyncpg.Pool,
    *,
    tenant: str = "acme",
    quantity: int = 100,
    per_user_limit: int = 1,
    starts_in: timedelta = timedelta(seconds=-1),
    lasts: timedelta = timedelta(hours=1),
) -> uuid.UUID:
    """A product, a SKU and a live flash sale over ``quantity`` of its units."""
    async with pool.acquire() as conn, conn.transaction():
        product = await conn.fetchval(
            "insert into products (tenant_id, title) values ($1, 'Silk scarf') returning id", tenant
        )
        sku = await conn.fetchval(
            "insert into skus (tenant_id, product_id, price_minor, currency, stock)"
            " values ($1, $2, 12900, 'USD', 0) returning id",
            tenant,
            product,
        )
        sale: uuid.UUID = await conn.fetchval(
            "insert into flash_sales (tenant_id, sku_id, sale_price_minor, currency, quantity,"
            " remaining, per_user_limit, starts_at, ends_at)"
            " values ($1, $2, 990, 'USD', $3, $3, $4, now() + $5, now() + $5 + $6) returning id",
            tenant,
            sku,
            quantity,
            per_user_limit,
            starts_in,
            lasts,
        )
    return sale
