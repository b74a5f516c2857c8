-- Each tenant's blocked words for chat moderation: one row per tenant, replaced whole.
-- Every change takes the next version from one sequence under one advisory lock
-- (livecart_chat.blocked_words), so versions become visible in order and each chat node polls
-- "version > the last one I saw" with an index scan. Rows are never deleted: an emptied list is
-- a change the nodes must see too.
create sequence blocked_word_list_versions;

create table blocked_word_lists (
    tenant_id  text primary key,
    words      text[] not null,
    version    bigint not null unique,
    updated_by text not null,
    updated_at timestamptz not null default now()
);
