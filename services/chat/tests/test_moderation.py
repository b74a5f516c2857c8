"""Moderation: text limits, blocked words (and their evasions), the rate limit, and blocked-word
lists changed over HTTP reaching a running poller against the real Postgres."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from livecart_chat.app import SERVICE
from livecart_chat.blocked_words import KeywordStore, moderation_routes
from livecart_chat.moderation import (
    MAX_COMMENT_CHARS,
    KeywordFilter,
    Moderator,
    RateLimiter,
    clean_text,
)
from livecart_core.auth import TokenAuthority
from livecart_core.db import Database
from livecart_core.health import Readiness
from livecart_core.http import create_http_app
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import TEST_AUTH_SECRET

TOKENS = TokenAuthority(TEST_AUTH_SECRET)


def auth(tenant: str, *scopes: str, room: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS.issue(tenant, 'mod-1', scopes, room=room)}"}


def fullwidth(ascii_text: str) -> str:
    """``ascii_text`` in full-width forms (``Free`` → ``\uff26\uff52\uff45\uff45``)."""
    return "".join(chr(ord(c) + 0xFEE0) for c in ascii_text)


def new_tenant() -> str:
    return f"shop-{uuid.uuid4().hex[:8]}"


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the text itself


@pytest.mark.parametrize(
    "text",
    [
        "is it real jade?",
        "这个手镯是真的玉吗\uff1f",
        "3 2 1 go!!! 🎉🔥",
        "👨‍👩‍👧 ❤️‍🔥 🏳️‍🌈 👍🏽 1️⃣",
        "🏴󠁧󠁢󠁳󠁣󠁴󠁿 flag of Scotland",
        "🫨 an emoji newer than some servers' Unicode data",
        "全角　空格、「引号」…",
        "Ünïcödé & 日本語のテキスト, 한국어",
        "x" * MAX_COMMENT_CHARS,
    ],
)
def test_ordinary_text_emoji_and_cjk_are_kept(text: str) -> None:
    verdict = clean_text(text)
    assert verdict.allowed, verdict.message
    assert verdict.text == text


def test_text_is_trimmed_and_nfc_normalised() -> None:
    verdict = clean_text("  cafe\u0301 ok \n")
    assert verdict.allowed
    assert verdict.text == "caf\u00e9 ok"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("bell\x07", "U+0007, a control character"),
        ("two\nlines", "U+000A, a control character"),
        ("right-to-left \u202eoverride", "U+202E, an invisible formatting character"),
        ("zero\u200bwidth", "U+200B, an invisible formatting character"),
        ("joiner a\u200db between letters", "U+200D, an invisible formatting character"),
        ("hidden \U000e0069\U000e0067 tags", "U+E0069, an invisible formatting character"),
        ("lone \ud800 surrogate", "U+D800, a lone surrogate"),
        ("private \ue000 use", "U+E000, a private-use character"),
        ("unassigned \U000e0fff", "U+E0FFF, an unassigned character"),
        ("line\u2028separator", "U+2028, a line separator"),
    ],
)
def test_control_and_invisible_characters_are_refused_by_name(text: str, shown: str) -> None:
    verdict = clean_text(text)
    assert verdict.code == "invalid_text"
    assert verdict.message == f"a comment cannot contain {shown}"
    assert verdict.text == ""


@pytest.mark.parametrize("text", ["", "   ", "\u3000\t "])
def test_empty_text_is_refused_with_the_limit(text: str) -> None:
    verdict = clean_text(text)
    assert verdict.code == "invalid_text"
    assert f"1 to {MAX_COMMENT_CHARS} characters" in verdict.message


def test_text_over_the_limit_is_refused_with_the_limit() -> None:
    verdict = clean_text("好" * (MAX_COMMENT_CHARS + 1) + "   ")
    assert verdict.code == "too_long"
    assert (
        verdict.message == f"a comment is at most {MAX_COMMENT_CHARS} characters; this one has 201"
    )


# -- blocked words


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("totally free shipping", "free"),
        ("FREE!!", "free"),
        ("f r e e", "free"),
        ("f.r-e_e", "free"),
        ("f\u200br\u200de\u00ade", "free"),
        (fullwidth("Free"), "free"),
        ("frée", "free"),
        ("f\u0338ree", "free"),
        ("加我微信", "微信"),
        ("加我 微 信 看看", "微信"),
        ("微\u200b信", "微信"),
        ("微。信", "微信"),
        ("add my WeChat", fullwidth("WECHAT")),
        ("w e c h a t 123", fullwidth("WECHAT")),
        ("call ①②③", "123"),
    ],
)
def test_blocked_words_are_found_through_spacing_width_case_and_invisibles(
    text: str, word: str
) -> None:
    keywords = KeywordFilter()
    keywords.set_words("shop-a", ["free", "微信", fullwidth("WECHAT"), "123"])
    assert keywords.find("shop-a", text) == word


@pytest.mark.parametrize("text", ["is it real jade?", "fre e-range? no: fr ee", "微笑", "12 3"])
def test_text_without_a_blocked_word_passes(text: str) -> None:
    keywords = KeywordFilter()
    keywords.set_words("shop-a", ["free-e", "微信", "1234"])
    assert keywords.find("shop-a", text) is None


def test_each_tenant_has_its_own_list_and_a_new_list_replaces_the_old() -> None:
    keywords = KeywordFilter()
    keywords.set_words("shop-a", ["jade"])
    keywords.set_words("shop-b", ["pearl"])
    assert keywords.find("shop-a", "real jade") == "jade"
    assert keywords.find("shop-a", "real pearl") is None
    assert keywords.find("shop-b", "real pearl") == "pearl"
    assert keywords.find("shop-c", "real jade") is None

    keywords.set_words("shop-a", ["silk"])
    assert keywords.find("shop-a", "real jade") is None
    assert keywords.find("shop-a", "S I L K") == "silk"
    keywords.set_words("shop-a", [])
    assert keywords.find("shop-a", "silk") is None


# -- the rate limit


def test_rate_limit_allows_a_burst_then_refuses_then_refills() -> None:
    clock = ManualClock()
    limiter = RateLimiter(burst=5, per_s=1.0, clock=clock)
    assert [limiter.take("u1") for _ in range(5)] == [0.0] * 5
    assert limiter.take("u1") == pytest.approx(1.0)
    assert limiter.retry_after("u1") == pytest.approx(1.0)

    clock.now += 0.5
    assert limiter.retry_after("u1") == pytest.approx(0.5)
    assert limiter.take("u1") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.retry_after("u1") == 0.0
    assert limiter.take("u1") == 0.0
    assert limiter.take("u1") > 0

    clock.now += 60  # refills to the burst, not beyond
    assert [limiter.take("u1") for _ in range(5)] == [0.0] * 5
    assert limiter.take("u1") > 0
    assert limiter.take("u2") == 0.0


def test_rate_limit_memory_is_bounded() -> None:
    clock = ManualClock()
    limiter = RateLimiter(burst=2, per_s=1.0, max_keys=100, clock=clock)
    for user in range(1000):
        limiter.take(user)
    assert len(limiter) == 100
    assert limiter.take(999) == 0.0  # the most recent users are the ones kept
    assert limiter.take(999) > 0

    clock.now += 2.0  # every bucket full again: the next use drops the idle ones
    limiter.take("fresh")
    assert len(limiter) == 1


# -- one comment through all of it


def moderator(clock: ManualClock) -> Moderator:
    keywords = KeywordFilter()
    keywords.set_words("shop-a", ["微信"])
    return Moderator(keywords, RateLimiter(burst=2, per_s=0.5, clock=clock))


def test_a_fast_sender_is_told_when_to_send_again() -> None:
    clock = ManualClock()
    check = moderator(clock).check
    assert check("shop-a", "r1", "u1", " hello ").text == "hello"
    assert check("shop-a", "r1", "u1", "hello").allowed
    verdict = check("shop-a", "r1", "u1", "hello")
    assert (verdict.code, verdict.message) == (
        "rate_limited",
        "too many comments: you may send again in 2 s",
    )
    assert check("shop-a", "r2", "u1", "hello").allowed  # another room, another bucket
    assert check("shop-b", "r1", "u1", "hello").allowed  # another tenant, another bucket
    clock.now += 2
    assert check("shop-a", "r1", "u1", "hello").allowed


def test_refused_content_costs_no_token() -> None:
    check = moderator(ManualClock()).check
    for _ in range(5):
        assert check("shop-a", "r1", "u1", "加 微 信").code == "blocked_word"
        assert check("shop-a", "r1", "u1", "x" * 201).code == "too_long"
        assert check("shop-a", "r1", "u1", "\x00").code == "invalid_text"
    assert check("shop-a", "r1", "u1", "one").allowed
    assert check("shop-a", "r1", "u1", "two").allowed
    assert check("shop-a", "r1", "u1", "three").code == "rate_limited"


def test_blocked_word_refusal_names_the_word() -> None:
    verdict = moderator(ManualClock()).check("shop-a", "r1", "u1", "加我 微 信")
    assert verdict.code == "blocked_word"
    assert verdict.message == "this shop does not allow the word '微信' in comments"
    assert verdict.text == ""


def test_hosts_and_moderators_skip_the_rate_limit_but_nothing_else() -> None:
    check = moderator(ManualClock()).check
    for _ in range(20):
        assert check("shop-a", "r1", "host", "3 2 1 go", exempt=True).allowed
    assert check("shop-a", "r1", "host", "加微信", exempt=True).code == "blocked_word"
    assert check("shop-a", "r1", "host", "x" * 201, exempt=True).code == "too_long"
    assert check("shop-a", "r1", "host", "a\x1bb", exempt=True).code == "invalid_text"
    # Exempt comments took no tokens: the same user, not exempt, still has a full burst.
    assert check("shop-a", "r1", "host", "one").allowed
    assert check("shop-a", "r1", "host", "two").allowed
    assert check("shop-a", "r1", "host", "three").code == "rate_limited"


# -- lists in Postgres, changed over HTTP, picked up by a running poller


@pytest.fixture(scope="module")
async def chat_db(postgres: EmbeddedPostgres) -> AsyncIterator[Database]:
    db = Database(postgres.url, "chat")
    await db.connect()
    await db.migrate(SERVICE.migrations)
    yield db
    await db.close()


@pytest.fixture(scope="module")
async def api(chat_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_http_app("chat", Readiness("chat"))
    app.include_router(moderation_routes(chat_db.pool, TOKENS))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://chat") as client:
        yield client


async def found_within(
    keywords: KeywordFilter, tenant: str, text: str, expected: str | None, timeout_s: float = 2.0
) -> float:
    """Seconds until ``keywords.find(tenant, text)`` is ``expected``; fails after ``timeout_s``."""
    started = time.monotonic()
    while keywords.find(tenant, text) != expected:
        assert time.monotonic() - started < timeout_s, f"{tenant}: {text!r} is not {expected!r}"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_new_list_reaches_a_running_node_without_restart(
    chat_db: Database, api: httpx.AsyncClient
) -> None:
    shop_a, shop_b = new_tenant(), new_tenant()
    put_b = await api.put(
        "/v1/moderation/blocked-words",
        headers=auth(shop_b, "chat:moderate"),
        json={"words": ["jade"]},
    )
    assert put_b.status_code == 200, put_b.text
    keywords = KeywordFilter()
    store = KeywordStore(chat_db.pool, keywords, interval_s=0.1)
    await store.refresh()  # start-up: the lists there are, before the first comment
    assert keywords.find(shop_b, "real J A D E") == "jade"
    polling = asyncio.create_task(store.run())
    try:
        put_a = await api.put(
            "/v1/moderation/blocked-words",
            headers=auth(shop_a, "chat:moderate"),
            json={"words": ["免费", "WeChat", "jade-free"]},
        )
        assert put_a.status_code == 200, put_a.text
        assert put_a.json()["words"] == ["免费", "WeChat", "jade-free"]
        await found_within(keywords, shop_a, "包邮 免 费", "免费")
        assert keywords.find(shop_a, f"add {fullwidth('wechat')}") == "WeChat"
        assert keywords.find(shop_a, "real jade") is None
        assert keywords.find(shop_b, "免费 wechat") is None  # shop B keeps its own list
        assert keywords.find(shop_b, "real jade") == "jade"

        cleared = await api.put(
            "/v1/moderation/blocked-words",
            headers=auth(shop_a, "chat:moderate"),
            json={"words": []},
        )
        assert cleared.status_code == 200, cleared.text
        await found_within(keywords, shop_a, "免费", None)
        assert keywords.find(shop_b, "real jade") == "jade"
    finally:
        polling.cancel()
        await asyncio.gather(polling, return_exceptions=True)


async def test_a_poll_loads_only_the_lists_changed_since_the_last(
    chat_db: Database, api: httpx.AsyncClient
) -> None:
    keywords = KeywordFilter()
    store = KeywordStore(chat_db.pool, keywords)
    await store.refresh()
    assert await store.refresh() == 0
    shop = new_tenant()
    for words in (["pearl"], ["silk"]):
        response = await api.put(
            "/v1/moderation/blocked-words",
            headers=auth(shop, "chat:moderate"),
            json={"words": words},
        )
        assert response.status_code == 200, response.text
    assert await store.refresh() == 1
    assert keywords.find(shop, "silk scarf") == "silk"
    assert keywords.find(shop, "pearl") is None


async def test_the_list_is_deduplicated_by_matching_form_and_read_back_per_tenant(
    api: httpx.AsyncClient,
) -> None:
    shop, other = new_tenant(), new_tenant()
    headers = auth(shop, "chat:moderate")
    put = await api.put(
        "/v1/moderation/blocked-words",
        headers=headers,
        json={"words": [" Free ", fullwidth("FREE"), "f r e e", "免费", "免 费", "FREE!"]},
    )
    assert put.status_code == 200, put.text
    assert put.json()["words"] == ["Free", "免费"]
    got = await api.get("/v1/moderation/blocked-words", headers=headers)
    assert got.status_code == 200
    assert got.json()["words"] == ["Free", "免费"]
    assert got.json()["version"] == put.json()["version"] > 0
    elsewhere = await api.get("/v1/moderation/blocked-words", headers=auth(other, "chat:moderate"))
    assert elsewhere.json() == {"words": [], "version": 0, "updated_at": None}


def assert_refused(response: httpx.Response, status: int, error: str) -> str:
    """A clear refusal: the status, the error code, and a message for a person (returned)."""
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    message: str = response.json()["message"]
    assert message
    return message


@pytest.mark.parametrize(
    ("words", "status", "error", "says"),
    [
        (["ok", "   "], 422, "invalid_word", "has no letter or digit"),
        (["!!!"], 422, "invalid_word", "has no letter or digit"),
        (["🎉🎉"], 422, "invalid_word", "has no letter or digit"),
        (["bad\x1fword"], 422, "invalid_word", "U+001F, a control character"),
        # Refused at the HTTP boundary, before the route: no stored text may hold a NUL.
        (["bad\x00word"], 400, "invalid_argument", "NUL characters are not allowed"),
        ([""], 422, "invalid_argument", "request validation failed"),
        (["x" * 51], 422, "invalid_argument", "request validation failed"),
        ([f"w{i}" for i in range(5001)], 422, "invalid_argument", "request validation failed"),
    ],
)
async def test_bad_words_are_refused_and_change_nothing(
    api: httpx.AsyncClient, words: list[str], status: int, error: str, says: str
) -> None:
    shop = new_tenant()
    headers = auth(shop, "chat:moderate")
    first = await api.put("/v1/moderation/blocked-words", headers=headers, json={"words": ["keep"]})
    assert first.status_code == 200, first.text
    response = await api.put("/v1/moderation/blocked-words", headers=headers, json={"words": words})
    assert says in assert_refused(response, status, error)
    kept = await api.get("/v1/moderation/blocked-words", headers=headers)
    assert kept.json()["words"] == ["keep"]


async def test_only_shop_wide_moderators_may_change_the_list(api: httpx.AsyncClient) -> None:
    shop = new_tenant()
    body = {"words": ["jade"]}
    url = "/v1/moderation/blocked-words"
    assert_refused(await api.put(url, json=body), 401, "unauthenticated")
    assert_refused(await api.get(url), 401, "unauthenticated")
    bad_token = {"Authorization": "Bearer not-a-token"}
    assert_refused(await api.put(url, headers=bad_token, json=body), 401, "unauthenticated")
    viewer = auth(shop, "play", "chat")
    assert "chat:moderate" in assert_refused(
        await api.put(url, headers=viewer, json=body), 403, "permission_denied"
    )
    assert_refused(await api.get(url, headers=viewer), 403, "permission_denied")
    room_host = auth(shop, "chat:moderate", room="r1")
    assert "room 'r1' only" in assert_refused(
        await api.put(url, headers=room_host, json=body), 403, "permission_denied"
    )
    assert (await api.get(url, headers=room_host)).status_code == 200
    unchanged = await api.get(url, headers=auth(shop, "chat:moderate"))
    assert unchanged.json()["words"] == []
