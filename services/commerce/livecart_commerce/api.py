"""Commerce REST API (``/v1``): catalog, flash sales and reservations, orders, payments."""

from __future__ import annotations

import uuid

import asyncpg
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from livecart_commerce import catalog, lineup, orders
from livecart_commerce.errors import IdempotencyKeyReused, LimitExceeded, SaleNotActive, SoldOut
from livecart_commerce.flash_sale import (
    FlashSaleEngine,
    Outcome,
    ReservedOrder,
    ReserveRequest,
    ReserveResult,
)
from livecart_commerce.idempotency import IdempotencyKey, fingerprint, once
from livecart_commerce.orders import Order
from livecart_commerce.payments import SIGNATURE_HEADER, Payments, SimulatedProvider
from livecart_core.auth import Principal, TokenAuthority, require
from livecart_core.errors import NotFound

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


def reserved_or_refused(result: ReserveResult, sale_id: uuid.UUID) -> ReservedOrder:
    """The order of a reservation, or the typed refusal (HTTP status, gRPC code) raised."""
    if result.outcome is Outcome.NOT_FOUND:
        raise NotFound(f"flash sale {sale_id} not found")
    if result.outcome is not Outcome.RESERVED:
        raise _REFUSALS[result.outcome]
    assert result.order is not None
    return result.order


class PinIn(BaseModel):
    product_id: uuid.UUID


class ReservationIn(BaseModel):
    quantity: int = Field(default=1, gt=0, le=100)


def routes(
    pool: asyncpg.Pool, engine: FlashSaleEngine, tokens: TokenAuthority, payments: Payments
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["commerce"])
    # Plain defaults, not local Annotated aliases: with postponed annotations FastAPI resolves
    # names from module globals only.
    admin = Depends(require(tokens, ADMIN))
    buyer = Depends(require(tokens, BUY))

    @router.post("/products", status_code=201, summary="Create a product with its SKUs")
    async def create_product(
        body: catalog.ProductIn, key: IdempotencyKey, caller: Principal = admin
    ) -> catalog.Product:
        return await once(
            pool, caller, key, fingerprint("products", body), catalog.Product,
            lambda conn: catalog.create_product(conn, caller.tenant_id, body),
        )  # fmt: skip

    @router.get("/products/{product_id}", summary="A product and its SKUs")
    async def get_product(product_id: uuid.UUID, caller: Principal = buyer) -> catalog.Product:
        return await catalog.get_product(pool, caller.tenant_id, product_id)

    @router.post("/flash-sales", status_code=201, summary="Put SKU stock on a flash sale")
    async def create_flash_sale(
        body: catalog.FlashSaleIn, key: IdempotencyKey, caller: Principal = admin
    ) -> catalog.FlashSale:
        return await once(
            pool, caller, key, fingerprint("flash-sales", body), catalog.FlashSale,
            lambda conn: catalog.create_flash_sale(conn, caller.tenant_id, body),
        )  # fmt: skip

    @router.get("/flash-sales/{sale_id}", summary="A flash sale and the units left")
    async def get_flash_sale(sale_id: uuid.UUID, caller: Principal = buyer) -> catalog.FlashSale:
        return await catalog.get_flash_sale(pool, caller.tenant_id, sale_id)

    @router.post(
        "/flash-sales/{sale_id}/reservations",
        status_code=201,
        summary="Reserve units of a flash sale; the order then waits for payment",
        responses={
            404: {"description": "no such sale for this tenant"},
            409: {"description": "sold_out, limit_exceeded or sale_not_active"},
            422: {"description": "invalid body, or idempotency_key_reused"},
        },
    )
    async def reserve(
        sale_id: uuid.UUID, body: ReservationIn, key: IdempotencyKey, caller: Principal = buyer
    ) -> Order:
        result = await engine.reserve(
            ReserveRequest(caller.tenant_id, sale_id, caller.subject, body.quantity, key)
        )
        return Order.model_validate(reserved_or_refused(result, sale_id), from_attributes=True)

    @router.get("/orders/{order_id}", summary="One of the caller's orders")
    async def get_order(order_id: uuid.UUID, caller: Principal = buyer) -> Order:
        return await orders.get_order(
            pool, caller.tenant_id, order_id, caller.subject, any_user=ADMIN in caller.scopes
        )

    @router.put("/rooms/{room_id}/lineup", summary="Set the products a live room will present")
    async def set_lineup(
        room_id: lineup.RoomId, body: lineup.LineupIn, caller: Principal = admin
    ) -> lineup.Lineup:
        return await lineup.set_lineup(pool, caller.tenant_id, room_id, body)

    @router.get("/rooms/{room_id}/lineup", summary="A live room's lineup and pinned product")
    async def get_lineup(room_id: lineup.RoomId, caller: Principal = buyer) -> lineup.Lineup:
        return await lineup.get_lineup(pool, caller.tenant_id, room_id)

    @router.put("/rooms/{room_id}/pin", summary="Put a lineup product on screen (announced)")
    async def pin(room_id: lineup.RoomId, body: PinIn, caller: Principal = admin) -> lineup.Lineup:
        return await lineup.pin(pool, caller.tenant_id, room_id, body.product_id)

    @router.post("/orders/{order_id}/payments", status_code=201, summary="Pay for an order")
    async def pay(order_id: uuid.UUID, caller: Principal = buyer) -> dict[str, object]:
        return await payments.start(caller.tenant_id, caller.subject, order_id)

    @router.post(
        "/payments/webhook",
        summary="The payment provider's webhook (signed with Livecart-Signature, no bearer token)",
    )
    async def webhook(request: Request) -> dict[str, str]:
        return await payments.settle(await request.body(), request.headers.get(SIGNATURE_HEADER))

    provider = payments.provider
    if isinstance(provider, SimulatedProvider):

        @router.post(
            "/simulated-provider/payments/{reference}/complete",
            summary="SIMULATED PROVIDER ONLY: the buyer pays; the provider calls the webhook",
        )
        async def simulate(
            reference: str, status: str = "succeeded", caller: Principal = buyer
        ) -> dict[str, object]:
            answer = await provider.complete(reference, status)
            return {"webhook_status": answer.status_code, "webhook": answer.json()}

    return router
