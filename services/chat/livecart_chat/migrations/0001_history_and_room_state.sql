-- A room's history (what viewers saw, for reconnects beyond a node's memory and for replay
-- with VOD) and its moderation state, written by the chat-history consumer group.

create table events (
    tenant_id  text not null,
    room_id    text not null,
    seq        bigint not null,          -- the event's offset in its chat.messages partition
    event_id   text not null,
    kind       text not null check (kind in ('comment', 'system', 'moderation')),
    shown      jsonb not null,           -- the event as the WebSocket protocol shows it
    sent_at    timestamptz not null,
    primary key (tenant_id, room_id, seq),
    unique (tenant_id, room_id, event_id)  -- a republished system event is stored once
);

-- How far the history writer has read each partition: history is complete below next_offset.
create table history_progress (
    partition    integer primary key,
    next_offset  bigint not null
);

create table room_state (
    tenant_id    text not null,
    room_id      text not null,
    slow_mode_s  integer not null default 0,
    pinned       jsonb,
    total_likes  bigint not null default 0,
    state_seq    bigint not null,        -- the last event applied to this state
    primary key (tenant_id, room_id)
);

create table room_mutes (
    tenant_id  text not null,
    room_id    text not null,
    user_id    text not null,
    until      timestamptz not null,
    by_user    text not null,
    primary key (tenant_id, room_id, user_id)
);

create table room_bans (
    tenant_id  text not null,
    room_id    text not null,
    user_id    text not null,
    by_user    text not null,
    banned_at  timestamptz not null,
    primary key (tenant_id, room_id, user_id)
);
