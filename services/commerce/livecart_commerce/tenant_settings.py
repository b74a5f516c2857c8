"""A tenant's commerce settings: for now, the default payment window of its orders.

The window that applies to an order is the flash sale's own, else the tenant's, else the
process setting ``LIVECART_PAYMENT_TIMEOUT_S``; the order stores the ``expires_at`` it gives.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import asyncpg
from pydantic import BaseModel, Field

from livecart_core.db import Executor, connection

MAX_PAYMENT_TIMEOUT_S = 7 * 86_400
PaymentTimeout = Annotated[int, Field(ge=1, le=MAX_PAYMENT_TIMEOUT_S)]


class TenantSettings(BaseModel):
    payment_timeout_s: PaymentTimeout | None = Field(
        default=None,
        description="seconds a buyer has to pay an order (1 to 604800); a flash sale's own"
        " window wins; null: the service's default",
    )


async def get_settings(db: Executor, tenant: str) -> TenantSettings:
    async with connection(db) as conn:
        row = await conn.fetchrow(
            "select payment_timeout_s from tenant_settings where tenant_id = $1", tenant
        )
    return TenantSettings() if row is None else TenantSettings(**dict(row))


async def put_settings(pool: asyncpg.Pool, tenant: str, settings: TenantSettings) -> TenantSettings:
    async with pool.acquire() as conn:
        await conn.execute(
            "insert into tenant_settings (tenant_id, payment_timeout_s) values ($1, $2)"
            " on conflict (tenant_id) do update"
            " set payment_timeout_s = excluded.payment_timeout_s, updated_at = now()",
            tenant,
            settings.payment_timeout_s,
        )
    return await get_settings(pool, tenant)


async def payment_window(db: Executor, tenant: str, default: timedelta) -> timedelta:
    """How long the tenant's buyers have to pay a regular (cart or buy-now) order."""
    seconds = (await get_settings(db, tenant)).payment_timeout_s
    return default if seconds is None else timedelta(seconds=seconds)
