"""Background loops that never stop: a failed round of work, whatever it raised, is logged,
counted and tried again after a growing pause, so a database or broker outage is a pause in
the loop, not its end. Readiness reports a loop that is retrying as degraded
(:mod:`livecart_core.health`); ``livecart_background_retrying`` says so to the alerts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from livecart_core.metrics import BACKGROUND_FAILURES, BACKGROUND_RETRYING

log = logging.getLogger("livecart.loops")

Round = Callable[[], Awaitable[bool]]


class Backoff:
    """Exponential pauses with jitter (0.1 s, 0.2 s, ... up to ``cap_s``), so processes that
    failed together do not come back together. The cap bounds how long work waits after its
    dependency is back (the chaos goal: normal within 5 s)."""

    def __init__(self, initial_s: float = 0.1, cap_s: float = 2.0) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.failures = 0

    def next(self) -> float:
        ceiling = min(self.cap_s, self.initial_s * 2**self.failures)
        self.failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


class LoopState:
    """Whether a loop's last round failed, and why: read by readiness, set by the loop."""

    def __init__(self, service: str, task: str) -> None:
        self.service = service
        self.task = task
        self.failing: str | None = None
        self._retrying = BACKGROUND_RETRYING.labels(service, task)
        self._failures = BACKGROUND_FAILURES.labels(service, task)
        self._retrying.set(0)

    def failed(self, exc: BaseException, pause_s: float) -> None:
        first = self.failing is None
        self.failing = f"{type(exc).__name__}: {exc}".rstrip(": ")
        self._failures.inc()
        self._retrying.set(1)
        # The first failure with its traceback; the repeats of an outage in one line each.
        log.warning(
            "background work failed; retrying",
            exc_info=exc if first else None,
            extra={
                "service": self.service,
                "task": self.task,
                "why": self.failing,
                "retry_in_s": round(pause_s, 2),
            },
        )

    def succeeded(self) -> None:
        if self.failing is not None:
            log.info(
                "background work recovered", extra={"service": self.service, "task": self.task}
            )
        self.failing = None
        self._retrying.set(0)

    async def check(self) -> None:
        """A readiness check: raises while the loop is retrying."""
        if self.failing is not None:
            raise RuntimeError(f"retrying after {self.failing}")


async def repeat(
    state: LoopState, work: Round, *, idle_s: float, backoff: Backoff | None = None
) -> None:
    """Run ``work`` forever: at once again while it returns True (more is waiting), after
    ``idle_s`` when it returns False; after a failure, after the backoff's next pause."""
    backoff = backoff or Backoff()
    while True:
        try:
            more = await work()
        except Exception as exc:  # any failure: a loop that stops is a bug
            pause = backoff.next()
            state.failed(exc, pause)
            await asyncio.sleep(pause)
            continue
        backoff.reset()
        state.succeeded()
        if not more:
            await asyncio.sleep(idle_s)


async def supervise(
    state: LoopState, work: Callable[[], Awaitable[None]], *, healthy_s: float = 30.0
) -> None:
    """Run ``work`` (a coroutine that loops by itself) forever: when it raises or returns, it
    is started again after the backoff's next pause (reset once it ran ``healthy_s``)."""
    backoff = Backoff()
    loop = asyncio.get_running_loop()
    while True:
        began = loop.time()
        try:
            await work()
            raise RuntimeError("the loop returned")
        except Exception as exc:  # any failure: the loop is started again
            if loop.time() - began >= healthy_s:
                backoff.reset()
            pause = backoff.next()
            state.failed(exc, pause)
            await asyncio.sleep(pause)
            state.succeeded()  # started again; a new failure says otherwise
