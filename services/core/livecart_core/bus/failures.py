"""Whose fault a handler's failure is: the world's (retry until it heals) or the event's
(retry a few times, then dead-letter it so the partition moves on)."""

from __future__ import annotations

import asyncpg
import grpc
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)
from google.protobuf.message import DecodeError


class Transient(Exception):
    """Raise from a handler when a dependency failed and the same event will succeed later
    (raise it ``from`` the cause); the bus retries it for as long as it takes."""


class PoisonEvent(Exception):
    """Raise from a handler for an event that can never be handled (it does not decode, it
    holds values the store refuses); the bus dead-letters it at once, with this message as
    the reason."""


# asyncpg's InterfaceError is also "the connection is closed"; the subclasses that are also
# ValueError (a query argument it cannot encode) and these are about the very input, and
# repeating it cannot help.
_ASYNCPG_INPUT_ERRORS = (
    ValueError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
    asyncpg.exceptions.UnsupportedServerFeatureError,
)
_ASYNCPG_TRANSIENT = (
    asyncpg.exceptions.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, starting up, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: disk full, too many connections
    asyncpg.exceptions.TransactionRollbackError,  # class 40: serialization failure, deadlock
    # "cannot switch to state 12; another operation (2) is in progress": a pooled connection
    # whose server died in the middle of an operation (seen in the chaos suite after a
    # Postgres SIGKILL); the pool discards it, and a fresh connection serves the retry.
    asyncpg.exceptions.InternalClientError,
)
# Kafka marks the errors a client may retry; timeouts are not marked but are the same thing.
_KAFKA_TIMEOUTS = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError)
_GRPC_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc``, or the exception it was raised from, says a dependency is away."""
    seen: BaseException | None = exc
    while seen is not None:
        if _transient(seen):
            return True
        seen = seen.__cause__
    return False


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, (Transient, OSError, TimeoutError, *_ASYNCPG_TRANSIENT, *_KAFKA_TIMEOUTS)):
        return True
    if isinstance(exc, asyncpg.exceptions.InterfaceError):
        return not isinstance(exc, _ASYNCPG_INPUT_ERRORS)
    if isinstance(exc, KafkaError):
        return bool(exc.retriable)
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code() in _GRPC_TRANSIENT
    return False


def is_poison(exc: BaseException) -> bool:
    """Whether ``exc`` proves the event can never be handled, so retrying it is pointless."""
    return isinstance(exc, PoisonEvent | DecodeError)
