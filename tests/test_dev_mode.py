"""`make dev` from a fresh copy of the tree reaches ready, and every service answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from livecart_allinone.runner import SERVICES
from livecart_core.testing import assert_serving, free_port_block, fresh_tree

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(240)
def test_make_dev_from_a_fresh_tree(tmp_path: Path) -> None:
    tree = fresh_tree(ROOT, tmp_path / "livecart")
    # 15 HTTP ports: chat's WebSocket listens on the base + 14.
    http_base, grpc_base = free_port_block(15), free_port_block(len(SERVICES))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LIVECART_", "VIRTUAL_ENV", "UV_PROJECT"))
    }
    env |= {
        "LIVECART_DEV_HTTP_PORT_BASE": str(http_base),
        "LIVECART_DEV_GRPC_PORT_BASE": str(grpc_base),
    }
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen(
            ["make", "dev"], cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while "Livecart dev ready" not in log.read_text(errors="replace"):
            assert dev.poll() is None, f"make dev exited {dev.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        for index, service in enumerate(SERVICES):
            url = f"http://127.0.0.1:{http_base + index}"
            assert f"{url}/docs" in text
            assert_serving(url, grpc_base + index, service.name)
        token = text.split("Authorization: Bearer ")[1].split()[0]
        ws = f"ws://127.0.0.1:{http_base + 14}/ws/rooms/demo"
        assert f"ws://127.0.0.1:{http_base + 14}/ws/rooms/" in text
        with connect(f"{ws}?token={token}") as chat:
            welcome = json.loads(chat.recv(timeout=10))
            assert welcome["type"] == "welcome" and welcome["user_id"] == "dev-merchant"
            chat.send(json.dumps({"type": "comment", "text": "hello from dev", "ref": "1"}))
            frames = [json.loads(chat.recv(timeout=10)) for _ in range(2)]
            assert {"type": "ack", "ref": "1"} in frames
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGINT)
            try:
                dev.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)
                raise
    text = log.read_text()
    assert "Traceback" not in text, text
