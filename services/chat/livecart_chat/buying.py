"""The buy button over the viewer's chat WebSocket, forwarded to commerce in batches.

In a flash sale every viewer presses buy within the same second. Each already holds a chat
WebSocket whose token was checked when it joined, so a ``reserve`` message costs the edge a
frame, not an HTTP request with its headers and token. :class:`Checkout` gathers the node's
reservations into ``CommerceService.ReserveFlashSaleBatch`` calls, at most
``max_in_flight`` at a time: while those are out the next batch fills, so a quiet node sends
each reservation on its own at once and a busy one sends hundreds per call, without ever
waiting on a timer. Commerce checks every reservation with its buyer's own token, exactly as
its REST and gRPC routes do (the idempotency key, the per-user limit, the tenant check, no
oversell), and answers each on its own; the edge adds no trust of its own.

A call that fails (commerce down, the deadline passed) answers its buyers ``unavailable``:
they send the same idempotency key again, and commerce answers a repeated key with the order
it already made, so a retry never buys twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

from livecart.commerce.v1 import commerce_service_pb2 as pb
from livecart.commerce.v1 import commerce_service_pb2_grpc as pb_grpc
from livecart_chat.protocol import Refused, Reserve
from livecart_core.rpc import create_channel

log = logging.getLogger("livecart.chat.buying")

# What commerce takes in one call (grpc_api.MAX_BATCH).
MAX_BATCH = 512

RESERVATIONS = Counter(
    "livecart_chat_reservations_total",
    "Buy-button reservations forwarded to commerce, by outcome (reserved or the refusal code)",
    ["outcome"],
)
BATCH_SIZE = Histogram(
    "livecart_chat_reservation_batch_size",
    "Reservations per ReserveFlashSaleBatch call",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)


@dataclass(frozen=True, slots=True)
class _Waiting:
    reservation: pb.BuyerReservation
    answer: asyncio.Future[dict[str, Any]]


class Checkout:
    """Reserves for viewers through commerce, many per call."""

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 2.0,
        max_batch: int = 256,
        max_in_flight: int = 4,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_batch = min(max_batch, MAX_BATCH)
        self.max_in_flight = max_in_flight
        self._channel = create_channel(target, deadline_s=timeout_s)
        self._stub = pb_grpc.CommerceServiceStub(self._channel)
        self._queue: list[_Waiting] = []
        self._calls: set[asyncio.Task[None]] = set()

    async def reserve(self, token: str, command: Reserve) -> dict[str, Any]:
        """The order reserved for the token's buyer (as the ack shows it), or Refused with
        commerce's code (``sold_out``, ``limit_exceeded``, ...) or ``unavailable``."""
        waiting = _Waiting(
            pb.BuyerReservation(
                token=token,
                request=pb.ReserveFlashSaleRequest(
                    flash_sale_id=command.flash_sale_id,
                    quantity=command.quantity,
                    idempotency_key=command.idempotency_key,
                ),
            ),
            asyncio.get_running_loop().create_future(),
        )
        self._queue.append(waiting)
        self._send()
        return await waiting.answer

    def _send(self) -> None:
        while self._queue and len(self._calls) < self.max_in_flight:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            call = asyncio.create_task(self._call(batch))
            self._calls.add(call)
            call.add_done_callback(self._ended)

    def _ended(self, call: asyncio.Task[None]) -> None:
        self._calls.discard(call)
        self._send()

    async def _call(self, batch: list[_Waiting]) -> None:
        BATCH_SIZE.observe(len(batch))
        try:
            answer = await self._stub.ReserveFlashSaleBatch(
                pb.ReserveFlashSaleBatchRequest(reservations=[w.reservation for w in batch]),
                timeout=self.timeout_s,
            )
            if len(answer.results) != len(batch):
                raise ValueError(f"{len(answer.results)} results for {len(batch)} reservations")
        except asyncio.CancelledError:
            _refuse(batch, Refused("unavailable", "this chat node is stopping; retry"))
            raise
        except (grpc.aio.AioRpcError, ValueError) as exc:
            why = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            log.warning("reservations not forwarded", extra={"why": why, "count": len(batch)})
            _refuse(
                batch,
                Refused(
                    "unavailable",
                    "the shop cannot take orders right now; send the same idempotency_key again",
                ),
            )
            return
        for waiting, result in zip(batch, answer.results, strict=True):
            if waiting.answer.done():
                continue
            if result.HasField("order"):
                RESERVATIONS.labels("reserved").inc()
                waiting.answer.set_result(_order(waiting.reservation.request, result.order))
            else:
                RESERVATIONS.labels(result.refusal.code).inc()
                waiting.answer.set_exception(Refused(result.refusal.code, result.refusal.message))

    async def close(self) -> None:
        for call in list(self._calls):
            call.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        _refuse(self._queue, Refused("unavailable", "this chat node is stopping; retry"))
        self._queue = []
        await self._channel.close()


def _refuse(batch: list[_Waiting], refused: Refused) -> None:
    for waiting in batch:
        if not waiting.answer.done():
            RESERVATIONS.labels(refused.code).inc()
            waiting.answer.set_exception(refused)


def _order(
    request: pb.ReserveFlashSaleRequest, order: pb.ReserveFlashSaleResponse
) -> dict[str, Any]:
    """The order as the ack carries it: the REST API's field names."""
    return {
        "id": order.order_id,
        "flash_sale_id": request.flash_sale_id,
        "quantity": request.quantity,
        "unit_price_minor": order.unit_price_minor,
        "currency": order.currency,
        "expires_at": order.expires_at.ToDatetime().isoformat() + "Z",
        "buyer_id": order.buyer_id,
    }
