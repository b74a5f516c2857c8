"""Postgres through an asyncpg pool, with versioned SQL migrations per service schema.

Each service owns one schema named after it; its migrations are ``NNNN_name.sql`` files in its
package's ``migrations/`` folder, applied in order, once, under an advisory lock so replicas
starting together do not race. Connections use ``search_path = <schema>, public``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from importlib.abc import Traversable
from typing import TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from livecart_core.errors import StartupError

log = logging.getLogger("livecart.db")
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection


@contextlib.asynccontextmanager
async def connection(db: Executor) -> AsyncIterator[asyncpg.Connection]:
    """A connection from ``db``: a pool lends one, a connection is itself (so a function can
    join its caller's transaction, where its own ``transaction()`` becomes a savepoint)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


async def _no_session_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's per-release ``RESET ALL; UNLISTEN *; ...`` round trip.

    Services keep no session state on pooled connections (no LISTEN, session advisory locks,
    cursors or session SETs; transaction-scoped ones end with the transaction), and asyncpg still
    rolls back an open transaction before this runs. The round trip cost ~6 % of the commerce
    API's CPU under load.
    """


class Database:
    """A service's connection pool to its own schema."""

    def __init__(
        self, url: str, schema: str, *, pool_size: int = 10, connect_timeout_s: float = 5.0
    ) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
            raise ValueError(f"schema name {schema!r} is not a plain identifier")
        self.url = url
        self.schema = schema
        self.pool_size = pool_size
        self.connect_timeout_s = connect_timeout_s
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("Database.connect() first")
        return self._pool

    async def connect(self) -> None:
        """Open the pool; raise StartupError naming LIVECART_DATABASE_URL when it cannot."""
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout_s,
                server_settings={"search_path": f"{self.schema},public"},
                reset=_no_session_reset,
            )
        except (OSError, asyncpg.PostgresError, TimeoutError, ValueError) as exc:
            raise StartupError(
                f"LIVECART_DATABASE_URL={redact(self.url)!r}: cannot connect to Postgres ({exc})"
            ) from None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def check(self) -> None:
        """Raise unless a round trip to the server succeeds within the connect timeout."""
        async with asyncio.timeout(self.connect_timeout_s):
            async with self.pool.acquire() as conn:
                await conn.fetchval("select 1")

    async def migrate(self, migrations: Traversable | None) -> list[str]:
        """Apply the pending migrations of ``migrations``; returns the versions applied."""
        files = sorted(
            (f for f in (migrations.iterdir() if migrations else []) if _MIGRATION.match(f.name)),
            key=lambda f: f.name,
        )
        applied: list[str] = []
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("select pg_advisory_xact_lock(hashtext($1))", self.schema)
            await conn.execute(f'create schema if not exists "{self.schema}"')
            await conn.execute(
                f'create table if not exists "{self.schema}".schema_migrations ('
                " version text primary key, name text not null,"
                " applied_at timestamptz not null default now())"
            )
            done = {
                r["version"]
                for r in await conn.fetch(f'select version from "{self.schema}".schema_migrations')
            }
            for f in files:
                version = f.name[:4]
                if version in done:
                    continue
                await conn.execute(f'set local search_path = "{self.schema}", public')
                await conn.execute(f.read_text())
                await conn.execute(
                    f'insert into "{self.schema}".schema_migrations (version, name)'
                    " values ($1, $2)",
                    version,
                    f.name,
                )
                applied.append(version)
                log.info("migration applied", extra={"schema": self.schema, "file": f.name})
        return applied
