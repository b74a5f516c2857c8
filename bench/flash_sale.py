"""Flash-sale inventory engine: group commit vs the naive row lock per order, on real Postgres.

10,000 simulated buyers (one unit each, one per user) hit one sale of 10,000 units, all at
once, from 1 and from 4 engine processes (each its own OS process with its own pool). The same
engine runs in two modes: ``coalesce=True`` settles concurrent reservations for a sale in one
transaction every few milliseconds; ``coalesce=False`` is the naive design, one
``SELECT … FOR UPDATE`` transaction per order. After every run the database is checked: units
sold never exceed the sale (``oversold`` counts the excess, so 0 is measured, not assumed).

    uv run python bench/flash_sale.py [--buyers 10000] [--pool 8]

The API layer (HTTP/gRPC with a separate load generator) is not measured yet: commerce has no
public API so far.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from livecart_commerce.app import SERVICE
from livecart_commerce.flash_sale import FlashSaleEngine, Outcome, ReserveRequest
from livecart_core.db import Database
from livecart_core.localinfra.postgres import EmbeddedPostgres

TENANT = "bench"


async def worker(url: str, sale: str, coalesce: bool, first: int, count: int, pool: int) -> None:
    """One engine process: connect, say ready, wait for go, reserve for its buyers, report."""
    db = await asyncpg.create_pool(
        url, min_size=pool, max_size=pool, server_settings={"search_path": "commerce,public"}
    )
    engine = FlashSaleEngine(db, coalesce=coalesce)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    latencies: list[float] = []
    reserved = 0

    async def buy(i: int) -> None:
        nonlocal reserved
        began = time.perf_counter()
        request = ReserveRequest(
            TENANT, uuid.UUID(sale), f"user-{first + i}", 1, f"{sale}-{first + i}"
        )
        result = await engine.reserve(request)
        latencies.append((time.perf_counter() - began) * 1000)
        reserved += result.outcome is Outcome.RESERVED

    start = time.time()
    await asyncio.gather(*(buy(i) for i in range(count)))
    end = time.time()
    print(json.dumps({"start": start, "end": end, "reserved": reserved, "latencies": latencies}))
    await db.close()


async def create_sale(pool: asyncpg.Pool, quantity: int) -> uuid.UUID:
    async with pool.acquire() as conn, conn.transaction():
        product = await conn.fetchval(
            "insert into products (tenant_id, title) values ($1, 'Bench') returning id", TENANT
        )
        sku = await conn.fetchval(
            "insert into skus (tenant_id, product_id, price_minor, currency, stock)"
            " values ($1, $2, 1000, 'USD', 0) returning id",
            TENANT,
            product,
        )
        sale: uuid.UUID = await conn.fetchval(
            "insert into flash_sales (tenant_id, sku_id, sale_price_minor, currency, quantity,"
            " remaining, per_user_limit, starts_at, ends_at)"
            " values ($1, $2, 100, 'USD', $3, $3, 1,"
            " now() - interval '1 s', now() + interval '1 h')"
            " returning id",
            TENANT,
            sku,
            quantity,
        )
    return sale


async def run(
    db: Database, url: str, buyers: int, processes: int, coalesce: bool, pool: int
) -> dict[str, float]:
    sale = await create_sale(db.pool, buyers)
    share = buyers // processes
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            url,
            str(sale),
            str(int(coalesce)),
            str(p * share),
            str(share),
            str(pool),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for p in range(processes)
    ]
    for w in workers:
        assert w.stdout is not None
        assert (await w.stdout.readline()).strip() == b"ready"
    for w in workers:
        assert w.stdin is not None
        w.stdin.write(b"go\n")
        await w.stdin.drain()
    reports = [json.loads((await w.communicate())[0]) for w in workers]
    latencies = sorted(x for r in reports for x in r["latencies"])
    elapsed = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    reserved = sum(r["reserved"] for r in reports)
    async with db.pool.acquire() as conn:
        sold = await conn.fetchval(
            "select coalesce(sum(quantity), 0) from orders where flash_sale_id = $1", sale
        )
        remaining = await conn.fetchval("select remaining from flash_sales where id = $1", sale)
    assert sold == reserved and remaining == buyers - sold, (sold, reserved, remaining)
    return {
        "per_s": reserved / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
        "oversold": max(0, sold - buyers),
    }


async def main(buyers: int, pool: int) -> None:
    with tempfile.TemporaryDirectory(prefix="livecart-bench-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg").start()
        try:
            db = Database(postgres.url, "commerce", pool_size=4)
            await db.connect()
            await db.migrate(SERVICE.migrations)
            results = {}
            for coalesce in (True, False):
                for processes in (1, 4):
                    results[coalesce, processes] = await run(
                        db, postgres.url, buyers, processes, coalesce, pool
                    )
            await db.close()
        finally:
            postgres.stop()
    flash1, flash4 = results[True, 1], results[True, 4]
    naive1, naive4 = results[False, 1], results[False, 4]
    print(f"buyers={buyers} buyers")
    print(f"reservations_per_s={flash1['per_s']:.0f} reservations/s")
    print(f"reserve_p50_ms={flash1['p50']:.1f} ms")
    print(f"reserve_p99_ms={flash1['p99']:.1f} ms")
    print(f"reservations_per_s_4proc={flash4['per_s']:.0f} reservations/s")
    print(f"reserve_p50_ms_4proc={flash4['p50']:.1f} ms")
    print(f"reserve_p99_ms_4proc={flash4['p99']:.1f} ms")
    print(f"naive_reservations_per_s={naive1['per_s']:.0f} reservations/s")
    print(f"naive_reserve_p99_ms={naive1['p99']:.1f} ms")
    print(f"naive_reservations_per_s_4proc={naive4['per_s']:.0f} reservations/s")
    print(f"flash_vs_naive_ratio={flash1['per_s'] / naive1['per_s']:.2f} x")
    print(f"flash_vs_naive_ratio_4proc={flash4['per_s'] / naive4['per_s']:.2f} x")
    print(f"oversold={sum(int(r['oversold']) for r in results.values())} units")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, sale, coalesce, first, count, pool = sys.argv[2:8]
        asyncio.run(worker(url, sale, coalesce == "1", int(first), int(count), int(pool)))
    else:
        parser = argparse.ArgumentParser()
        parser.add_argument("--buyers", type=int, default=10_000)
        parser.add_argument("--pool", type=int, default=8, help="connections per engine process")
        args = parser.parse_args()
        asyncio.run(main(args.buyers, args.pool))
