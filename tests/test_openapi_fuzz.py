"""Every service's served OpenAPI, fuzzed by Schemathesis against the running platform (`make
dev`'s one process: embedded Postgres, every service on its own port) with the dev token.

Each run must find no server error, no status code or content type the schema does not
document, no answer that breaks its schema, and no method, header or auth answer that
contradicts it. Not checked:

- that every schema-valid request is accepted (``positive_data_acceptance``): ids in bodies
  that do not exist (404), states that refuse an action (409) and rules that JSON Schema cannot
  say (ends after it starts) refuse valid shapes by design, with a documented 4xx;
- that every schema-violating request is refused (``negative_data_rejection``): FastAPI
  validates parsed JSON in pydantic's lax Python mode, which reads ``false`` as 0, ``0`` as
  false and ``"5"`` as 5 in a body. Nothing unsafe gets through that way (bounds, text rules and
  types still hold), but the service is more lenient than its schema.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from livecart_allinone.runner import SERVICES
from livecart_core.testing import free_port_block, wait_until

CHECKS_SKIPPED = "positive_data_acceptance,negative_data_rejection"
MAX_EXAMPLES = 20
SEED = 20261207


class DevPlatform:
    def __init__(self, http_base: int, token: str) -> None:
        self.http_base = http_base
        self.token = token

    def url(self, service: str) -> str:
        index = [s.name for s in SERVICES].index(service)
        return f"http://127.0.0.1:{self.http_base + index}"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevPlatform]:
    workdir = tmp_path_factory.mktemp("fuzz")
    http_base, grpc_base = free_port_block(15), free_port_block(len(SERVICES))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECART_")}
    env |= {
        "LIVECART_DEV_DIR": str(workdir / "dev"),
        "LIVECART_DEV_HTTP_PORT_BASE": str(http_base),
        "LIVECART_DEV_GRPC_PORT_BASE": str(grpc_base),
    }
    log = workdir / "dev.log"
    with log.open("wb") as out:
        dev = subprocess.Popen(
            [sys.executable, "-m", "livecart_allinone"], env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: "Livecart dev ready" in log.read_text(errors="replace"), 120)
        token = log.read_text().split("Authorization: Bearer ")[1].split()[0]
        yield DevPlatform(http_base, token)
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-5000:]


@pytest.mark.timeout(280)
@pytest.mark.parametrize("service", [s.name for s in SERVICES])
def test_the_served_openapi_holds_under_fuzzing(
    platform: DevPlatform, service: str, tmp_path: Path
) -> None:
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run",
        f"{platform.url(service)}/openapi.json",
        "--header", f"Authorization: Bearer {platform.token}",
        "--checks", "all", "--exclude-checks", CHECKS_SKIPPED,
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
        "--generation-database", "none", "--workers", "1",
        "--request-timeout", "20", "--no-color", "--output-truncate", "true",
    ]  # fmt: skip
    hooks = {"SCHEMATHESIS_HOOKS": "fuzz_hooks", "PYTHONPATH": str(Path(__file__).parent)}
    run = subprocess.run(
        command, cwd=tmp_path, env=os.environ | hooks, capture_output=True, text=True,
        timeout=260, check=False,
    )  # fmt: skip
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-12000:]
    assert "No API operations found" not in report
