"""Orders: placing regular (cart or buy-now) orders, reading, cancelling, and returning stock.

Every order is reserved first: its units leave stock when it is placed, and come back if it is
cancelled or not paid in time (see ``expiry``). Prices always come from the catalog, read under
the SKU row locks that take the stock, never from the client.

An order has lines. A flash-sale or lottery order has exactly one, kept on the order row itself
(the flash-sale hot path writes one row per order); a cart order keeps its lines in
``order_lines``. The ``order_items`` view reads both, and so does everything here.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field

from livecart.events.v1.commerce_pb2 import OrderCancelled, OrderReserved
from livecart.events.v1.commerce_pb2 import OrderLine as OrderLineEvent
from livecart_commerce import paging
from livecart_commerce.errors import IdempotencyKeyReused, NotEnoughStock
from livecart_commerce.events import append, event
from livecart_commerce.tenant_settings import payment_window
from livecart_core.db import Executor, connection
from livecart_core.errors import FailedPrecondition, InvalidArgument, NotFound
from livecart_core.rules import MONEY_MAX

MAX_LINES = 50
MAX_UNITS_PER_LINE = 1000


class MixedCurrency(InvalidArgument):
    code = "mixed_currency"


class OrderNotCancellable(FailedPrecondition):
    code = "order_not_cancellable"


class TotalTooLarge(InvalidArgument):
    code = "total_too_large"


class LineIn(BaseModel):
    sku_id: uuid.UUID
    quantity: int = Field(gt=0, le=MAX_UNITS_PER_LINE)


class OrderIn(BaseModel):
    """A buy-now order: these SKUs at the catalog's prices."""

    items: list[LineIn] = Field(min_length=1, max_length=MAX_LINES)


class OrderLine(BaseModel):
    sku_id: uuid.UUID
    quantity: int
    unit_price_minor: int


class Order(BaseModel):
    id: uuid.UUID
    buyer_id: str = Field(description="the buyer's user id (the subject of their token)")
    state: str = Field(description="reserved, paid, expired, cancelled or refunded")
    origin: str = Field(description="flash_sale, cart or lottery")
    flash_sale_id: uuid.UUID | None
    lines: list[OrderLine]
    total_minor: int = Field(description=f"at most {MONEY_MAX} (2^53 - 1)")
    currency: str
    created_at: datetime
    expires_at: datetime = Field(description="an unpaid (reserved) order expires then")


class OrderPage(BaseModel):
    orders: list[Order]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


_ORDER_SELECT = (
    "select o.id, o.user_id as buyer_id, o.state, o.origin, o.flash_sale_id, o.currency,"
    " o.created_at, o.expires_at,"
    " coalesce(o.total_minor, o.quantity * o.unit_price_minor) as total_minor,"
    " array(select row(i.sku_id, i.quantity, i.unit_price_minor) from order_items i"
    "       where i.order_id = o.id order by i.sku_id) as lines"
    " from orders o"
)


def _order(row: asyncpg.Record) -> Order:
    return Order(
        **{k: row[k] for k in row.keys() if k != "lines"},
        lines=[OrderLine(sku_id=s, quantity=q, unit_price_minor=p) for s, q, p in row["lines"]],
    )


async def get_order(
    db: Executor, tenant: str, order_id: uuid.UUID, user: str, *, any_user: bool = False
) -> Order:
    """One order of the tenant: the caller's own, or any with ``any_user`` (the merchant)."""
    async with connection(db) as conn:
        row = await conn.fetchrow(
            f"{_ORDER_SELECT} where o.id = $1 and o.tenant_id = $2 and (o.user_id = $3 or $4)",
            order_id,
            tenant,
            user,
            any_user,
        )
    if row is None:
        raise NotFound(f"order {order_id} not found")
    return _order(row)


