"""Commerce over gRPC (``livecart.commerce.v1.CommerceService``), for services and apps.

Same engine, same refusals as the REST API: typed errors raised here become status codes in
the runtime's server interceptor.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from livecart.commerce.v1 import commerce_service_pb2 as pb
from livecart.commerce.v1 import commerce_service_pb2_grpc as pb_grpc
from livecart_commerce import catalog, lineup
from livecart_commerce.api import BUY, reserved_or_refused
from livecart_commerce.flash_sale import (
    MAX_UNITS_PER_RESERVATION,
    FlashSaleEngine,
    ReserveRequest,
    ReserveResult,
)
from livecart_core.auth import Principal, TokenAuthority, grpc_principal
from livecart_core.bus.failures import is_transient
from livecart_core.errors import InvalidArgument, NotFound, ServiceError, Unavailable

# Holds a reservation's place in the answer while the engine settles it.
_SETTLING = pb.ReservationResult()
# The most reservations one ReserveFlashSaleBatch call carries.
MAX_BATCH = 512
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CommerceService"].full_name


def _uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{field} must be a UUID, got {value!r}") from None


def _timestamp(value: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _reservation(caller: Principal, request: pb.ReserveFlashSaleRequest) -> ReserveRequest:
    """The engine's request for what ``caller`` asks, or InvalidArgument."""
    sale_id = _uuid(request.flash_sale_id, "flash_sale_id")
    if not 1 <= request.quantity <= MAX_UNITS_PER_RESERVATION:
        raise InvalidArgument(f"quantity must be between 1 and {MAX_UNITS_PER_RESERVATION}")
    if not 1 <= len(request.idempotency_key) <= 100:
        raise InvalidArgument("idempotency_key must be 1 to 100 characters")
    return ReserveRequest(
        caller.tenant_id, sale_id, caller.subject, request.quantity, request.idempotency_key
    )


def _reserved(
    request: ReserveRequest,
    result: ReserveResult,
    stamps: dict[datetime, Timestamp] | None = None,
) -> pb.ReserveFlashSaleResponse:
    """The answer for a reservation's result, or its typed refusal raised. ``stamps`` keeps
    the Timestamps made so far (a batch's orders mostly share one payment deadline)."""
    order = reserved_or_refused(result, request.flash_sale_id)
    stamp = None if stamps is None else stamps.get(order.expires_at)
    if stamp is None:
        stamp = _timestamp(order.expires_at)
        if stamps is not None:
            stamps[order.expires_at] = stamp
    return pb.ReserveFlashSaleResponse(
        order_id=str(order.id),
        unit_price_minor=order.unit_price_minor,
        currency=order.currency,
        expires_at=stamp,
        buyer_id=order.buyer_id,
    )


def _refusal(refused: ServiceError) -> pb.ReservationResult:
    return pb.ReservationResult(
        refusal=pb.Refusal(code=refused.code, message=str(refused), http_status=refused.http_status)
    )


