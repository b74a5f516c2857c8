"""The event contracts in protos/ lint clean and match the generated code shipped in livecart/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from livecart.events.v1 import stream_lifecycle_pb2
from livecart_core.localinfra import cache_dir

REPO_ROOT = Path(__file__).resolve().parents[3]
PROTO_ROOT = REPO_ROOT / "protos"


def find_buf() -> str | None:
    found = shutil.which("buf")
    if found:
        return found
    tools = cache_dir() / "bin" / "buf"  # where `make tools` installs it
    return str(tools) if tools.is_file() else None


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(PROTO_ROOT / "generate.py"), "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_passes() -> None:
    buf = find_buf()
    assert buf is not None, "buf not found on PATH or in the tools cache; run `make tools`"
    result = subprocess.run(
        [buf, "lint"], cwd=PROTO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stream_lifecycle_round_trips() -> None:
    sent = stream_lifecycle_pb2.StreamLifecycle(
        room_id="room-1",
        stream_id="stream-7",
        edge="eu-west-1/edge-3",
        state=stream_lifecycle_pb2.STREAM_STATE_FAILED,
        occurred_at=Timestamp(seconds=1_700_000_000, nanos=5),
        reason="publisher timed out",
    )

    received = stream_lifecycle_pb2.StreamLifecycle()
    received.ParseFromString(sent.SerializeToString())

    assert received == sent
    assert received.state == stream_lifecycle_pb2.STREAM_STATE_FAILED
    assert received.occurred_at.ToNanoseconds() == 1_700_000_000_000_000_005
