"""Error types: start-up failures (one clear line, exit 2) and request failures (one type per
outcome, mapped to an HTTP status and a gRPC status by the runtime, never a 500)."""

from __future__ import annotations

from typing import ClassVar

import grpc


class StartupError(Exception):
    """A service cannot start; the message names the setting or dependency at fault."""


class ConfigError(StartupError):
    """A setting is malformed or unsafe."""


class ServiceError(Exception):
    """A request the service refuses; HTTP handlers and gRPC servicers raise a subclass."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    grpc_status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError):
    code, http_status, grpc_status = "invalid_argument", 400, grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(ServiceError):
    code, http_status, grpc_status = "unauthenticated", 401, grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code, http_status, grpc_status = "permission_denied", 403, grpc.StatusCode.PERMISSION_DENIED


class NotFound(ServiceError):
    code, http_status, grpc_status = "not_found", 404, grpc.StatusCode.NOT_FOUND


class Conflict(ServiceError):
    code, http_status, grpc_status = "conflict", 409, grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code, http_status, grpc_status = "failed_precondition", 409, grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    code, http_status, grpc_status = "resource_exhausted", 429, grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    """A dependency (database, bus) is down: retry later. The runtime answers 503 with
    ``Retry-After`` (gRPC UNAVAILABLE) for this and for any transient dependency failure."""

    code, http_status, grpc_status = "unavailable", 503, grpc.StatusCode.UNAVAILABLE
    retry_after_s: ClassVar[int] = 1
