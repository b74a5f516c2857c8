-- Chat-keyword lotteries (弹幕抽奖): viewers who send the keyword in a room's chat during the
-- window enter, once each; the draw is seeded and anyone can redo it from the published result.
-- The prize units are carved out of the SKU's stock when the lottery is created.

create table lotteries (
    tenant_id        text not null,
    id               uuid primary key default gen_random_uuid(),
    room_id          text not null check (length(room_id) between 1 and 200),
    keyword          text not null check (length(keyword) between 1 and 50),
    keyword_folded   text not null,  -- casefolded once here, so entry matching is a plain strpos
    prize_sku_id     uuid not null references skus (id),
    winners          integer not null check (winners > 0),
    opens_at         timestamptz not null,
    closes_at        timestamptz not null check (closes_at > opens_at),
    seed             bytea not null check (length(seed) = 32),  -- secret until the draw
    seed_sha256      text not null,
    state            text not null default 'open' check (state in ('open', 'drawn')),
    -- The result, set by the draw:
    drawn_at         timestamptz,
    entrants         integer check (entrants >= 0),
    entrants_sha256  text,
    winner_user_ids  text[],   -- in rank order
    prize_order_ids  uuid[],   -- the winners' orders, in the same order
    algorithm        text,
    created_by       text not null,
    created_at       timestamptz not null default now(),
    check ((state = 'drawn') = (drawn_at is not null and entrants is not null
        and entrants_sha256 is not null and winner_user_ids is not null
        and prize_order_ids is not null and algorithm is not null))
);
-- Every chat comment looks up the open lotteries of its tenant's room.
create index lotteries_open_in_room on lotteries (tenant_id, room_id) where state = 'open';
-- The drawer looks for open lotteries whose window has closed.
create index lotteries_open_closing on lotteries (closes_at) where state = 'open';

-- One row per entrant: the primary key is the "one entry per user". User ids compare by code
-- point (collation "C"), the order the draw sorts them in, so the entrant list reads in that
-- order straight off the index.
create table lottery_entries (
    lottery_id  uuid not null references lotteries (id),
    user_id     text collate "C" not null,
    entered_at  timestamptz not null,
    primary key (lottery_id, user_id)
);
