"""Why a commerce request is refused, as the runtime's error types (HTTP status + gRPC code)."""

from __future__ import annotations

import grpc

from livecart_core.errors import FailedPrecondition, InvalidArgument
from livecart_core.openapi import refusals


class SoldOut(FailedPrecondition):
    code = "sold_out"


class LimitExceeded(FailedPrecondition):
    code = "limit_exceeded"


class SaleNotActive(FailedPrecondition):
    code = "sale_not_active"


class NotEnoughStock(FailedPrecondition):
    code = "not_enough_stock"


class IdempotencyKeyReused(InvalidArgument):
    code, http_status, grpc_status = (
        "idempotency_key_reused",
        422,
        grpc.StatusCode.INVALID_ARGUMENT,
    )


# Routes declare their refusals with the runtime's error body (livecart_core.openapi).
__all__ = ["refusals"]
