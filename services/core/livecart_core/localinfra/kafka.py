"""A real single-node Apache Kafka (KRaft, broker+controller) for tests, benches and local runs.

The broker's jars come from Maven Central through ``mvn dependency:copy-dependencies`` into a
cache (``LIVECART_CACHE``, default ``~/.cache/livecart``); nothing is committed.

    python -m livecart_core.localinfra.kafka fetch          # download the jars only
    python -m livecart_core.localinfra.kafka run [--port N] # run until Ctrl-C
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from importlib import resources
from pathlib import Path

from livecart_core.localinfra import cache_dir, free_port

KAFKA_VERSION = "4.1.1"


def fetch_kafka() -> Path:
    """The folder of Kafka's jars, fetched with Maven on first use."""
    libs = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"
    if (libs / ".complete").exists():
        return libs
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed to fetch Apache Kafka: apt-get install maven")
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    pom = resources.files("livecart_core.localinfra").joinpath("kafka-pom.xml")
    with resources.as_file(pom) as pom_path:
        subprocess.run(
            [
                "mvn", "-q", "-B", "-f", str(pom_path),
                f"-Dkafka.version={KAFKA_VERSION}",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            check=True,
        )  # fmt: skip
    (staging / ".complete").write_text(KAFKA_VERSION)
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


_LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
# KafkaRaftServer says "Kafka Server started" at INFO: the readiness signal start() waits for.
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


class KafkaBroker:
    """One KRaft node on 127.0.0.1; ``start()`` returns once it accepts produce requests."""

    def __init__(self, workdir: Path | None = None, port: int = 0, heap: str = "512m") -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="livecart-kafka-"))
        self.port = port or free_port()
        self.controller_port = free_port()
        self.heap = heap
        self.process: subprocess.Popen[bytes] | None = None
        self._log_from = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, libs: Path, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            *args,
        ]

    def start(self, timeout_s: float = 60.0) -> KafkaBroker:
        libs = fetch_kafka()
        data = self.workdir / "data"
        config = self.workdir / "server.properties"
        (self.workdir / "log4j2.properties").write_text(
            _LOG4J.format(log=self.workdir / "broker.log")
        )
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=8",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                ]
            )
            + "\n"
        )
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                self._java(libs, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                           "-c", str(config)),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        out = (self.workdir / "stdout.log").open("ab")
        log = self.workdir / "broker.log"
        self._log_from = log.stat().st_size if log.exists() else 0  # a restart appends
        self.process = subprocess.Popen(
            self._java(libs, "kafka.Kafka", str(config)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        log = self.workdir / "broker.log"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"Kafka exited early; see {self.workdir}/stdout.log")
            if log.exists():
                with log.open("rb") as lines:
                    lines.seek(self._log_from)
                    if b"Kafka Server started" in lines.read():
                        return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Kafka did not start in {timeout_s}s; see {self.workdir}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would: no clean shutdown, no flush. ``start()``
        brings it back on the same port and log folder (about 12-14 s here)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session (start_new_session)
            self.process.wait()
        self.process = None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m livecart_core.localinfra.kafka")
    parser.add_argument("command", choices=["fetch", "run"])
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--dir", type=Path, default=None, help="data folder (kept between runs)")
    args = parser.parse_args()
    if args.command == "fetch":
        print(fetch_kafka())
        return
    broker = KafkaBroker(args.dir, port=args.port).start()
    print(
        f"kafka ready at {broker.bootstrap} (data in {broker.workdir}); Ctrl-C stops it", flush=True
    )
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        broker.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
