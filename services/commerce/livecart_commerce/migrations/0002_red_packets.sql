-- Red packets (红包): a host splits an amount into shares that viewers grab, one each.
-- The shares are split when the packet is created; grabbing claims one row, so the shares can
-- never be over-grabbed and a user can never hold two (the unique (red_packet_id, user_id)).

create table red_packets (
    tenant_id    text not null,
    id           uuid primary key default gen_random_uuid(),
    room_id      text not null check (length(room_id) between 1 and 200),
    total_minor  bigint not null check (total_minor > 0),
    currency     char(3) not null,
    shares       integer not null check (shares > 0 and shares <= total_minor),
    shares_left  integer not null check (shares_left >= 0 and shares_left <= shares),
    created_by   text not null,
    created_at   timestamptz not null default now(),
    expires_at   timestamptz not null check (expires_at > created_at)
);
create index red_packets_tenant on red_packets (tenant_id);

create table red_packet_shares (
    red_packet_id  uuid not null references red_packets (id),
    seq            integer not null check (seq >= 0),
    amount_minor   bigint not null check (amount_minor > 0),
    user_id        text,
    grabbed_at     timestamptz,
    primary key (red_packet_id, seq),
    unique (red_packet_id, user_id),
    check ((user_id is null) = (grabbed_at is null))
);
-- The grab looks for the lowest unclaimed share: without this it would step over every claimed
-- one first.
create index red_packet_shares_unclaimed on red_packet_shares (red_packet_id, seq)
    where user_id is null;
