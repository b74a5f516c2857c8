"""pytest plugin shared by every Livecart test suite (loaded with ``-p livecart_core.testing``).

Real infrastructure, started once per test session: an Apache Kafka broker (KRaft) and an
embedded Postgres. Plus helpers to run a service as its own process, the way it is deployed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from livecart_core.localinfra.kafka import KafkaBroker, free_port
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.telemetry import setup_tracing

__all__ = ["ServiceProcess", "free_port", "wait_until"]


def pytest_configure(config: pytest.Config) -> None:
    # The SDK provider every service installs at start-up, so in-process tests see real spans.
    setup_tracing("livecart-tests", None)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres().start()
    try:
        yield server
    finally:
        server.stop()


def wait_until(predicate: object, timeout_s: float = 10.0, interval_s: float = 0.05) -> None:
    """Poll ``predicate()`` until truthy; fail the test after ``timeout_s``."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s: {predicate}")


class ServiceProcess:
    """A service started as ``python -m <module>`` with its own environment, as in production."""

    def __init__(self, module: str, env: Mapping[str, str], *, args: tuple[str, ...] = ()) -> None:
        self.module = module
        self.http_port = int(env.get("LIVECART_HTTP_PORT") or free_port())
        self.grpc_port = int(env.get("LIVECART_GRPC_PORT") or free_port())
        self.env = {
            **os.environ,
            "LIVECART_HTTP_HOST": "127.0.0.1",
            "LIVECART_GRPC_HOST": "127.0.0.1",
            "LIVECART_HTTP_PORT": str(self.http_port),
            "LIVECART_GRPC_PORT": str(self.grpc_port),
            "LIVECART_LOG_FORMAT": "text",
            "LIVECART_READINESS_INTERVAL_S": "0.2",
            **env,
        }
        self.args = args
        self.log = Path(tempfile.mkstemp(prefix=f"{module}-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout_s: float = 30.0) -> ServiceProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.module} exited {self.process.returncode}:\n{self.output}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"{self.module} did not answer /healthz in {timeout_s}s:\n{self.output}")

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, wait, and return the exit code (killed processes fail the caller's check)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return -9
        return self.process.returncode

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
