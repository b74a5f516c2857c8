-- Responses of writes made with an Idempotency-Key, stored in the write's own transaction.
create table idempotency_keys (
    tenant_id     text not null,
    subject       text not null,
    key           text not null,
    request_hash  text not null,
    response      jsonb,
    created_at    timestamptz not null default now(),
    primary key (tenant_id, subject, key)
);
