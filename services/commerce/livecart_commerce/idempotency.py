"""``Idempotency-Key`` for writes: the same key and request return the first response.

The key row is inserted in the same transaction as the write it guards, so the two commit or
vanish together: a retry after a crash either finds the stored response or runs the write for
the first time. A concurrent request with the same key waits on the row's insert and then
reads the committed response. The same key with a different request is refused (422).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import asyncpg
from fastapi import Header
from pydantic import BaseModel

from livecart_commerce.errors import IdempotencyKeyReused
from livecart_core.auth import Principal

M = TypeVar("M", bound=BaseModel)

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        description="the same key with the same body returns the same result",
    ),
]


def fingerprint(route: str, body: BaseModel) -> str:
    return hashlib.sha256(f"{route}\n{body.model_dump_json()}".encode()).hexdigest()


async def once(
    pool: asyncpg.Pool,
    caller: Principal,
    key: str,
    request_hash: str,
    model: type[M],
    write: Callable[[asyncpg.Connection], Awaitable[M]],
) -> M:
    """Run ``write`` in a transaction keyed by (tenant, caller, key), or replay its result."""
    async with pool.acquire() as conn, conn.transaction():
        fresh = await conn.fetchval(
            "insert into idempotency_keys (tenant_id, subject, key, request_hash)"
            " values ($1, $2, $3, $4) on conflict do nothing returning true",
            caller.tenant_id,
            caller.subject,
            key,
            request_hash,
        )
        if not fresh:
            stored = await conn.fetchrow(
                "select request_hash, response from idempotency_keys"
                " where tenant_id = $1 and subject = $2 and key = $3",
                caller.tenant_id,
                caller.subject,
                key,
            )
            if stored["request_hash"] != request_hash:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was already used with a different request"
                )
            return model.model_validate(json.loads(stored["response"]))
        result = await write(conn)
        await conn.execute(
            "update idempotency_keys set response = $4::jsonb"
            " where tenant_id = $1 and subject = $2 and key = $3",
            caller.tenant_id,
            caller.subject,
            key,
            result.model_dump_json(),
        )
        return result
