"""Commerce REST API (``/v1``): catalog, carts, orders, flash sales, payments, rooms.

Every write (POST, PATCH) takes an ``Idempotency-Key``; PUT and DELETE are idempotent by
definition. Callers are identified by their bearer token; every query is scoped to its tenant.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, StrictBool, StringConstraints

from livecart_commerce import carts, catalog, lineup, orders, tenant_settings
from livecart_commerce.errors import (
    IdempotencyKeyReused,
    LimitExceeded,
    SaleNotActive,
    SoldOut,
    refusals,
)
from livecart_commerce.flash_sale import (
    MAX_UNITS_PER_RESERVATION,
    FlashSaleEngine,
    Outcome,
    ReservedOrder,
    ReserveRequest,
    ReserveResult,
)
from livecart_commerce.idempotency import IdempotencyKey, fingerprint, once
from livecart_commerce.orders import Order, OrderLine
from livecart_commerce.payments import SIGNATURE_HEADER, Payments, SimulatedProvider
from livecart_core.auth import Principal, TokenAuthority, require
from livecart_core.errors import NotFound, PermissionDenied
from livecart_core.rules import RoomId

ADMIN = "commerce:admin"
BUY = "commerce:buy"


_REFUSALS = {
    Outcome.SOLD_OUT: SoldOut("sold out"),
    Outcome.LIMIT_EXCEEDED: LimitExceeded("over this sale's per-user limit"),
    Outcome.NOT_ACTIVE: SaleNotActive("the sale has not started or has ended"),
    Outcome.KEY_REUSED: IdempotencyKeyReused(
        "this Idempotency-Key was already used with a different request"
    ),
}


def as_order(reserved: ReservedOrder) -> Order:
    return Order(
        id=reserved.id,
        buyer_id=reserved.buyer_id,
        state=reserved.state,
        origin="flash_sale",
        flash_sale_id=reserved.flash_sale_id,
        lines=[OrderLine(sku_id=reserved.sku_id, quantity=reserved.quantity,
                         unit_price_minor=reserved.unit_price_minor)],
        total_minor=reserved.quantity * reserved.unit_price_minor,
        currency=reserved.currency,
        created_at=reserved.created_at,
        expires_at=reserved.expires_at,
    )  # fmt: skip


def reserved_or_refused(result: ReserveResult, sale_id: uuid.UUID) -> ReservedOrder:
    """The order of a reservation, or the typed refusal (HTTP status, gRPC code) raised."""
    if result.outcome is Outcome.NOT_FOUND:
        raise NotFound(f"flash sale {sale_id} not found")
    if result.outcome is not Outcome.RESERVED:
        raise _REFUSALS[result.outcome]
    assert result.order is not None
    return result.order


async def reserve_order(
    engine: FlashSaleEngine, caller: Principal, sale_id: uuid.UUID, quantity: int, key: str
) -> Order:
    """Reserve for ``caller`` and answer as the API does (the declared route and buy.py's lean
    one both call this), or raise the typed refusal."""
    result = await engine.reserve(
        ReserveRequest(caller.tenant_id, sale_id, caller.subject, quantity, key)
    )
    return as_order(reserved_or_refused(result, sale_id))


class PinIn(BaseModel):
    product_id: uuid.UUID


class ReservationIn(BaseModel):
    quantity: int = Field(default=1, gt=0, le=MAX_UNITS_PER_RESERVATION)


class RefundIn(BaseModel):
    restock: StrictBool = Field(default=True, description="put the units back into the SKUs' stock")


class Empty(BaseModel):
    pass


OrderState = Literal["reserved", "paid", "expired", "cancelled", "refunded"]
PaymentOutcome = Literal["succeeded", "failed"]
BuyerFilter = Annotated[
    str | None,
    Query(
        alias="buyer",
        min_length=1,
        max_length=200,
        description="only this buyer's orders (a buyer may name only themselves)",
    ),
]
Cursor = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page")
]


def routes(
    pool: asyncpg.Pool,
    engine: FlashSaleEngine,
    tokens: TokenAuthority,
    payments: Payments,
    *,
    payment_timeout: timedelta,
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["commerce"])
    # Plain defaults, not local Annotated aliases: with postponed annotations FastAPI resolves
    # names from module globals only.
    admin = Depends(require(tokens, ADMIN))
    buyer = Depends(require(tokens, BUY))

    # The flash-sale hot path first: routes are matched in order.
    @router.post(
        "/flash-sales/{sale_id}/reservations",
        status_code=201,
        summary="Reserve units of a flash sale; the order then waits for payment",
        responses=refusals(
            _404="no such sale for this tenant",
            _409="sold_out, limit_exceeded or sale_not_active",
            _422="invalid body, or idempotency_key_reused",
        ),
    )
    async def reserve(
        sale_id: uuid.UUID, body: ReservationIn, key: IdempotencyKey, caller: Principal = buyer
    ) -> Order:
        # Well-formed requests are answered by buy.BuyPath before they get here; this route
        # documents the contract and judges everything else.
        return await reserve_order(engine, caller, sale_id, body.quantity, key)

    @router.post(
        "/products",
        status_code=201,
        summary="Create a product with its SKUs",
        responses=refusals(_422="invalid body, or idempotency_key_reused"),
    )
    async def create_product(
        body: catalog.ProductIn, key: IdempotencyKey, caller: Principal = admin
    ) -> catalog.Product:
        return await once(
            pool, caller, key, fingerprint("products", body), catalog.Product,
            lambda conn: catalog.create_product(conn, caller.tenant_id, body),
        )  # fmt: skip

    @router.get(
        "/products",
        summary="The shop's products, a page at a time",
        responses=refusals(_422="invalid query"),
    )
    async def list_products(
        after: uuid.UUID | None = None,
        limit: int = Query(default=50, ge=1, le=200),
        caller: Principal = buyer,
    ) -> catalog.ProductPage:
        return await catalog.list_products(pool, caller.tenant_id, after=after, limit=limit)

    @router.get(
        "/products/{product_id}",
        summary="A product, its facts and its SKUs",
        responses=refusals(_404="no such product for this tenant", _422="invalid product id"),
    )
    async def get_product(product_id: uuid.UUID, caller: Principal = buyer) -> catalog.Product:
        return await catalog.get_product(pool, caller.tenant_id, product_id)

    @router.patch(
        "/skus/{sku_id}",
        summary="Reprice, restock or relabel a SKU",
        responses=refusals(
            _400="stock_delta would take the stock past its largest value",
            _404="no such SKU for this tenant",
            _409="not_enough_stock to remove stock_delta units",
            _422="invalid body, or idempotency_key_reused",
        ),
    )
    async def change_sku(
        sku_id: uuid.UUID, body: catalog.SkuChange, key: IdempotencyKey, caller: Principal = admin
    ) -> catalog.Sku:
        return await once(
            pool, caller, key, fingerprint(f"skus/{sku_id}", body), catalog.Sku,
            lambda conn: catalog.change_sku(conn, caller.tenant_id, sku_id, body),
        )  # fmt: skip

    @router.get(
        "/cart", summary="The caller's cart at the catalog's prices now", responses=refusals()
    )
    async def get_cart(caller: Principal = buyer) -> carts.Cart:
        return await carts.get_cart(pool, caller.tenant_id, caller.subject)

    @router.put(
        "/cart/items/{sku_id}",
        summary="Put a quantity of a SKU in the cart",
        responses=refusals(
            _404="no such SKU for this tenant", _409="cart_full", _422="invalid body"
        ),
    )
    async def set_cart_item(
        sku_id: uuid.UUID, body: carts.CartItemIn, caller: Principal = buyer
    ) -> carts.Cart:
        return await carts.set_item(pool, caller.tenant_id, caller.subject, sku_id, body)

    @router.delete(
        "/cart/items/{sku_id}",
        summary="Take a SKU out of the cart",
        responses=refusals(_422="invalid SKU id"),
    )
    async def remove_cart_item(sku_id: uuid.UUID, caller: Principal = buyer) -> carts.Cart:
        return await carts.remove_item(pool, caller.tenant_id, caller.subject, sku_id)

    @router.post(
        "/cart/checkout",
        status_code=201,
        summary="Reserve the whole cart as one order (then pay it before it expires)",
        responses=refusals(
            _400="mixed_currency or total_too_large (nothing reserved)",
            _404="a SKU in the cart no longer exists",
            _409="cart_empty or not_enough_stock (nothing reserved)",
            _422="idempotency_key_reused",
        ),
    )
    async def checkout(key: IdempotencyKey, caller: Principal = buyer) -> Order:
        return await once(
            pool, caller, key, fingerprint("cart/checkout", Empty()), Order,
            lambda conn: carts.checkout(
                conn, caller.tenant_id, caller.subject, idempotency_key=key,
                request_hash=fingerprint("cart/checkout", Empty()),
                payment_timeout=payment_timeout,
            ),
        )  # fmt: skip

    @router.post(
        "/orders",
        status_code=201,
        summary="Buy now: reserve these SKUs at the catalog's prices as one order",
        responses=refusals(
            _400="mixed_currency, total_too_large or too many lines (nothing reserved)",
            _404="no such SKU for this tenant",
            _409="not_enough_stock (nothing reserved)",
            _422="invalid body, or idempotency_key_reused",
        ),
    )
    async def place_order(
        body: orders.OrderIn, key: IdempotencyKey, caller: Principal = buyer
    ) -> Order:
        request_hash = fingerprint("orders", body)
        return await once(
            pool, caller, key, request_hash, Order,
            lambda conn: orders.place(
                conn, caller.tenant_id, caller.subject, body.items, idempotency_key=key,
                request_hash=request_hash, payment_timeout=payment_timeout,
            ),
        )  # fmt: skip

    @router.get(
        "/orders",
        summary="The caller's orders (the merchant's: every buyer's), newest first",
        responses=refusals(
            _400="cursor is not one this service handed out",
            _403="a buyer asked for another buyer's orders",
            _422="invalid query",
        ),
    )
    async def list_orders(
        state: OrderState | None = None,
        buyer_id: BuyerFilter = None,
        cursor: Cursor = None,
        limit: int = Query(default=50, ge=1, le=200),
        caller: Principal = buyer,
    ) -> orders.OrderPage:
        if ADMIN in caller.scopes:
            user = buyer_id
        elif buyer_id is None or buyer_id == caller.subject:
            user = caller.subject
        else:
            raise PermissionDenied("a buyer lists only their own orders")
        return await orders.list_orders(
            pool, caller.tenant_id, user, state=state, cursor=cursor, limit=limit
        )

    @router.post(
        "/orders/{order_id}/cancel",
        summary="Cancel an unpaid order; its units go back on sale",
        responses=refusals(
            _404="no such order of the caller's",
            _409="order_not_cancellable (paid, expired or refunded)",
            _422="idempotency_key_reused",
        ),
    )
    async def cancel_order(
        order_id: uuid.UUID, key: IdempotencyKey, caller: Principal = buyer
    ) -> Order:
        return await once(
            pool, caller, key, fingerprint(f"orders/{order_id}/cancel", Empty()), Order,
            lambda conn: orders.cancel(
                conn, caller.tenant_id, order_id, caller.subject, any_user=ADMIN in caller.scopes
            ),
        )  # fmt: skip

    @router.post(
        "/orders/{order_id}/refund",
        summary="Refund a paid order in full through its payment provider",
        responses=refusals(
            _404="no such order for this tenant",
            _409="order_not_refundable (not paid)",
            _422="invalid body, or idempotency_key_reused",
        ),
    )
    async def refund_order(
        order_id: uuid.UUID, body: RefundIn, key: IdempotencyKey, caller: Principal = admin
    ) -> Order:
        return await once(
            pool, caller, key, fingerprint(f"orders/{order_id}/refund", body), Order,
            lambda conn: payments.refund(
                conn, caller.tenant_id, order_id, caller.subject, restock=body.restock
            ),
        )  # fmt: skip

    @router.post(
        "/flash-sales",
        status_code=201,
        summary="Put SKU stock on a flash sale",
        responses=refusals(
            _404="no such SKU for this tenant",
            _409="not_enough_stock for the sale's quantity",
            _422="invalid body (e.g. ends_at not after starts_at), or idempotency_key_reused",
        ),
    )
    async def create_flash_sale(
        body: catalog.FlashSaleIn, key: IdempotencyKey, caller: Principal = admin
    ) -> catalog.FlashSale:
        return await once(
            pool, caller, key, fingerprint("flash-sales", body), catalog.FlashSale,
            lambda conn: catalog.create_flash_sale(conn, caller.tenant_id, body),
        )  # fmt: skip

    @router.get(
        "/flash-sales/{sale_id}",
        summary="A flash sale and the units left",
        responses=refusals(_404="no such sale for this tenant", _422="invalid sale id"),
    )
    async def get_flash_sale(sale_id: uuid.UUID, caller: Principal = buyer) -> catalog.FlashSale:
        return await catalog.get_flash_sale(pool, caller.tenant_id, sale_id)

    @router.get(
        "/orders/{order_id}",
        summary="One of the caller's orders (the merchant: any)",
        responses=refusals(_404="no such order of the caller's", _422="invalid order id"),
    )
    async def get_order(order_id: uuid.UUID, caller: Principal = buyer) -> Order:
        return await orders.get_order(
            pool, caller.tenant_id, order_id, caller.subject, any_user=ADMIN in caller.scopes
        )

    @router.put(
        "/rooms/{room_id}/lineup",
        summary="Set the products a live room will present",
        responses=refusals(
            _400="a product appears twice",
            _404="a product is not this tenant's",
            _422="invalid room id or body",
        ),
    )
    async def set_lineup(
        room_id: RoomId, body: lineup.LineupIn, caller: Principal = admin
    ) -> lineup.Lineup:
        return await lineup.set_lineup(pool, caller.tenant_id, room_id, body)

    @router.get(
        "/rooms/{room_id}/lineup",
        summary="A live room's lineup and pinned product",
        responses=refusals(_422="invalid room id"),
    )
    async def get_lineup(room_id: RoomId, caller: Principal = buyer) -> lineup.Lineup:
        return await lineup.get_lineup(pool, caller.tenant_id, room_id)

    @router.put(
        "/rooms/{room_id}/pin",
        summary="Put a lineup product on screen (announced)",
        responses=refusals(
            _409="not_in_lineup: the product is not in the room's lineup",
            _422="invalid room id or body",
        ),
    )
    async def pin(room_id: RoomId, body: PinIn, caller: Principal = admin) -> lineup.Lineup:
        return await lineup.pin(pool, caller.tenant_id, room_id, body.product_id)

    @router.get(
        "/settings",
        summary="The shop's commerce settings (the default payment window)",
        responses=refusals(),
    )
    async def get_settings(caller: Principal = admin) -> tenant_settings.TenantSettings:
        return await tenant_settings.get_settings(pool, caller.tenant_id)

    @router.put(
        "/settings",
        summary="Set the shop's commerce settings; orders placed from now on follow them",
        responses=refusals(_422="invalid body"),
    )
    async def put_settings(
        body: tenant_settings.TenantSettings, caller: Principal = admin
    ) -> tenant_settings.TenantSettings:
        return await tenant_settings.put_settings(pool, caller.tenant_id, body)

    @router.post(
        "/orders/{order_id}/payments",
        status_code=201,
        summary="Pay for an order",
        responses=refusals(
            _404="no such order of the caller's",
            _409="order_not_payable (not reserved)",
            _422="invalid order id",
        ),
    )
    async def pay(order_id: uuid.UUID, caller: Principal = buyer) -> dict[str, object]:
        return await payments.start(caller.tenant_id, caller.subject, order_id)

    @router.post(
        "/payments/webhook",
        summary="The payment provider's webhook (signed with Livecart-Signature, no bearer token)",
        responses=refusals(
            _400="the body is not JSON with reference and status",
            _404="no such payment",
        ),
    )
    async def webhook(request: Request) -> dict[str, str]:
        return await payments.settle(await request.body(), request.headers.get(SIGNATURE_HEADER))

    provider = payments.provider
    if isinstance(provider, SimulatedProvider):

        @router.post(
            "/simulated-provider/payments/{reference}/complete",
            tags=["simulated provider (development only)"],
            summary="SIMULATED PROVIDER, DEVELOPMENT ONLY: the buyer pays (or the payment"
            " fails); the provider calls the webhook",
            responses=refusals(
                _404="no payment with this reference for the caller (the order's buyer or"
                " the merchant of its tenant)",
                _422="invalid reference or status",
            ),
        )
        async def simulate(
            reference: Annotated[str, StringConstraints(min_length=1, max_length=100)],
            status: PaymentOutcome = "succeeded",
            caller: Principal = buyer,
        ) -> dict[str, object]:
            await payments.payer_check(
                caller.tenant_id, caller.subject, reference, any_user=ADMIN in caller.scopes
            )
            answer = await provider.complete(reference, status)
            return {"webhook_status": answer.status_code, "webhook": answer.json()}

    return router
