"""Background loops never stop: whatever a round raises, it is retried with backoff, counted,
and the loop says it is retrying until a round succeeds again."""

from __future__ import annotations

import asyncio

import pytest

from livecart_core.health import Readiness
from livecart_core.loops import Backoff, LoopState, repeat, supervise
from livecart_core.metrics import BACKGROUND_FAILURES, BACKGROUND_RETRYING

# What a Postgres crash made asyncpg raise inside the outbox relay (not a PostgresError).
CRASH_ERRORS = [
    RuntimeError("cannot switch to state 15; another operation (2) is in progress"),
    AssertionError("an internal client error"),
    KeyError("state"),
    ConnectionResetError("reset by peer"),
]


async def test_repeat_retries_any_failure_and_reports_it() -> None:
    failures = list(CRASH_ERRORS)
    rounds = 0

    async def work() -> bool:
        nonlocal rounds
        rounds += 1
        if failures:
            raise failures.pop(0)
        return False

    state = LoopState("loops-test", "relay")
    readiness = Readiness("loops-test")
    readiness.add("relay", state.check)
    task = asyncio.create_task(repeat(state, work, idle_s=0.01, backoff=Backoff(0.01, 0.05)))
    try:
        await asyncio.sleep(0.005)
        report = await readiness.check()
        assert report.ready and "relay" in report.degraded, report  # degraded, still ready
        assert BACKGROUND_RETRYING.labels("loops-test", "relay")._value.get() == 1
        async with asyncio.timeout(5):
            while failures or state.failing is not None:
                await asyncio.sleep(0.01)
        assert not task.done()
        assert rounds >= len(CRASH_ERRORS) + 1
        assert BACKGROUND_FAILURES.labels("loops-test", "relay")._value.get() == len(CRASH_ERRORS)
        assert BACKGROUND_RETRYING.labels("loops-test", "relay")._value.get() == 0
        assert (await readiness.check()).status == "ready"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_supervise_starts_a_loop_again_when_it_raises_or_returns() -> None:
    starts = 0

    async def loop() -> None:
        nonlocal starts
        starts += 1
        if starts == 1:
            raise RuntimeError("the loop died")
        if starts == 2:
            return  # a loop that ends is a bug too
        await asyncio.Event().wait()

    state = LoopState("loops-test", "fan-out")
    task = asyncio.create_task(supervise(state, loop))
    try:
        async with asyncio.timeout(5):
            while starts < 3:
                await asyncio.sleep(0.01)
        assert not task.done()
        assert state.failing is None
        assert BACKGROUND_FAILURES.labels("loops-test", "fan-out")._value.get() == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    backoff = Backoff(0.1, 2.0)
    pauses = [backoff.next() for _ in range(10)]
    assert 0.05 <= pauses[0] <= 0.1
    assert all(1.0 <= p <= 2.0 for p in pauses[5:])
    backoff.reset()
    assert backoff.next() <= 0.1
