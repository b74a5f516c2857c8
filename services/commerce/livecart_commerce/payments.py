"""Paying for orders through a provider, settled by the provider's signed webhook.

``PaymentProvider`` is what a real PSP adapter implements. ``SimulatedProvider`` is the one
Livecart ships: it is named as such, takes no money, and completes a payment when asked by
POSTing a signed webhook to the commerce service exactly as a PSP would, so the whole flow
(reserve → pay → paid, or → expired → refunded) runs end to end without a real provider.

The webhook is the only thing that marks an order paid. Its update is conditional on the order
still being reserved, so a payment racing the expiry sweep settles one way: paid, or expired
with the payment refunded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from typing import Protocol

import asyncpg
import httpx

from livecart.events.v1.commerce_pb2 import OrderPaid, OrderRefunded
from livecart_commerce import orders
from livecart_commerce.events import append, event
from livecart_core.db import Executor, connection
from livecart_core.errors import FailedPrecondition, InvalidArgument, NotFound, Unauthenticated

SIGNATURE_HEADER = "Livecart-Signature"


class OrderNotPayable(FailedPrecondition):
    code = "order_not_payable"


class OrderNotRefundable(FailedPrecondition):
    code = "order_not_refundable"


class PaymentProvider(Protocol):
    """A payment service provider adapter."""

    name: str

    async def create_payment(self, order_id: uuid.UUID, amount_minor: int, currency: str) -> str:
        """Register a payment with the provider; returns the provider's reference."""
        ...

    async def refund(self, reference: str, amount_minor: int, currency: str) -> None:
        """Refund a settled payment in full; must be idempotent per reference (a retry after a
        crash calls it again). Raises when the provider refuses."""
        ...


def sign(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


class SimulatedProvider:
    """A stand-in PSP for development and tests: no money moves. Its "pay" route completes a
    payment only for the order's buyer or their merchant (``Payments.payer_check``)."""

    name = "simulated"

    def __init__(self, webhook_url: Callable[[], str], webhook_key: bytes) -> None:
        self.webhook_url = webhook_url
        self.webhook_key = webhook_key
        self.refunded: dict[str, tuple[int, str]] = {}

    async def create_payment(self, order_id: uuid.UUID, amount_minor: int, currency: str) -> str:
        return f"sim_{uuid.uuid4().hex}"

    async def refund(self, reference: str, amount_minor: int, currency: str) -> None:
        self.refunded[reference] = (amount_minor, currency)

    async def complete(self, reference: str, status: str = "succeeded") -> httpx.Response:
        """What the PSP does when the buyer pays: POST the signed webhook."""
        body = json.dumps({"reference": reference, "status": status}).encode()
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(
                self.webhook_url(),
                content=body,
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(self.webhook_key, body),
                },
            )


