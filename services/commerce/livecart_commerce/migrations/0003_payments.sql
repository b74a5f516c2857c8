-- Payments through a provider; the provider's webhook settles them.
create table payments (
    tenant_id     text not null,
    id            uuid primary key default gen_random_uuid(),
    order_id      uuid not null references orders (id),
    provider      text not null,
    reference     text not null unique,
    amount_minor  bigint not null check (amount_minor >= 0),
    currency      char(3) not null,
    state         text not null check (state in ('pending', 'succeeded', 'failed', 'refunded')),
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create index payments_order on payments (order_id);
