"""Whether one comment from one user may go out: text limits, the tenant's blocked words and a
per-user rate limit. Room state (slow mode, mutes, bans) is decided by the room, not here.

Everything on the check path is pure CPU (no I/O); the tenants' lists reach :class:`KeywordFilter`
through ``livecart_chat.blocked_words.KeywordStore``.
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import ahocorasick  # type: ignore[import-not-found]  # ships no type information

MAX_COMMENT_CHARS = 200

Refusal = Literal["too_long", "invalid_text", "rate_limited", "blocked_word"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a check: ``code`` None means allowed, and ``text`` is what to publish
    (cleaned); a refusal has its protocol error code, a message for the sender and no text."""

    code: Refusal | None
    message: str
    text: str

    @property
    def allowed(self) -> bool:
        return self.code is None


def refused(code: Refusal, message: str) -> Verdict:
    return Verdict(code, message, "")


# Between these, a ZWJ joins emoji (👨‍👩‍👧, ❤️‍🔥); elsewhere it only hides things.
_ZWJ = "\u200d"
# Tag characters (Cf) are allowed only as a subdivision flag (🏴 + tags + cancel tag, e.g.
# Scotland): anywhere else they are invisible text, the kind used to smuggle prompts to bots.
_SUBDIVISION_FLAG = re.compile(
    "\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{2,7}\U000e007f"
)
# Code points unassigned in this Python's Unicode data but inside the emoji blocks are most
# likely emoji newer than it (a viewer's phone knows more of them than the server does).
_EMOJI_BLOCKS = range(0x1F000, 0x1FB00)
_CATEGORY_NAMES = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Cs": "a lone surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def _emoji_like(ch: str) -> bool:
    return unicodedata.category(ch) == "So" or (
        ord(ch) in _EMOJI_BLOCKS and unicodedata.category(ch) == "Cn"
    )


def disallowed_character(text: str) -> str | None:
    """The first character of ``text`` that chat refuses (control, invisible formatting,
    surrogate, private-use, unassigned, line and paragraph separators), described for a
    person; None when every character may be shown. CJK, emoji and punctuation are fine."""
    if text.isprintable():  # the common case, at C speed
        return None
    probe = _SUBDIVISION_FLAG.sub("\U0001f3f4", text)
    for i, ch in enumerate(probe):
        category = unicodedata.category(ch)
        if ch.isprintable() or category == "Zs":
            continue
        if ch == _ZWJ and i + 1 < len(probe) and _emoji_like(probe[i + 1]):
            continue
        if category == "Cn" and ord(ch) in _EMOJI_BLOCKS:
            continue
        return f"U+{ord(ch):04X}, {_CATEGORY_NAMES.get(category, 'an invisible character')}"
    return None


def clean_text(raw: str) -> Verdict:
    """The comment as it will be published (NFC, trimmed), or why it cannot be: ``invalid_text``
    when empty or holding a disallowed character, ``too_long`` over ``MAX_COMMENT_CHARS``
    characters (code points, after trimming)."""
    text = unicodedata.normalize("NFC", raw).strip()
    if not text:
        return refused(
            "invalid_text", f"a comment is 1 to {MAX_COMMENT_CHARS} characters; this one is empty"
        )
    if len(text) > MAX_COMMENT_CHARS:
        return refused(
            "too_long",
            f"a comment is at most {MAX_COMMENT_CHARS} characters; this one has {len(text)}",
        )
    bad = disallowed_character(text)
    if bad is not None:
        return refused("invalid_text", f"a comment cannot contain {bad}")
    return Verdict(None, "", text)


