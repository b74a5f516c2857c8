"""Products, SKUs and flash sales of a tenant (every query is scoped by tenant)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated

import asyncpg
from pydantic import BaseModel, Field, StringConstraints, model_validator

from livecart_commerce.errors import NotEnoughStock
from livecart_core.db import Executor, connection
from livecart_core.errors import NotFound

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class SkuIn(BaseModel):
    price_minor: int = Field(ge=0, description="price in minor units of the currency")
    currency: Currency
    stock: int = Field(ge=0)
    attributes: dict[str, str] = Field(default_factory=dict, max_length=20)


class ProductIn(BaseModel):
    title: Title
    skus: list[SkuIn] = Field(min_length=1, max_length=50)


class Sku(SkuIn):
    id: uuid.UUID


class Product(BaseModel):
    id: uuid.UUID
    title: str
    skus: list[Sku]


class FlashSaleIn(BaseModel):
    sku_id: uuid.UUID
    sale_price_minor: int = Field(ge=0)
    quantity: int = Field(gt=0, le=10_000_000)
    per_user_limit: int = Field(default=1, gt=0, le=1000)
    starts_at: datetime
    ends_at: datetime

    @model_validator(mode="after")
    def _ends_after_start(self) -> FlashSaleIn:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class FlashSale(BaseModel):
    id: uuid.UUID
    sku_id: uuid.UUID
    sale_price_minor: int
    currency: str
    quantity: int
    remaining: int
    per_user_limit: int
    starts_at: datetime
    ends_at: datetime


async def create_product(db: Executor, tenant: str, product: ProductIn) -> Product:
    async with connection(db) as conn, conn.transaction():
        product_id = await conn.fetchval(
            "insert into products (tenant_id, title) values ($1, $2) returning id",
            tenant,
            product.title,
        )
        skus = [
            Sku(
                id=await conn.fetchval(
                    "insert into skus (tenant_id, product_id, price_minor, currency, stock,"
                    " attributes) values ($1, $2, $3, $4, $5, $6::jsonb) returning id",
                    tenant,
                    product_id,
                    sku.price_minor,
                    sku.currency,
                    sku.stock,
                    json.dumps(sku.attributes),
                ),
                **sku.model_dump(),
            )
            for sku in product.skus
        ]
    return Product(id=product_id, title=product.title, skus=skus)


async def get_product(pool: asyncpg.Pool, tenant: str, product_id: uuid.UUID) -> Product:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "select id, title from products where id = $1 and tenant_id = $2", product_id, tenant
        )
        if row is None:
            raise NotFound(f"product {product_id} not found")
        skus = await conn.fetch(
            "select id, price_minor, currency, stock, attributes from skus"
            " where product_id = $1 and tenant_id = $2 order by created_at, id",
            product_id,
            tenant,
        )
    return Product(
        id=row["id"],
        title=row["title"],
        skus=[Sku(**{**dict(s), "attributes": json.loads(s["attributes"])}) for s in skus],
    )


async def create_flash_sale(db: Executor, tenant: str, sale: FlashSaleIn) -> FlashSale:
    """Carve ``quantity`` units out of the SKU's stock into a new sale, atomically."""
    async with connection(db) as conn, conn.transaction():
        sku = await conn.fetchrow(
            "update skus set stock = stock - $3 where id = $1 and tenant_id = $2 and stock >= $3"
            " returning currency",
            sale.sku_id,
            tenant,
            sale.quantity,
        )
        if sku is None:
            exists = await conn.fetchval(
                "select stock from skus where id = $1 and tenant_id = $2", sale.sku_id, tenant
            )
            if exists is None:
                raise NotFound(f"sku {sale.sku_id} not found")
            raise NotEnoughStock(
                f"sku {sale.sku_id} has {exists} units, the sale wants {sale.quantity}"
            )
        sale_id = await conn.fetchval(
            "insert into flash_sales (tenant_id, sku_id, sale_price_minor, currency, quantity,"
            " remaining, per_user_limit, starts_at, ends_at)"
            " values ($1, $2, $3, $4, $5, $5, $6, $7, $8) returning id",
            tenant, sale.sku_id, sale.sale_price_minor, sku["currency"], sale.quantity,
            sale.per_user_limit, sale.starts_at, sale.ends_at,
        )  # fmt: skip
        return await get_flash_sale(conn, tenant, sale_id)


async def get_flash_sale(db: Executor, tenant: str, sale_id: uuid.UUID) -> FlashSale:
    async with connection(db) as conn:
        row = await conn.fetchrow(
            "select id, sku_id, sale_price_minor, currency, quantity, remaining, per_user_limit,"
            " starts_at, ends_at from flash_sales where id = $1 and tenant_id = $2",
            sale_id,
            tenant,
        )
    if row is None:
        raise NotFound(f"flash sale {sale_id} not found")
    return FlashSale(**dict(row))
