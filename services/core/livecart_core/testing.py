"""pytest plugin shared by every Livecart test suite (loaded with ``-p livecart_core.testing``).

Real infrastructure, started once per test session: an Apache Kafka broker (KRaft) and an
embedded Postgres. Plus helpers to run a service as its own process, the way it is deployed.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, settings

from livecart_core.localinfra import free_port
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.telemetry import setup_tracing

__all__ = [
    "ServiceProcess",
    "assert_serving",
    "find_tool",
    "free_port",
    "free_port_block",
    "fresh_tree",
    "wait_until",
]


def find_tool(name: str, install: str) -> str:
    """``name`` on PATH, else the one the Makefile builds into $LIVECART_CACHE/bin; a test
    fails with how to ``install`` it when it is neither."""
    on_path = shutil.which(name)
    if on_path:
        return on_path
    cache = Path(os.environ.get("LIVECART_CACHE", Path.home() / ".cache" / "livecart"))
    built = cache / "bin" / name
    if os.access(built, os.X_OK):
        return str(built)
    pytest.fail(f"{name} is not on PATH nor at {built}: {install}", pytrace=False)


TEST_AUTH_SECRET = "livecart-tests-signing-secret-0123456789abcdef"


# Property tests run the same examples on every run and machine unless asked otherwise: a CI
# run that fails fails again on a laptop, and never flakes on a busy shared runner. Set
# HYPOTHESIS_PROFILE=explore to search with fresh random examples, 1,000 a test (where the
# test does not set its own count) and a database that replays what failed.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, max_examples=1000)


def pytest_configure(config: pytest.Config) -> None:
    # The SDK provider every service installs at start-up, so in-process tests see real spans.
    setup_tracing("livecart-tests", None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
        self.ws_port = int(env.get("LIVECART_WS_PORT") or free_port())  # chat's viewer port
        self.env = {
            **os.environ,
            "LIVECART_HTTP_HOST": "127.0.0.1",
            "LIVECART_GRPC_HOST": "127.0.0.1",
            "LIVECART_HTTP_PORT": str(self.http_port),
            "LIVECART_GRPC_PORT": str(self.grpc_port),
            "LIVECART_WS_HOST": "127.0.0.1",
            "LIVECART_WS_PORT": str(self.ws_port),
            "LIVECART_LOG_FORMAT": "text",
            "LIVECART_READINESS_INTERVAL_S": "0.2",
            "LIVECART_AUTH_SECRET": TEST_AUTH_SECRET,
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
                raise AssertionError(
                    f"{self.module} exited {self.process.returncode}:\n{self.output}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(
            f"{self.module} did not answer /healthz in {timeout_s}s:\n{self.output}"
        )

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


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive free TCP ports on 127.0.0.1."""
    for _ in range(200):
        base = random.randint(20000, 60000 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no block of {count} free ports")


def grpc_health(port: int, service: str = "") -> str:
    """The gRPC health status name (SERVING, NOT_SERVING, ...) a server reports."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=3)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=3).status_code == 200
    except httpx.TransportError:
        return False


def assert_serving(http_url: str, grpc_port: int, service: str) -> None:
    """Every endpoint a service must answer: liveness, readiness, metrics, gRPC health."""
    assert httpx.get(f"{http_url}/healthz", timeout=3).json() == {
        "status": "ok",
        "service": service,
    }
    wait_until(lambda: ready(http_url), timeout_s=15)
    metrics = httpx.get(f"{http_url}/metrics", timeout=3)
    assert metrics.status_code == 200
    assert f'livecart_service_ready{{service="{service}"}} 1.0' in metrics.text
    wait_until(lambda: grpc_health(grpc_port, service) == "SERVING", timeout_s=10)
    assert grpc_health(grpc_port) == "SERVING"


def fresh_tree(root: Path, dest: Path) -> Path:
    """Copy what a clone of ``root`` would hold (tracked plus untracked, unignored files)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = root / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def assert_service_runs(service: str, env: Mapping[str, str]) -> None:
    """``python -m livecart_<service>`` starts, answers every endpoint, and stops cleanly."""
    with ServiceProcess(f"livecart_{service}", env) as process:
        assert_serving(process.url, process.grpc_port, service)
        assert process.stop() == 0, process.output


async def assert_migrates(service: str, database_url: str) -> None:
    """``python -m livecart_<service> migrate`` succeeds and leaves the service's schema."""
    migrate = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"livecart_{service}", "migrate",
        env={**os.environ, "LIVECART_DATABASE_URL": database_url},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await migrate.communicate()
    assert migrate.returncode == 0, stderr.decode()
    conn = await asyncpg.connect(database_url)
    try:
        table = await conn.fetchval("select to_regclass($1)", f"{service}.schema_migrations")
        assert table is not None, f"no {service}.schema_migrations after migrate"
    finally:
        await conn.close()
