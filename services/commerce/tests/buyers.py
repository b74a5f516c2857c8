"""One commerce process's share of a flash-sale crowd (run as a separate process by the tests).

    python buyers.py DATABASE_URL SALE_ID TENANT FIRST_USER COUNT USERS

Buyer i is user ``u{(FIRST_USER + i) % USERS}``; every 10th buyer retries its request with the
same idempotency key. Prints one JSON line per request: user, key, outcome, order id.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import asyncpg

from livecart_commerce.flash_sale import FlashSaleEngine, ReserveRequest


async def main(url: str, sale: str, tenant: str, first: int, count: int, users: int) -> None:
    pool = await asyncpg.create_pool(
        url, min_size=2, max_size=4, server_settings={"search_path": "commerce,public"}
    )
    engine = FlashSaleEngine(pool)

    async def buy(i: int) -> list[dict[str, str | None]]:
        user = f"u{(first + i) % users}"
        key = f"k-{first + i}"
        request = ReserveRequest(tenant, uuid.UUID(sale), user, 1, key)
        attempts = 2 if i % 10 == 0 else 1
        out = []
        for _ in range(attempts):
            result = await engine.reserve(request)
            order = str(result.order_id) if result.order_id else None
            out.append({"user": user, "key": key, "outcome": result.outcome, "order": order})
        return out

    for lines in await asyncio.gather(*(buy(i) for i in range(count))):
        for line in lines:
            print(json.dumps(line))
    await pool.close()


if __name__ == "__main__":
    url, sale, tenant, first, count, users = sys.argv[1:7]
    asyncio.run(main(url, sale, tenant, int(first), int(count), int(users)))
