-- Catalog, flash sales, orders and the outbox of the commerce service (schema `commerce`).
-- Every row carries its tenant; every query filters by it.

create table products (
    tenant_id   text not null,
    id          uuid primary key default gen_random_uuid(),
    title       text not null check (length(title) between 1 and 200),
    created_at  timestamptz not null default now()
);
create index products_tenant on products (tenant_id);

create table skus (
    tenant_id    text not null,
    id           uuid primary key default gen_random_uuid(),
    product_id   uuid not null references products (id),
    price_minor  bigint not null check (price_minor >= 0),
    currency     char(3) not null,
    stock        integer not null check (stock >= 0),
    attributes   jsonb not null default '{}'::jsonb,
    created_at   timestamptz not null default now()
);
create index skus_tenant on skus (tenant_id);

-- A flash sale's quantity is carved out of its SKU's stock when the sale is created;
-- `remaining` is the only counter the hot path touches, and it can never go below zero.
create table flash_sales (
    tenant_id         text not null,
    id                uuid primary key default gen_random_uuid(),
    sku_id            uuid not null references skus (id),
    sale_price_minor  bigint not null check (sale_price_minor >= 0),
    currency          char(3) not null,
    quantity          integer not null check (quantity > 0),
    remaining         integer not null check (remaining >= 0 and remaining <= quantity),
    per_user_limit    integer not null check (per_user_limit > 0),
    starts_at         timestamptz not null,
    ends_at           timestamptz not null check (ends_at > starts_at),
    created_at        timestamptz not null default now()
);
create index flash_sales_tenant on flash_sales (tenant_id);

-- Units each buyer holds in a sale (reserved or paid), bounded by the sale's per-user limit.
create table flash_sale_buyers (
    flash_sale_id  uuid not null references flash_sales (id),
    user_id        text not null,
    quantity       integer not null check (quantity >= 0),
    primary key (flash_sale_id, user_id)
);

create table orders (
    tenant_id         text not null,
    id                uuid primary key default gen_random_uuid(),
    user_id           text not null,
    sku_id            uuid not null references skus (id),
    flash_sale_id     uuid references flash_sales (id),
    quantity          integer not null check (quantity > 0),
    unit_price_minor  bigint not null check (unit_price_minor >= 0),
    currency          char(3) not null,
    state             text not null check (state in ('reserved', 'paid', 'expired', 'cancelled', 'refunded')),
    idempotency_key   text not null,
    request_hash      text not null,
    created_at        timestamptz not null default now(),
    expires_at        timestamptz not null,
    unique (tenant_id, user_id, idempotency_key)
);
create index orders_reserved_expiry on orders (expires_at) where state = 'reserved';
create index orders_flash_sale on orders (flash_sale_id);

-- Transactional outbox: written with the change it describes, published by the relay.
create table outbox (
    id            bigserial primary key,
    event_id      uuid not null unique,
    topic         text not null,
    key           text not null,
    payload       bytea not null,
    created_at    timestamptz not null default now(),
    published_at  timestamptz
);
create index outbox_unpublished on outbox (id) where published_at is null;
