"""The tenants' blocked-word lists: kept in Postgres, replaced whole over HTTP by moderators, and
polled by every chat node into its :class:`~livecart_chat.moderation.KeywordFilter`, so a change
applies everywhere within about a second, without a restart.

Versions come from one sequence and writers serialise on one advisory lock, so versions become
visible in the order they were taken and a poller can ask only for ``version > last seen``.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import asyncpg
import grpc
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, StringConstraints

from livecart_chat.moderation import KeywordFilter, disallowed_character, fold
from livecart_core.auth import Principal, TokenAuthority, require
from livecart_core.errors import InvalidArgument, PermissionDenied

log = logging.getLogger("livecart.chat.blocked_words")

MODERATE = "chat:moderate"
MAX_WORDS = 5000
MAX_WORD_CHARS = 50
_WRITERS_LOCK = "chat.blocked_word_lists"

Word = Annotated[str, StringConstraints(min_length=1, max_length=MAX_WORD_CHARS)]


class InvalidWord(InvalidArgument):
    code, http_status, grpc_status = "invalid_word", 422, grpc.StatusCode.INVALID_ARGUMENT


class BlockedWordsIn(BaseModel):
    words: list[Word] = Field(max_length=MAX_WORDS)


class BlockedWords(BaseModel):
    words: list[str] = Field(description="as written, deduplicated by their matching form")
    version: int = Field(description="rises with every change; 0 before the first")
    updated_at: datetime | None


def distinct_words(words: Sequence[str]) -> list[str]:
    """``words`` trimmed, NFC, without those whose matching form (see ``fold``) came before;
    InvalidWord for a word that has no letter or digit or holds a disallowed character."""
    kept: dict[str, str] = {}
    for given in words:
        word = unicodedata.normalize("NFC", given).strip()
        bad = disallowed_character(word)
        if bad is not None:
            raise InvalidWord(f"blocked word {word!r} contains {bad}")
        key = fold(word)
        if not key:
            raise InvalidWord(
                f"blocked word {word!r} has no letter or digit (spaces, punctuation and emoji"
                " are ignored when matching)"
            )
        kept.setdefault(key, word)
    return list(kept.values())


async def get_blocked_words(pool: asyncpg.Pool, tenant: str) -> BlockedWords:
    row = await pool.fetchrow(
        "select words, version, updated_at from blocked_word_lists where tenant_id = $1", tenant
    )
    if row is None:
        return BlockedWords(words=[], version=0, updated_at=None)
    return BlockedWords(words=row["words"], version=row["version"], updated_at=row["updated_at"])


async def set_blocked_words(
    pool: asyncpg.Pool, tenant: str, by: str, words: Sequence[str]
) -> BlockedWords:
    """Replace the tenant's list (see ``distinct_words``); every chat node picks it up."""
    distinct = distinct_words(words)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("select pg_advisory_xact_lock(hashtext($1))", _WRITERS_LOCK)
        row = await conn.fetchrow(
            "insert into blocked_word_lists (tenant_id, words, version, updated_by)"
            " values ($1, $2, nextval('blocked_word_list_versions'), $3)"
            " on conflict (tenant_id) do update set words = excluded.words,"
            " version = excluded.version, updated_by = excluded.updated_by, updated_at = now()"
            " returning version, updated_at",
            tenant,
            distinct,
            by,
        )
    return BlockedWords(words=distinct, version=row["version"], updated_at=row["updated_at"])


class KeywordStore:
    """Keeps a :class:`KeywordFilter` current with every tenant's list in Postgres.

    Await ``refresh()`` once at start-up (the node then filters from its first comment), then
    run ``run()`` for the life of the node. Each poll is one indexed query that returns only the
    lists changed since the last; their automatons are built off the event loop.
    """

    def __init__(
        self, pool: asyncpg.Pool, keywords: KeywordFilter, *, interval_s: float = 1.0
    ) -> None:
        self._pool = pool
        self._keywords = keywords
        self.interval_s = interval_s
        self._seen = 0
        self._failing = False

    async def refresh(self) -> int:
        """Load the lists changed since the last refresh; returns how many tenants changed."""
        rows = await self._pool.fetch(
            "select tenant_id, words, version from blocked_word_lists where version > $1"
            " order by version",
            self._seen,
        )
        if rows:
            await asyncio.to_thread(self._install, rows)
            self._seen = rows[-1]["version"]
        return len(rows)

    def _install(self, rows: list[asyncpg.Record]) -> None:
        for row in rows:
            self._keywords.set_words(row["tenant_id"], row["words"])

    async def run(self) -> None:
        """Refresh every ``interval_s``; while Postgres cannot be reached the lists stay as
        they are (filtering goes on with the last known words) and polling goes on."""
        while True:
            try:
                await self.refresh()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                if not self._failing:
                    log.warning("cannot poll blocked words; keeping the last lists: %s", exc)
                self._failing = True
            else:
                if self._failing:
                    log.info("polling blocked words again")
                self._failing = False
            await asyncio.sleep(self.interval_s)


def moderation_routes(pool: asyncpg.Pool, tokens: TokenAuthority) -> APIRouter:
    """``/v1/moderation/blocked-words``: the caller's tenant's list (scope ``chat:moderate``)."""
    router = APIRouter(prefix="/v1/moderation", tags=["moderation"])
    moderator = Depends(require(tokens, MODERATE))

    @router.get("/blocked-words", summary="The shop's blocked words")
    async def get_words(caller: Principal = moderator) -> BlockedWords:
        return await get_blocked_words(pool, caller.tenant_id)

    @router.put(
        "/blocked-words",
        summary="Replace the shop's blocked words (every chat node applies them within seconds)",
        responses={
            403: {"description": "no chat:moderate, or a token for one room only"},
            422: {"description": "a word too long, with no letter or digit, or too many words"},
        },
    )
    async def put_words(body: BlockedWordsIn, caller: Principal = moderator) -> BlockedWords:
        if caller.room is not None:
            raise PermissionDenied(
                f"this token moderates room {caller.room!r} only; the blocked words are the shop's"
            )
        return await set_blocked_words(pool, caller.tenant_id, caller.subject, body.words)

    return router
