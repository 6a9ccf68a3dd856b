"""One edge per data directory: an exclusive ``flock`` on ``<data dir>/edge.lock``.

Two edges on one data directory would both append to the ledger, the audit log and the call
log, and each would release the other's channels as "left over from a crash" at start. The
edge takes the lock before it binds anything and keeps it for its lifetime; the file holds
its PID so that a second edge can say who has it. The kernel drops the lock when the process
ends, however it ends, so the lock file left behind by a dead edge is no obstacle (the file is
never deleted: deleting it would let two processes lock two different files).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_NAME = "edge.lock"


class DataDirBusy(RuntimeError):
    """Another process holds the data directory's lock (the message names file and PID)."""

    def __init__(self, path: Path, pid: str) -> None:
        self.path = path
        self.pid = pid
        who = f"PID {pid}" if pid else "another process (PID not written yet)"
        super().__init__(f"data directory {path.parent} is in use: {path} is locked by {who}")


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Create ``data_dir`` if needed, lock ``edge.lock`` in it without waiting and write our
    PID there. The returned file holds the lock: keep it open as long as the edge runs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    f = open(path, "a+", encoding="ascii")  # noqa: SIM115 - held open for the process lifetime
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read(32).strip()
        f.close()
        raise DataDirBusy(path, pid) from None
    except BaseException:
        f.close()
        raise
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f