class Payments:
    def __init__(self, pool: asyncpg.Pool, provider: PaymentProvider, webhook_key: bytes) -> None:
        self.pool = pool
        self.provider = provider
        self.webhook_key = webhook_key

    async def start(self, tenant: str, user: str, order_id: uuid.UUID) -> dict[str, object]:
        """Open a payment for the caller's reserved order (again: the same pending payment)."""
        async with self.pool.acquire() as conn, conn.transaction():
            order = await conn.fetchrow(
                "select coalesce(total_minor, quantity * unit_price_minor) as amount, currency,"
                " state from orders"
                " where id = $1 and tenant_id = $2 and user_id = $3 for update",
                order_id,
                tenant,
                user,
            )
            if order is None:
                raise NotFound(f"order {order_id} not found")
            if order["state"] != "reserved":
                raise OrderNotPayable(f"order {order_id} is {order['state']}")
            pending = await conn.fetchrow(
                "select provider, reference from payments"
                " where order_id = $1 and state = 'pending'",
                order_id,
            )
            if pending is None:
                reference = await self.provider.create_payment(
                    order_id, order["amount"], order["currency"]
                )
                await conn.execute(
                    "insert into payments (tenant_id, order_id, provider, reference, amount_minor,"
                    " currency, state) values ($1, $2, $3, $4, $5, $6, 'pending')",
                    tenant, order_id, self.provider.name, reference, order["amount"],
                    order["currency"],
                )  # fmt: skip
                pending = {"provider": self.provider.name, "reference": reference}
        return {
            "order_id": str(order_id),
            "provider": pending["provider"],
            "reference": pending["reference"],
            "amount_minor": order["amount"],
            "currency": order["currency"],
        }

    async def payer_check(
        self, tenant: str, user: str, reference: str, *, any_user: bool = False
    ) -> None:
        """NotFound unless ``reference`` is a payment of ``user``'s order in ``tenant`` (any
        buyer's with ``any_user``): what a PSP's checkout page knows of who may pay."""
        async with self.pool.acquire() as conn:
            known = await conn.fetchval(
                "select true from payments p join orders o on o.id = p.order_id"
                " where p.reference = $1 and p.tenant_id = $2 and (o.user_id = $3 or $4)",
                reference,
                tenant,
                user,
                any_user,
            )
        if not known:
            raise NotFound(f"payment {reference} not found")

    async def settle(self, body: bytes, signature: str | None) -> dict[str, str]:
        """Handle the provider's webhook: verify it, then mark the order paid or refund."""
        if signature is None or not hmac.compare_digest(sign(self.webhook_key, body), signature):
            raise Unauthenticated(f"missing or wrong {SIGNATURE_HEADER}")
        try:
            message = json.loads(body)
            reference, status = str(message["reference"]), str(message["status"])
        except (ValueError, KeyError, TypeError):
            raise InvalidArgument("webhook body must be JSON with reference and status") from None
        async with self.pool.acquire() as conn, conn.transaction():
            payment = await conn.fetchrow(
                "select tenant_id, order_id, amount_minor, currency, state from payments"
                " where reference = $1 for update",
                reference,
            )
            if payment is None:
                raise NotFound(f"payment {reference} not found")
            if payment["state"] != "pending":
                return {"reference": reference, "state": payment["state"]}  # a repeated webhook
            if status != "succeeded":
                await self._set(conn, reference, "failed")
                return {"reference": reference, "state": "failed"}
            paid = await conn.fetchrow(
                "update orders set state = 'paid' where id = $1 and state = 'reserved'"
                " returning user_id, now() as now",
                payment["order_id"],
            )
            if paid is None:
                # The order expired or was cancelled (its stock went back on sale) before the
                # money came in: give the money back.
                await self.provider.refund(reference, payment["amount_minor"], payment["currency"])
                await self._set(conn, reference, "refunded")
                return {"reference": reference, "state": "refunded"}
            await self._set(conn, reference, "succeeded")
            paid_event = event(
                payment["tenant_id"],
                paid["now"],
                order_paid=OrderPaid(
                    order_id=str(payment["order_id"]),
                    user_id=paid["user_id"],
                    amount_minor=payment["amount_minor"],
                    currency=payment["currency"],
                    provider_reference=reference,
                ),
            )
            await append(conn, [paid_event])
            return {"reference": reference, "state": "succeeded"}

    async def refund(
        self, db: Executor, tenant: str, order_id: uuid.UUID, merchant: str, *, restock: bool
    ) -> orders.Order:
        """Refund a paid order in full through its provider (the merchant's call); with
        ``restock`` its units go back into the SKUs' stock. Refunding again changes nothing."""
        async with connection(db) as conn, conn.transaction():
            order = await conn.fetchrow(
                "select id, user_id, state, flash_sale_id, now() as now,"
                " coalesce(total_minor, quantity * unit_price_minor) as amount, currency"
                " from orders where id = $1 and tenant_id = $2 for update",
                order_id,
                tenant,
            )
            if order is None:
                raise NotFound(f"order {order_id} not found")
            if order["state"] not in ("paid", "refunded"):
                hint = (
                    "; an unpaid order is cancelled instead" if order["state"] == "reserved" else ""
                )
                raise OrderNotRefundable(f"order {order_id} is {order['state']}{hint}")
            if order["state"] == "paid":
                payment = await conn.fetchrow(
                    "select reference from payments where order_id = $1 and state = 'succeeded'"
                    " for update",
                    order_id,
                )
                reference = ""
                if payment is not None:  # a lottery prize was never paid for
                    reference = payment["reference"]
                    await self.provider.refund(reference, order["amount"], order["currency"])
                    await self._set(conn, reference, "refunded")
                await conn.execute("update orders set state = 'refunded' where id = $1", order_id)
                if restock:
                    await orders.release_stock(conn, [order], to_sales=False)
                refunded = OrderRefunded(
                    order_id=str(order_id),
                    user_id=order["user_id"],
                    amount_minor=order["amount"],
                    currency=order["currency"],
                    provider_reference=reference,
                    restocked=restock,
                )
                await append(conn, [event(tenant, order["now"], order_refunded=refunded)])
            return await orders.get_order(conn, tenant, order_id, merchant, any_user=True)

    @staticmethod
    async def _set(conn: asyncpg.Connection, reference: str, state: str) -> None:
        await conn.execute(
            "update payments set state = $2, updated_at = now() where reference = $1",
            reference,
            state,
        )
