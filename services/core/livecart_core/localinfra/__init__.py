"""Real infrastructure the project starts by itself for dev mode, tests and benches: a Kafka
broker (``kafka``) and Postgres (``postgres``). Downloads are cached under ``cache_dir()``."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def cache_dir() -> Path:
    """Where fetched jars and built tools live (``LIVECART_CACHE``, default ~/.cache/livecart)."""
    return Path(os.environ.get("LIVECART_CACHE", Path.home() / ".cache" / "livecart"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