async def list_orders(
    pool: asyncpg.Pool,
    tenant: str,
    user: str | None,
    *,
    state: str | None,
    cursor: str | None,
    limit: int,
) -> OrderPage:
    """Newest first, a page at a time; ``user`` None means every buyer of the tenant.

    Pages follow (created_at, id): the orders of one flash-sale batch share a created_at."""
    after_at, after_id = paging.decode(cursor) if cursor is not None else (None, None)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"{_ORDER_SELECT} where o.tenant_id = $1 and ($2::text is null or o.user_id = $2)"
            " and ($3::text is null or o.state = $3)"
            " and ($4::timestamptz is null or (o.created_at, o.id) < ($4, $5::uuid))"
            " order by o.created_at desc, o.id desc limit $6",
            tenant,
            user,
            state,
            after_at,
            after_id,
            limit,
        )
    orders = [_order(r) for r in rows]
    last = orders[-1] if len(orders) == limit else None
    return OrderPage(
        orders=orders, next_cursor=None if last is None else paging.encode(last.created_at, last.id)
    )


async def place(
    conn: asyncpg.Connection,
    tenant: str,
    user: str,
    items: Sequence[LineIn],
    *,
    idempotency_key: str,
    request_hash: str,
    payment_timeout: timedelta,
) -> Order:
    """Reserve ``items`` at catalog prices as one order, in the caller's transaction.

    All or nothing: an unknown SKU (404), a SKU short of stock (409), SKUs in two currencies or
    a total past ``MONEY_MAX`` (400) refuse the whole order and take no stock.
    ``payment_timeout`` is the window when the tenant has set none.
    """
    wanted: Counter[uuid.UUID] = Counter()
    for item in items:
        wanted[item.sku_id] += item.quantity
    if len(wanted) > MAX_LINES or max(wanted.values()) > MAX_UNITS_PER_LINE:
        raise InvalidArgument(
            f"at most {MAX_LINES} SKUs and {MAX_UNITS_PER_LINE} units of each per order"
        )
    skus = {
        row["id"]: row
        for row in await conn.fetch(
            # In id order, so checkouts sharing SKUs lock them in one order and cannot deadlock.
            "select id, price_minor, currency, stock, now() as now from skus"
            " where tenant_id = $1 and id = any($2::uuid[]) order by id for update",
            tenant,
            list(wanted),
        )
    }
    for sku_id, quantity in wanted.items():
        row = skus.get(sku_id)
        if row is None:
            raise NotFound(f"sku {sku_id} not found")
        if row["stock"] < quantity:
            raise NotEnoughStock(
                f"sku {sku_id} has {row['stock']} units, the order wants {quantity}"
            )
    currencies = {row["currency"] for row in skus.values()}
    if len(currencies) > 1:
        raise MixedCurrency(
            f"an order is paid in one currency; these SKUs use {sorted(currencies)}"
        )
    lines = [OrderLine(sku_id=s, quantity=q, unit_price_minor=skus[s]["price_minor"])
             for s, q in sorted(wanted.items())]  # fmt: skip
    total = sum(line.quantity * line.unit_price_minor for line in lines)
    if total > MONEY_MAX:
        # Checked before the stock update: the order takes nothing it cannot record.
        raise TotalTooLarge(f"the order's total_minor would be {total}, above {MONEY_MAX}")
    await conn.execute(
        "update skus set stock = stock - t.q from unnest($1::uuid[], $2::int[]) as t(id, q)"
        " where skus.id = t.id",
        list(wanted),
        list(wanted.values()),
    )
    now: datetime = next(iter(skus.values()))["now"]
    expires_at = now + await payment_window(conn, tenant, payment_timeout)
    currency = currencies.pop()
    try:
        order_id: uuid.UUID = await conn.fetchval(
            "insert into orders (tenant_id, user_id, origin, currency, total_minor, state,"
            " idempotency_key, request_hash, created_at, expires_at)"
            " values ($1, $2, 'cart', $3, $4, 'reserved', $5, $6, $7, $8) returning id",
            tenant, user, currency, total, idempotency_key, request_hash, now, expires_at,
        )  # fmt: skip
    except asyncpg.UniqueViolationError:
        # The key already made a flash-sale reservation (which keeps its keys on the order).
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different request"
        ) from None
    await conn.executemany(
        "insert into order_lines (order_id, sku_id, quantity, unit_price_minor)"
        " values ($1, $2, $3, $4)",
        [(order_id, line.sku_id, line.quantity, line.unit_price_minor) for line in lines],
    )
    expires = Timestamp()
    expires.FromDatetime(expires_at)
    reserved = OrderReserved(
        order_id=str(order_id),
        user_id=user,
        currency=currency,
        expires_at=expires,
        lines=[line_event(line) for line in lines],
        total_minor=total,
    )
    await append(conn, [event(tenant, now, order_reserved=reserved)])
    return Order(
        id=order_id, buyer_id=user, state="reserved", origin="cart", flash_sale_id=None,
        lines=lines, total_minor=total, currency=currency, created_at=now, expires_at=expires_at,
    )  # fmt: skip


