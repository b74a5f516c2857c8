"""Products, SKUs and flash sales of a tenant (every query is scoped by tenant)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated

import asyncpg
from pydantic import AnyHttpUrl, BaseModel, Field, StrictBool, StringConstraints, model_validator

from livecart_commerce.errors import NotEnoughStock
from livecart_commerce.flash_sale import MAX_UNITS_PER_RESERVATION
from livecart_commerce.tenant_settings import PaymentTimeout
from livecart_core.db import Executor, connection
from livecart_core.errors import InvalidArgument, NotFound
from livecart_core.rules import INT32_MAX, MONEY_MAX, Count, Instant, MinorUnits

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class SkuIn(BaseModel):
    price_minor: MinorUnits = Field(description="price in minor units of the currency")
    currency: Currency
    stock: Count
    attributes: dict[str, str] = Field(default_factory=dict, max_length=20)


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Shipping(BaseModel):
    ships_from: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    min_days: int = Field(ge=0, le=365, description="business days to delivery, at best")
    max_days: int = Field(
        ge=0, le=365, description="business days to delivery, at worst; at least min_days"
    )
    fee_minor: MinorUnits = Field(default=0, description="in minor units of the SKUs' currency")

    @model_validator(mode="after")
    def _ordered(self) -> Shipping:
        if self.max_days < self.min_days:
            raise ValueError("max_days must be at least min_days")
        return self


class Returns(BaseModel):
    window_days: int = Field(ge=0, le=365, description="0: no returns")
    free: StrictBool = Field(default=False, description="the merchant pays return shipping")
    conditions: str = Field(default="", max_length=2000)


class Faq(BaseModel):
    question: Text
    answer: Text


class ProductFacts(BaseModel):
    """What a shopper (and the shopping assistant) reads about a product."""

    description: str = Field(default="", max_length=5000)
    images: list[AnyHttpUrl] = Field(default_factory=list, max_length=20)
    shipping: Shipping | None = None
    returns: Returns | None = None
    faq: list[Faq] = Field(default_factory=list, max_length=50)


class ProductIn(ProductFacts):
    title: Title
    skus: list[SkuIn] = Field(min_length=1, max_length=50)


class Sku(SkuIn):
    id: uuid.UUID


class Product(ProductFacts):
    id: uuid.UUID
    title: str
    skus: list[Sku]


class ProductPage(BaseModel):
    products: list[Product]
    next_after: uuid.UUID | None = Field(description="pass as `after` for the next page")


class SkuChange(BaseModel):
    price_minor: MinorUnits | None = None
    stock_delta: int | None = Field(
        default=None,
        ge=-10_000_000,
        le=10_000_000,
        description=f"units added (or removed); the stock stays between 0 and {INT32_MAX}",
    )
    attributes: dict[str, str] | None = Field(default=None, max_length=20)


class FlashSaleIn(BaseModel):
    sku_id: uuid.UUID
    sale_price_minor: MinorUnits = Field(
        description=f"per unit; times min(per_user_limit, {MAX_UNITS_PER_RESERVATION}) at most"
        f" {MONEY_MAX}, so any order's total stays exact"
    )
    quantity: int = Field(gt=0, le=10_000_000, description="units carved out of the SKU's stock")
    per_user_limit: int = Field(default=1, gt=0, le=1000)
    starts_at: Instant
    ends_at: Instant = Field(description="after starts_at")
    payment_timeout_s: PaymentTimeout | None = Field(
        default=None,
        description="seconds a buyer has to pay (1 to 604800); null: the tenant's default",
    )

    @model_validator(mode="after")
    def _ends_after_start(self) -> FlashSaleIn:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        largest = self.sale_price_minor * min(self.per_user_limit, MAX_UNITS_PER_RESERVATION)
        if largest > MONEY_MAX:
            raise ValueError(
                f"sale_price_minor times the largest order's units is {largest}, above {MONEY_MAX}"
            )
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
    payment_timeout_s: int | None = Field(
        default=None, description="null: the tenant's default applies"
    )


async def create_product(db: Executor, tenant: str, product: ProductIn) -> Product:
    async with connection(db) as conn, conn.transaction():
        facts = product.model_dump(mode="json", include=set(ProductFacts.model_fields))
        product_id = await conn.fetchval(
            "insert into products (tenant_id, title, description, images, shipping, returns, faq)"
            " values ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb) returning id",
            tenant,
            product.title,
            product.description,
            *(json.dumps(facts[k]) for k in ("images", "shipping", "returns", "faq")),
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
    return Product(id=product_id, skus=skus, **product.model_dump(exclude={"skus"}))


_PRODUCT_COLUMNS = "id, title, description, images, shipping, returns, faq"


async def get_product(db: Executor, tenant: str, product_id: uuid.UUID) -> Product:
    async with connection(db) as conn:
        rows = await conn.fetch(
            f"select {_PRODUCT_COLUMNS} from products where id = $1 and tenant_id = $2",
            product_id,
            tenant,
        )
        products = await _with_skus(conn, tenant, rows)
    if not products:
        raise NotFound(f"product {product_id} not found")
    return products[0]


async def list_products(
    pool: asyncpg.Pool, tenant: str, *, after: uuid.UUID | None, limit: int
) -> ProductPage:
    """The tenant's products in id order, a page at a time (keyset: ``after`` the last id)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"select {_PRODUCT_COLUMNS} from products where tenant_id = $1"
            " and ($2::uuid is null or id > $2) order by id limit $3",
            tenant,
            after,
            limit,
        )
        products = await _with_skus(conn, tenant, rows)
    return ProductPage(
        products=products, next_after=products[-1].id if len(products) == limit else None
    )


