"""Upgrading a database with history: what earlier versions stored still reads back."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from importlib.resources import as_file
from pathlib import Path
from typing import Any

from livecart_commerce.app import SERVICE
from livecart_commerce.catalog import FlashSale
from livecart_commerce.idempotency import once
from livecart_commerce.orders import Order
from livecart_core.auth import Principal
from livecart_core.db import Database
from livecart_core.localinfra.postgres import EmbeddedPostgres


def copy_migrations_before(version: str, to: Path) -> None:
    assert SERVICE.migrations is not None
    with as_file(SERVICE.migrations) as migrations:
        for sql in Path(migrations).glob("*.sql"):
            if sql.name < version:
                shutil.copy(sql, to)


async def never(conn: Any) -> Any:
    raise AssertionError("a replay must not write again")


async def test_idempotent_replays_stored_before_buyer_ids_still_replay(
    postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    await asyncio.to_thread(copy_migrations_before, "0008", tmp_path)
    db = Database(postgres.url, f"commerce_upgrade_{uuid.uuid4().hex[:8]}")
    await db.connect()
    try:
        await db.migrate(tmp_path)
        now = datetime.now(UTC)
        async with db.pool.acquire() as conn:
            product = await conn.fetchval(
                "insert into products (tenant_id, title) values ('t', 'Pen') returning id"
            )
            sku = await conn.fetchval(
                "insert into skus (tenant_id, product_id, price_minor, currency, stock)"
                " values ('t', $1, 100, 'USD', 5) returning id",
                product,
            )
            order = await conn.fetchval(
                "insert into orders (tenant_id, user_id, origin, currency, total_minor, state,"
                " idempotency_key, request_hash, expires_at)"
                " values ('t', 'ann', 'cart', 'USD', 100, 'reserved', 'k1', 'h', $1) returning id",
                now,
            )
            old_order = Order(
                id=order, buyer_id="ann", state="reserved", origin="cart", flash_sale_id=None,
                lines=[], total_minor=100, currency="USD", created_at=now, expires_at=now,
            ).model_dump_json(exclude={"buyer_id"})  # fmt: skip
            old_sale = FlashSale(
                id=uuid.uuid4(), sku_id=sku, sale_price_minor=1, currency="USD", quantity=1,
                remaining=1, per_user_limit=1, starts_at=now, ends_at=now + timedelta(hours=1),
            ).model_dump_json(exclude={"payment_timeout_s"})  # fmt: skip
            await conn.executemany(
                "insert into idempotency_keys (tenant_id, subject, key, request_hash, response)"
                " values ('t', $1, $2, 'h', $3::jsonb)",
                [("ann", "order", old_order), ("merchant", "sale", old_sale)],
            )
        await db.migrate(SERVICE.migrations)

        ann = Principal("t", "ann", frozenset())
        replayed = await once(db.pool, ann, "order", "h", Order, never)
        assert replayed.id == order and replayed.buyer_id == "ann"
        merchant = Principal("t", "merchant", frozenset())
        sale = await once(db.pool, merchant, "sale", "h", FlashSale, never)
        assert sale.payment_timeout_s is None
    finally:
        async with db.pool.acquire() as conn:
            await conn.execute(f'drop schema "{db.schema}" cascade')
        await db.close()
