"""Readiness: named dependency checks whose result drives /readyz, gRPC health and a gauge."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from grpc_health.v1 import health, health_pb2

from livecart_core.metrics import SERVICE_READY

Check = Callable[[], Awaitable[None]]


class Readiness:
    """A service is ready when every registered check returns without raising."""

    def __init__(self, service: str, timeout_s: float = 2.0) -> None:
        self.service = service
        self.timeout_s = timeout_s
        self.checks: dict[str, Check] = {}
        self.grpc_health = health.aio.HealthServicer()
        self.ready = False

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def check(self) -> dict[str, str]:
        """Run every check; returns ``{name: reason}`` for those failing (empty when ready)."""
        results = await asyncio.gather(
            *(asyncio.wait_for(c(), self.timeout_s) for c in self.checks.values()),
            return_exceptions=True,
        )
        failures = {
            name: f"{type(r).__name__}: {r}".rstrip(": ")
            for name, r in zip(self.checks, results, strict=True)
            if isinstance(r, BaseException)
        }
        await self._publish(not failures)
        return failures

    async def _publish(self, ready: bool) -> None:
        self.ready = ready
        SERVICE_READY.labels(self.service).set(1 if ready else 0)
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.grpc_health.set("", status)
        await self.grpc_health.set(self.service, status)

    async def watch(self, interval_s: float) -> None:
        """Re-check forever, so gRPC health and the gauge follow the dependencies."""
        while True:
            await self.check()
            await asyncio.sleep(interval_s)
