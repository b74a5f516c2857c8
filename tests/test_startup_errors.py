"""Bad configuration fails fast at start-up with one clear line naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import TEST_AUTH_SECRET, free_port


def start(module: str, **env: str) -> tuple[int, str, float]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", module],
        env={
            **os.environ,
            "LIVECART_HTTP_PORT": str(free_port()),
            "LIVECART_GRPC_PORT": "0",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stderr.strip(), time.monotonic() - began


@pytest.mark.parametrize(
    ("module", "env", "setting"),
    [
        ("livecart_relay", {"LIVECART_GRPC_PORT": "fifty"}, "LIVECART_GRPC_PORT"),
        ("livecart_chat", {"LIVECART_BUS": "rabbitmq"}, "LIVECART_BUS"),
        (
            "livecart_ingest",
            {"LIVECART_KAFKA_CONNECT_TIMEOUT_S": "-1"},
            "LIVECART_KAFKA_CONNECT_TIMEOUT_S",
        ),
        ("livecart_commerce", {"LIVECART_BUS": "memory"}, "LIVECART_DATABASE_URL"),
    ],
)
def test_malformed_or_missing_setting(module: str, env: dict[str, str], setting: str) -> None:
    code, stderr, _ = start(module, **env)
    assert code == 2
    assert len(stderr.splitlines()) == 1, stderr
    assert "cannot start" in stderr and setting in stderr


def test_unreachable_kafka_fails_fast(postgres: EmbeddedPostgres) -> None:
    code, stderr, elapsed = start(
        "livecart_analytics",
        LIVECART_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        LIVECART_KAFKA_CONNECT_TIMEOUT_S="2",
        LIVECART_DATABASE_URL=postgres.url,
    )
    assert code == 2
    assert len(stderr.splitlines()) == 1, stderr
    assert "LIVECART_KAFKA_BOOTSTRAP" in stderr and "cannot reach Kafka" in stderr
    assert elapsed < 15


def test_unreachable_database_fails_fast(kafka_broker: KafkaBroker) -> None:
    code, stderr, elapsed = start(
        "livecart_control",
        LIVECART_AUTH_SECRET=TEST_AUTH_SECRET,
        LIVECART_KAFKA_BOOTSTRAP=kafka_broker.bootstrap,
        LIVECART_DATABASE_URL=f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/postgres",
        LIVECART_DATABASE_CONNECT_TIMEOUT_S="2",
    )
    assert code == 2
    assert len(stderr.splitlines()) == 1, stderr
    assert "LIVECART_DATABASE_URL" in stderr and "s3cret" not in stderr
    assert elapsed < 15


def test_port_in_use_names_the_setting(kafka_broker: KafkaBroker) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr, _ = start(
            "livecart_transcode",
            LIVECART_KAFKA_BOOTSTRAP=kafka_broker.bootstrap,
            LIVECART_HTTP_PORT=str(port),
        )
    assert code == 2
    assert len(stderr.splitlines()) == 1, stderr
    assert f"LIVECART_HTTP_PORT={port}" in stderr