async def _with_skus(
    conn: asyncpg.Connection, tenant: str, rows: list[asyncpg.Record]
) -> list[Product]:
    skus = await conn.fetch(
        "select product_id, id, price_minor, currency, stock, attributes from skus"
        " where product_id = any($1::uuid[]) and tenant_id = $2 order by created_at, id",
        [r["id"] for r in rows],
        tenant,
    )
    by_product: dict[uuid.UUID, list[dict[str, object]]] = {r["id"]: [] for r in rows}
    for s in skus:
        by_product[s["product_id"]].append({**dict(s), "attributes": json.loads(s["attributes"])})
    jsonb = ("images", "shipping", "returns", "faq")
    return [
        Product.model_validate(
            {
                **{k: r[k] for k in ("id", "title", "description")},
                **{k: None if r[k] is None else json.loads(r[k]) for k in jsonb},
                "skus": by_product[r["id"]],
            }
        )
        for r in rows
    ]


async def change_sku(db: Executor, tenant: str, sku_id: uuid.UUID, change: SkuChange) -> Sku:
    """Reprice, restock (or take stock off sale) and relabel a SKU; stock never goes below 0."""
    async with connection(db) as conn:
        # In bigint, so a delta past the column's range is refused here, not by an overflow.
        row = await conn.fetchrow(
            "update skus set price_minor = coalesce($3, price_minor),"
            " stock = stock + coalesce($4::bigint, 0),"
            " attributes = coalesce($5::jsonb, attributes)"
            " where id = $1 and tenant_id = $2"
            " and stock + coalesce($4::bigint, 0) between 0 and 2147483647"
            " returning id, price_minor, currency, stock, attributes",
            sku_id,
            tenant,
            change.price_minor,
            change.stock_delta,
            None if change.attributes is None else json.dumps(change.attributes),
        )
        if row is None:
            stock = await conn.fetchval(
                "select stock from skus where id = $1 and tenant_id = $2", sku_id, tenant
            )
            if stock is None:
                raise NotFound(f"sku {sku_id} not found")
            delta = change.stock_delta or 0
            if delta > 0:
                raise InvalidArgument(
                    f"stock_delta: sku {sku_id} has {stock} units; adding {delta} passes"
                    f" {INT32_MAX}"
                )
            raise NotEnoughStock(f"sku {sku_id} has {stock} units; cannot remove {-delta}")
    return Sku(**{**dict(row), "attributes": json.loads(row["attributes"])})


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
            " remaining, per_user_limit, starts_at, ends_at, payment_timeout_s)"
            " values ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9) returning id",
            tenant, sale.sku_id, sale.sale_price_minor, sku["currency"], sale.quantity,
            sale.per_user_limit, sale.starts_at, sale.ends_at, sale.payment_timeout_s,
        )  # fmt: skip
        return await get_flash_sale(conn, tenant, sale_id)


async def get_flash_sale(db: Executor, tenant: str, sale_id: uuid.UUID) -> FlashSale:
    async with connection(db) as conn:
        row = await conn.fetchrow(
            "select id, sku_id, sale_price_minor, currency, quantity, remaining, per_user_limit,"
            " starts_at, ends_at, payment_timeout_s from flash_sales"
            " where id = $1 and tenant_id = $2",
            sale_id,
            tenant,
        )
    if row is None:
        raise NotFound(f"flash sale {sale_id} not found")
    return FlashSale(**dict(row))