async def cancel(
    db: Executor, tenant: str, order_id: uuid.UUID, caller: str, *, any_user: bool
) -> Order:
    """Cancel an unpaid order and return its units; cancelling it again changes nothing."""
    async with connection(db) as conn, conn.transaction():
        row = await conn.fetchrow(
            "select id, user_id, state, flash_sale_id, origin, now() as now from orders"
            " where id = $1 and tenant_id = $2 and (user_id = $3 or $4) for update",
            order_id,
            tenant,
            caller,
            any_user,
        )
        if row is None:
            raise NotFound(f"order {order_id} not found")
        if row["state"] not in ("reserved", "cancelled"):
            hint = "; a paid order is refunded instead" if row["state"] == "paid" else ""
            raise OrderNotCancellable(f"order {order_id} is {row['state']}{hint}")
        if row["state"] == "reserved":
            await conn.execute("update orders set state = 'cancelled' where id = $1", order_id)
            lines = await release_stock(conn, [row])
            cancelled = OrderCancelled(
                order_id=str(order_id),
                user_id=row["user_id"],
                cancelled_by=caller,
                lines=[line_event(line) for line in lines[order_id]],
                flash_sale_id=str(row["flash_sale_id"] or ""),
            )
            await append(conn, [event(tenant, row["now"], order_cancelled=cancelled)])
        return await get_order(conn, tenant, order_id, caller, any_user=True)


async def release_stock(
    conn: asyncpg.Connection, orders: Sequence[asyncpg.Record], *, to_sales: bool = True
) -> dict[uuid.UUID, list[OrderLine]]:
    """Give the units of ``orders`` (rows with ``id`` and ``flash_sale_id``, and ``user_id`` for
    flash-sale orders) back: to their flash sale and the buyer's allowance there, or with
    ``to_sales=False`` (and for every other order) to the SKU's stock. Returns the lines."""
    lines: dict[uuid.UUID, list[OrderLine]] = defaultdict(list)
    for item in await conn.fetch(
        "select order_id, sku_id, quantity, unit_price_minor from order_items"
        " where order_id = any($1::uuid[])",
        [o["id"] for o in orders],
    ):
        lines[item["order_id"]].append(
            OrderLine(sku_id=item["sku_id"], quantity=item["quantity"],
                      unit_price_minor=item["unit_price_minor"])
        )  # fmt: skip
    to_sale: Counter[uuid.UUID] = Counter()
    to_buyer: Counter[tuple[uuid.UUID, str]] = Counter()
    to_sku: Counter[uuid.UUID] = Counter()
    for o in orders:
        for line in lines[o["id"]]:
            if to_sales and o["flash_sale_id"] is not None:
                to_sale[o["flash_sale_id"]] += line.quantity
                to_buyer[o["flash_sale_id"], o["user_id"]] += line.quantity
            else:
                to_sku[line.sku_id] += line.quantity
    # Sorted, so concurrent releases and reservations lock rows in one order.
    await conn.executemany(
        "update flash_sales set remaining = remaining + $2 where id = $1", sorted(to_sale.items())
    )
    await conn.executemany(
        "update flash_sale_buyers set quantity = quantity - $3"
        " where flash_sale_id = $1 and user_id = $2",
        [(sale, user, units) for (sale, user), units in sorted(to_buyer.items())],
    )
    await conn.executemany(
        "update skus set stock = stock + $2 where id = $1", sorted(to_sku.items())
    )
    return lines


def line_event(line: OrderLine) -> OrderLineEvent:
    return OrderLineEvent(
        sku_id=str(line.sku_id), quantity=line.quantity, unit_price_minor=line.unit_price_minor
    )
