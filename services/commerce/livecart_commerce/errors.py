"""Why a commerce request is refused, as the runtime's error types (HTTP status + gRPC code)."""

from __future__ import annotations

from typing import Any

import grpc
from pydantic import BaseModel, Field

from livecart_core.errors import FailedPrecondition, InvalidArgument


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


class ErrorBody(BaseModel):
    """Every refusal's JSON body, as the runtime writes it."""

    error: str = Field(description="a stable code, e.g. not_found, sold_out, invalid_argument")
    message: str = Field(description="what went wrong, for a person")
    detail: list[dict[str, Any]] | None = Field(
        default=None, description="for a request that failed validation: the fields at fault"
    )


# What any route can answer: a body that is not JSON at all, and the bearer token's refusals.
_ANY_ROUTE: dict[int, str] = {
    400: "a malformed request, e.g. a body that is not JSON",
    401: "missing, invalid or expired token",
    403: "the token lacks the scope, or is bound to another room",
}


def refusals(**by_status: str) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: its refusals (``_404="..."``) and those of any route (400,
    401, 403), each with the error body, so the OpenAPI document lists what it answers."""
    described = dict(_ANY_ROUTE)
    for key, text in by_status.items():
        status = int(key.lstrip("_"))
        described[status] = f"{text}; or {described[status]}" if status == 400 else text
    return {
        status: {"model": ErrorBody, "description": text}
        for status, text in sorted(described.items())
    }
