"""CPU of a process and its children, from /proc: how the benches measure servers.

Shared by the bench scripts (run as ``python bench/<name>.py``, so this directory is on the
import path)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def process_tree(pid: int) -> list[int]:
    """`pid` and every descendant still running."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pids.extend(int(p) for p in task.read_text().split())
        i += 1
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, and its children still running."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")
