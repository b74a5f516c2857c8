"""Commerce test fixtures: the commerce schema migrated on the session's real Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from livecart_commerce.app import SERVICE
from livecart_core.auth import TokenAuthority
from livecart_core.db import Database
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import TEST_AUTH_SECRET, ServiceProcess

TOKENS = TokenAuthority(TEST_AUTH_SECRET)


def auth(tenant: str, user: str, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS.issue(tenant, user, scopes)}"}


MERCHANT = auth("shop-a", "merchant", "commerce:admin", "commerce:buy")


@pytest.fixture(scope="module")
def commerce_process(
    kafka_broker: KafkaBroker, postgres: EmbeddedPostgres, commerce_db: Database
) -> Iterator[ServiceProcess]:
    """The commerce service as its own process (the schema is migrated by ``commerce_db``)."""
    env = {
        "LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "LIVECART_DATABASE_URL": postgres.url,
    }
    with ServiceProcess("livecart_commerce", env) as process:
        yield process


@pytest.fixture(scope="module")
def commerce(commerce_process: ServiceProcess) -> Iterator[httpx.Client]:
    """An HTTP client to the commerce process that, like a client SDK, puts a fresh
    Idempotency-Key on every POST and PATCH that does not set one."""

    def add_key(request: httpx.Request) -> None:
        if request.method in ("POST", "PATCH") and "idempotency-key" not in request.headers:
            request.headers["Idempotency-Key"] = uuid.uuid4().hex

    with httpx.Client(
        base_url=commerce_process.url, timeout=10, event_hooks={"request": [add_key]}
    ) as client:
        yield client


def assert_refused(response: httpx.Response, status: int, error: str) -> None:
    """A clear refusal: the status, the error code, and a message for a person."""
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.json().get("message")


def new_sale(client: httpx.Client, *, quantity: int = 3, limit: int = 1) -> tuple[str, str]:
    """Over HTTP: a product with one SKU of 10 units, and a live flash sale on ``quantity``."""
    product = client.post(
        "/v1/products",
        headers=MERCHANT,
        json={"title": "Jade bracelet", "skus": [{"price_minor": 25900, "currency": "USD",
              "stock": 10, "attributes": {"colour": "green"}}]},
    )  # fmt: skip
    assert product.status_code == 201, product.text
    sku = product.json()["skus"][0]["id"]
    now = datetime.now(UTC)
    sale = client.post(
        "/v1/flash-sales",
        headers=MERCHANT,
        json={"sku_id": sku, "sale_price_minor": 9900, "quantity": quantity,
              "per_user_limit": limit, "starts_at": (now - timedelta(seconds=5)).isoformat(),
              "ends_at": (now + timedelta(hours=1)).isoformat()},
    )  # fmt: skip
    assert sale.status_code == 201, sale.text
    return product.json()["id"], sale.json()["id"]


@pytest.fixture(scope="session")
async def commerce_db(postgres: EmbeddedPostgres) -> AsyncIterator[Database]:
    db = Database(postgres.url, "commerce", pool_size=20)
    await db.connect()
    await db.migrate(SERVICE.migrations)
    yield db
    await db.close()


async def create_flash_sale(
    pool: asyncpg.Pool,
    *,
    tenant: str = "acme",
    quantity: int = 100,
    per_user_limit: int = 1,
    starts_in: timedelta = timedelta(seconds=-1),
    lasts: timedelta = timedelta(hours=1),
) -> uuid.UUID:
    """A product, a SKU and a live flash sale over ``quantity`` of its units."""
    async with pool.acquire() as conn, conn.transaction():
        product = await conn.fetchval(
            "insert into products (tenant_id, title) values ($1, 'Silk scarf') returning id", tenant
        )
        sku = await conn.fetchval(
            "insert into skus (tenant_id, product_id, price_minor, currency, stock)"
            " values ($1, $2, 12900, 'USD', 0) returning id",
            tenant,
            product,
        )
        sale: uuid.UUID = await conn.fetchval(
            "insert into flash_sales (tenant_id, sku_id, sale_price_minor, currency, quantity,"
            " remaining, per_user_limit, starts_at, ends_at)"
            " values ($1, $2, 990, 'USD', $3, $3, $4, now() + $5, now() + $5 + $6) returning id",
            tenant,
            sku,
            quantity,
            per_user_limit,
            starts_in,
            lasts,
        )
    return sale
