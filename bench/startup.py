"""Start-up time of the all-in-one dev mode.

From `make dev` in a fresh copy of the tree (dependencies already installed, so `uv sync` is
not timed; a new embedded Postgres is initialised) until every service's /readyz answers 200.
Then once more in the same tree (Postgres data folder already there).

    uv run python bench/startup.py [--runs 3]

Prints `dev_ready_s` (fresh tree, median), `dev_ready_warm_s` (existing data, median).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from livecart_allinone.runner import SERVICES
from livecart_core.testing import free_port_block, fresh_tree

ROOT = Path(__file__).resolve().parents[1]


def all_ready(base: int) -> bool:
    try:
        return all(
            httpx.get(f"http://127.0.0.1:{base + i}/readyz", timeout=1).status_code == 200
            for i in range(len(SERVICES))
        )
    except httpx.TransportError:
        return False


def time_dev(tree: Path, env: dict[str, str]) -> float:
    http_base, grpc_base = free_port_block(len(SERVICES)), free_port_block(len(SERVICES))
    run_env = env | {
        "LIVECART_DEV_HTTP_PORT_BASE": str(http_base),
        "LIVECART_DEV_GRPC_PORT_BASE": str(grpc_base),
    }
    started = time.perf_counter()
    dev = subprocess.Popen(
        ["make", "-s", "dev"], cwd=tree, env=run_env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        while not all_ready(http_base):
            if dev.poll() is not None:
                raise RuntimeError(f"make dev exited {dev.returncode}")
            if time.perf_counter() - started > 120:
                raise RuntimeError("make dev not ready in 120 s")
            time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        dev.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVECART_", "VIRTUAL_ENV"))}
    fresh, warm = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="livecart-startup-") as tmp:
            tree = fresh_tree(ROOT, Path(tmp) / "livecart")
            subprocess.run(["make", "-s", "sync"], cwd=tree, env=env, check=True)
            fresh.append(time_dev(tree, env))
            warm.append(time_dev(tree, env))
    print(f"dev_ready_s={statistics.median(fresh):.2f} s")
    print(f"dev_ready_warm_s={statistics.median(warm):.2f} s")
    print(f"dev_services={len(SERVICES)} services")


if __name__ == "__main__":
    main()
