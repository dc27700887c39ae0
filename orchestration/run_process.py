"""Which process runs a run: tags on runs whose steps execute in the process that started them
(`ragline materialize`, the in_process executor), so that a sweep can tell when it died."""

from __future__ import annotations

import os
import socket

HOST_TAG = "ragline/host"
PID_TAG = "ragline/pid"
PROCESS_START_TAG = "ragline/process_start"  # the pid's start time: a reused pid is not the run's


def process_tags() -> dict[str, str]:
    """This process, as run tags: host, pid and the pid's start time."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PROCESS_START_TAG: process_start(pid) or ""}


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None if
    there is no such process (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(pid: int, started: str) -> bool:
    """True while the process `pid` that started at `started` (process_start) runs."""
    if os.path.isdir("/proc"):
        current = process_start(pid)
        return current is not None and (not started or current == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