class CommerceServicer(pb_grpc.CommerceServiceServicer):
    def __init__(self, pool: asyncpg.Pool, engine: FlashSaleEngine, tokens: TokenAuthority):
        self.pool = pool
        self.engine = engine
        self.tokens = tokens

    async def ReserveFlashSale(
        self, request: pb.ReserveFlashSaleRequest, context: Any
    ) -> pb.ReserveFlashSaleResponse:
        caller = grpc_principal(self.tokens, context.invocation_metadata(), BUY)
        reservation = _reservation(caller, request)
        return _reserved(reservation, await self.engine.reserve(reservation))

    async def ReserveFlashSaleBatch(
        self, request: pb.ReserveFlashSaleBatchRequest, context: Any
    ) -> pb.ReserveFlashSaleBatchResponse:
        """Many buyers' reservations in one call (chat forwards its viewers' buy button so):
        each is checked, settled and answered on its own, as ReserveFlashSale would; they join
        the engine's group commit together, with no task of their own."""
        if len(request.reservations) > MAX_BATCH:
            raise InvalidArgument(f"at most {MAX_BATCH} reservations in one batch")
        results: list[pb.ReservationResult] = []
        accepted: list[tuple[int, ReserveRequest]] = []
        for item in request.reservations:
            try:
                caller = self.tokens.verify(item.token)
                caller.require(BUY)
                accepted.append((len(results), _reservation(caller, item.request)))
                results.append(_SETTLING)
            except ServiceError as refused:
                results.append(_refusal(refused))
        settled = await self.engine.reserve_many([r for _, r in accepted])
        stamps: dict[datetime, Timestamp] = {}
        for (at, reservation), outcome in zip(accepted, settled, strict=True):
            if isinstance(outcome, BaseException):
                if not is_transient(outcome):
                    raise outcome
                results[at] = _refusal(Unavailable("commerce cannot reach its database; retry"))
                continue
            try:
                results[at] = pb.ReservationResult(order=_reserved(reservation, outcome, stamps))
            except ServiceError as refused:
                results[at] = _refusal(refused)
        return pb.ReserveFlashSaleBatchResponse(results=results)

    async def GetFlashSale(
        self, request: pb.GetFlashSaleRequest, context: Any
    ) -> pb.GetFlashSaleResponse:
        caller = grpc_principal(self.tokens, context.invocation_metadata(), BUY)
        sale = await catalog.get_flash_sale(
            self.pool, caller.tenant_id, _uuid(request.flash_sale_id, "flash_sale_id")
        )
        return pb.GetFlashSaleResponse(
            flash_sale=pb.FlashSale(
                id=str(sale.id),
                sku_id=str(sale.sku_id),
                sale_price_minor=sale.sale_price_minor,
                currency=sale.currency,
                quantity=sale.quantity,
                remaining=sale.remaining,
                per_user_limit=sale.per_user_limit,
                starts_at=_timestamp(sale.starts_at),
                ends_at=_timestamp(sale.ends_at),
                payment_timeout_s=sale.payment_timeout_s or 0,
            )
        )

    async def GetProduct(
        self, request: pb.GetProductRequest, context: Any
    ) -> pb.GetProductResponse:
        caller = grpc_principal(self.tokens, context.invocation_metadata(), BUY)
        product = await catalog.get_product(
            self.pool, caller.tenant_id, _uuid(request.product_id, "product_id")
        )
        return pb.GetProductResponse(product=_product(product))

    async def GetPinnedProduct(
        self, request: pb.GetPinnedProductRequest, context: Any
    ) -> pb.GetPinnedProductResponse:
        caller = grpc_principal(
            self.tokens, context.invocation_metadata(), BUY, room=request.room_id
        )
        pin = await lineup.pinned(self.pool, caller.tenant_id, request.room_id)
        if pin is None:
            return pb.GetPinnedProductResponse(pinned=False)
        product_id, pinned_at = pin
        try:
            product = await catalog.get_product(self.pool, caller.tenant_id, product_id)
        except NotFound:
            return pb.GetPinnedProductResponse(pinned=False)
        return pb.GetPinnedProductResponse(
            pinned=True, product=_product(product), pinned_at=_timestamp(pinned_at)
        )


def _product(product: catalog.Product) -> pb.Product:
    return pb.Product(
        id=str(product.id),
        title=product.title,
        description=product.description,
        images=[str(url) for url in product.images],
        skus=[
            pb.Sku(
                id=str(sku.id),
                price_minor=sku.price_minor,
                currency=sku.currency,
                stock=sku.stock,
                attributes=sku.attributes,
            )
            for sku in product.skus
        ],
        shipping=pb.Shipping(**product.shipping.model_dump()) if product.shipping else None,
        returns=pb.Returns(**product.returns.model_dump()) if product.returns else None,
        faq=[pb.Faq(question=f.question, answer=f.answer) for f in product.faq],
    )
