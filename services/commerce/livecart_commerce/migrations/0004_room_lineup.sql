-- A live room's product lineup, in presentation order, and which product is on screen.
create table room_lineup (
    tenant_id   text not null,
    room_id     text not null,
    position    integer not null check (position >= 0),
    product_id  uuid not null references products (id),
    primary key (tenant_id, room_id, position),
    unique (tenant_id, room_id, product_id)
);

create table room_pins (
    tenant_id   text not null,
    room_id     text not null,
    product_id  uuid not null references products (id),
    pinned_at   timestamptz not null default now(),
    primary key (tenant_id, room_id)
);