_NOT_LETTER_OR_DIGIT = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """The form blocked words are matched in, the same for the words and the comments:
    compatibility forms unified (full-width ``\uff26`` is ``f``), case folded, accents dropped, and
    only letters and digits kept, so spaces, punctuation, emoji and zero-width characters put
    between letters (``f r e e``, ``免 费``, ``f\u200bree``) do not hide a word."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _NOT_LETTER_OR_DIGIT.sub("", unicodedata.normalize("NFKD", folded))


class _Automaton(Protocol):
    def iter(self, text: str) -> Iterator[tuple[int, str]]: ...


def _compile(words: Iterable[str]) -> _Automaton | None:
    automaton = ahocorasick.Automaton()
    for word in words:
        key = fold(word)
        if key and not automaton.exists(key):
            automaton.add_word(key, word)  # the value: the word as the tenant wrote it
    if len(automaton) == 0:
        return None  # an automaton with no words cannot be searched
    automaton.make_automaton()
    result: _Automaton = automaton
    return result


class KeywordFilter:
    """Each tenant's blocked words as one Aho-Corasick automaton over their folded forms.

    ``find`` runs on the event loop; ``set_words`` builds an automaton (CPU in proportion to the
    list) and may run in a worker thread: it swaps the tenant's entry in one step.
    """

    def __init__(self) -> None:
        self._automatons: dict[str, _Automaton] = {}

    def set_words(self, tenant: str, words: Iterable[str]) -> None:
        """Replace the tenant's list (an empty one blocks nothing)."""
        automaton = _compile(words)
        if automaton is None:
            self._automatons.pop(tenant, None)
        else:
            self._automatons[tenant] = automaton

    def find(self, tenant: str, text: str) -> str | None:
        """The tenant's blocked word (as they wrote it) that ``text`` contains, or None."""
        automaton = self._automatons.get(tenant)
        if automaton is None:
            return None
        for _end, word in automaton.iter(fold(text)):
            return word
        return None


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per key: ``burst`` comments at once, then ``per_s`` a second.

    O(1) a call. Memory stays bounded: buckets are kept in order of last use, and a bucket
    untouched for ``burst / per_s`` seconds is full again, as good as absent, so it is dropped;
    past ``max_keys`` the least recently used go first.
    """

    def __init__(
        self,
        *,
        burst: int = 5,
        per_s: float = 1.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or per_s <= 0 or max_keys < 1:
            raise ValueError("a rate limit needs burst >= 1, per_s > 0 and max_keys >= 1")
        self.burst = burst
        self.per_s = per_s
        self.max_keys = max_keys
        self._clock = clock
        self._idle_s = burst / per_s
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """How many buckets are held (idle ones are dropped as others are used)."""
        return len(self._buckets)

    def retry_after(self, key: Hashable) -> float:
        """Seconds until ``key`` may send (0 when it may now); takes nothing."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(self.burst, bucket.tokens + (self._clock() - bucket.at) * self.per_s)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.per_s

    def take(self, key: Hashable) -> float:
        """Take one token for ``key``: 0 when taken, else the seconds until one is there."""
        now = self._clock()
        self._drop_idle(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.per_s)
            bucket.at = now
        if bucket.tokens < 1:
            return (1 - bucket.tokens) / self.per_s
        bucket.tokens -= 1
        return 0.0

    def _drop_idle(self, now: float) -> None:
        # The oldest bucket first: each is dropped once, so this is O(1) amortised.
        buckets = self._buckets
        while buckets:
            oldest = next(iter(buckets.values()))
            if now - oldest.at < self._idle_s:
                return
            buckets.popitem(last=False)


class Moderator:
    """Decides whether one comment from one user may go out.

    Order: the text limits, then the rate limit (both cheap, and under a flood most refusals are
    the rate limit's), then the blocked words. A comment refused for its content (too long,
    invalid, a blocked word) costs no token: the sender can fix it and send again at once; the
    flood guard of the socket (close 4429) is what stops someone who keeps sending refused text.
    """

    def __init__(self, keywords: KeywordFilter, limiter: RateLimiter) -> None:
        self.keywords = keywords
        self.limiter = limiter

    def check(
        self, tenant: str, room: str, user: str, text: str, *, exempt: bool = False
    ) -> Verdict:
        """The verdict on ``text``; ``exempt`` (hosts, moderators) skips the rate limit only."""
        verdict = clean_text(text)
        if not verdict.allowed:
            return verdict
        key = (tenant, room, user)
        if not exempt:
            wait_s = self.limiter.retry_after(key)
            if wait_s > 0:
                return refused(
                    "rate_limited",
                    f"too many comments: you may send again in {math.ceil(wait_s)} s",
                )
        word = self.keywords.find(tenant, verdict.text)
        if word is not None:
            return refused(
                "blocked_word", f"this shop does not allow the word {word!r} in comments"
            )
        if not exempt:
            self.limiter.take(key)
        return verdict
