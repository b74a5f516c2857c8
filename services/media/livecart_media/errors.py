"""Refusals of the media path (WHIP, WHEP, pipes), beside the runtime's (livecart_core.errors)."""

from __future__ import annotations

import grpc

from livecart_core.errors import ServiceError


class UnsupportedCodecs(ServiceError):
    """An offer with no codec Livecart can forward; the message names the ones it can."""

    code, http_status, grpc_status = "unsupported_codecs", 406, grpc.StatusCode.INVALID_ARGUMENT


class PayloadTooLarge(ServiceError):
    code, http_status, grpc_status = "payload_too_large", 413, grpc.StatusCode.INVALID_ARGUMENT


class OverCapacity(ServiceError):
    """This process serves as many peers as it may; try again after `retry_after_s`."""

    code, http_status, grpc_status = "over_capacity", 503, grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(OverCapacity):
    """A service the request needs (the relay) cannot be reached; try again shortly."""

    code = "unavailable"
