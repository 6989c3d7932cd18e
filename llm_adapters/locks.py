"""Who is working where: a lock file beside a live job's record (or in a sweep's directory) naming its host and
process, and whether that process still runs. A lock whose process is gone is stale: the work it marked is
resumable; one from another host counts as live, as nothing here can look at that host's processes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

LOCK = ".running"  # beside a live job's results.json: its host and process id


def lock(job_dir: Path, name: str = LOCK) -> Path:
    """Mark ``job_dir`` as the directory of a live job (removed when the job ends; stale once its process is gone);
    ``name``: the lock's file (a sweep's directory has one of its own, ``sweep.SWEEP_LOCK``)."""
    path = job_dir / name
    path.write_text(f"{socket.gethostname()} {os.getpid()}\n")
    return path


def live(job_dir: Path, name: str = LOCK) -> bool:
    """Whether a job is running in ``job_dir`` now: its lock names a process that still exists (on this host; a lock
    from another host counts as live, as it cannot be checked from here)."""
    path = job_dir / name
    try:
        host, pid = path.read_text().split()
    except (OSError, ValueError):
        return False
    return process_alive(host, int(pid))


def process_alive(host: str, pid: int) -> bool:
    """Whether process ``pid`` of ``host`` exists: looked at on this host; one on another host is taken as alive
    (nothing here can look)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
