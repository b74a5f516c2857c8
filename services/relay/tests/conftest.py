"""Shared by the relay's WebRTC tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

WAIT = 15.0  # seconds a WebRTC step may take on this 2-core machine


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``WAIT`` seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
