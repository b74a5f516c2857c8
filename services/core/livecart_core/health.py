"""Readiness: "this pod can serve what it is for", from named checks re-run in the background.

Kubernetes takes an unready pod out of its Service. A dependency every pod shares (the
database, the broker) being down is therefore *not* unreadiness: pulling every pod would turn
a broker outage, which the outbox rides out, into a checkout outage, and a database outage,
which requests answer with 503 + ``Retry-After``, into refused connections. Such checks are
*degraded* when they fail: the pod stays ready, ``/readyz?verbose`` and
``livecart_dependency_up`` say what is degraded and why, and alerts fire on them. A check added
with ``required=True`` (a pod that truly cannot serve without it) and draining at stop make a
pod unready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from grpc_health.v1 import health, health_pb2

from livecart_core.metrics import DEPENDENCY_UP, SERVICE_READY

Check = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Report:
    """One round of checks: ``failing`` (required checks, the pod is unready) and
    ``degraded`` (the rest), each ``{name: reason}``."""

    ready: bool
    failing: dict[str, str] = field(default_factory=dict)
    degraded: dict[str, str] = field(default_factory=dict)
    checks: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        if not self.ready:
            return "not_ready"
        return "degraded" if self.degraded else "ready"


class Readiness:
    """A service is ready when every required check passes and it is not draining."""

    def __init__(self, service: str, timeout_s: float = 2.0) -> None:
        self.service = service
        self.timeout_s = timeout_s
        self.checks: dict[str, Check] = {}
        self.required: set[str] = set()
        self.grpc_health = health.aio.HealthServicer()
        self.draining = False
        self.last: Report | None = None

    @property
    def ready(self) -> bool:
        return self.last is not None and self.last.ready

    def add(self, name: str, check: Check, *, required: bool = False) -> None:
        self.checks[name] = check
        if required:
            self.required.add(name)

    async def check(self) -> Report:
        """Run every check at once (each within ``timeout_s``) and publish the result."""
        results = await asyncio.gather(
            *(asyncio.wait_for(c(), self.timeout_s) for c in self.checks.values()),
            return_exceptions=True,
        )
        reasons = {
            name: _reason(r)
            for name, r in zip(self.checks, results, strict=True)
            if isinstance(r, BaseException)
        }
        failing = {n: why for n, why in reasons.items() if n in self.required}
        if self.draining:
            failing["draining"] = "the service is stopping"
        report = Report(
            ready=not failing,
            failing=failing,
            degraded={n: why for n, why in reasons.items() if n not in self.required},
            checks=tuple(self.checks),
        )
        for name in self.checks:
            DEPENDENCY_UP.labels(self.service, name).set(0 if name in reasons else 1)
        await self._publish(report)
        return report

    async def drain(self) -> None:
        """Report unready from now on (the service is stopping), so traffic moves away."""
        self.draining = True
        last = self.last or Report(ready=True)
        failing = {**last.failing, "draining": "the service is stopping"}
        await self._publish(Report(False, failing, last.degraded, last.checks))

    async def _publish(self, report: Report) -> None:
        self.last = report
        SERVICE_READY.labels(self.service).set(1 if report.ready else 0)
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if report.ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.grpc_health.set("", status)
        await self.grpc_health.set(self.service, status)

    async def watch(self, interval_s: float) -> None:
        """Re-check forever, so /readyz, gRPC health and the gauges follow the dependencies
        (a probe reads the last result: it never waits on a dependency that hangs)."""
        while True:
            await self.check()
            await asyncio.sleep(interval_s)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "TimeoutError: no answer in time"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")
