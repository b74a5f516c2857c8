-- What a shopper (and the AI assistant) reads about a product, carts, and orders of many lines.

alter table products
    add column description  text not null default '' check (length(description) <= 5000),
    add column images       jsonb not null default '[]'::jsonb,   -- image URLs, in display order
    add column shipping     jsonb,                                -- ships_from, days, fee
    add column returns      jsonb,                                -- window, who pays, conditions
    add column faq          jsonb not null default '[]'::jsonb;   -- [{question, answer}]

-- A buyer's cart in a tenant's shop: SKUs and quantities; prices are read at checkout.
create table cart_items (
    tenant_id  text not null,
    user_id    text not null,
    sku_id     uuid not null references skus (id),
    quantity   integer not null check (quantity > 0),
    added_at   timestamptz not null default now(),
    primary key (tenant_id, user_id, sku_id)
);

-- Where an order came from. A flash-sale or lottery order has one line, kept on the order row
-- (the flash-sale hot path writes one row per order); a cart order has its lines in
-- order_lines and leaves the order's sku_id, quantity and unit_price_minor null.
alter table orders
    add column origin       text not null default 'flash_sale'
        check (origin in ('flash_sale', 'cart', 'lottery')),
    add column total_minor  bigint check (total_minor >= 0),
    alter column sku_id drop not null,
    alter column quantity drop not null,
    alter column unit_price_minor drop not null,
    add constraint orders_one_line_or_lines check (
        (origin = 'cart') = (sku_id is null and quantity is null and unit_price_minor is null));
-- A buyer's orders are found through the unique (tenant_id, user_id, idempotency_key) index;
-- no index of its own, so the flash-sale hot path maintains one index fewer per order.

create table order_lines (
    order_id          uuid not null references orders (id),
    sku_id            uuid not null references skus (id),
    quantity          integer not null check (quantity > 0),
    unit_price_minor  bigint not null check (unit_price_minor >= 0),
    primary key (order_id, sku_id)
);

-- Every order's lines, whichever shape it has.
create view order_items as
    select id as order_id, sku_id, quantity, unit_price_minor from orders where origin <> 'cart'
    union all
    select order_id, sku_id, quantity, unit_price_minor from order_lines;
