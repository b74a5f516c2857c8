-- How long a buyer has to pay: per flash sale, else the tenant's default, else the process
-- setting (LIVECART_PAYMENT_TIMEOUT_S). Orders store the resulting expires_at, so the expiry
-- sweep honours whichever window applied when the order was placed.
create table tenant_settings (
    tenant_id          text primary key,
    payment_timeout_s  integer check (payment_timeout_s between 1 and 604800),
    updated_at         timestamptz not null default now()
);

alter table flash_sales
    add column payment_timeout_s integer check (payment_timeout_s between 1 and 604800);

-- Orders now show their buyer. Responses stored for Idempotency-Key replays before this have
-- no buyer_id: add it, or replaying them would fail to read them back.
update idempotency_keys k
    set response = k.response || jsonb_build_object('buyer_id', o.user_id)
    from orders o
    where k.response ? 'lines' and not k.response ? 'buyer_id'
      and o.id::text = k.response ->> 'id';
