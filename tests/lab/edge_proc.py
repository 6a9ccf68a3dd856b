"""The edge as the product runs it: ``softphone edge`` in its own process, on loopback.

Started with flags that override the embedded defaults (ports, RTP range, data dir), ready
when it prints its banner, stopped with SIGTERM (it BYEs its calls and frees its ports) and,
if that fails, by its PID. ``calls()`` reads the structured call log it wrote.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

FAKETIME_LIB = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)


def days_later(days: int) -> list[str]:
    """A ``wrap`` that runs the edge ``days`` days in the future: libfaketime preloaded by
    env(1). Not the faketime(1) wrapper: that one leaves a semaphore and a shared memory
    segment named after its PID in /dev/shm whenever it is stopped by a signal, and a later
    run that reuses the PID then fails ("sem_open: File exists")."""
    assert FAKETIME_LIB is not None, "libfaketime missing"
    return ["env", f"LD_PRELOAD={FAKETIME_LIB}", f"FAKETIME=+{days}d"]


class EdgeProcess:
    def __init__(self, data_dir: Path, sip_port: int, rtp: tuple[int, int], *,
                 extra: list[str] | None = None, lifetime: int = 300,
                 wrap: list[str] | None = None, http_port: int = 0,
                 drain_timeout: float = 0.0) -> None:
        """``wrap``: a command the edge runs under, e.g. ``days_later(100)``.
        ``http_port``: the operator's HTTP listener (0: none, so that concurrent edges do not
        fight over 8080); ``drain_timeout``: how long SIGTERM lets calls go on (0: BYE at
        once, what ``stop()`` wants)."""
        self.data_dir = data_dir
        self.sip_port = sip_port
        self.rtp = rtp
        self.http_port = http_port
        self.argv = ["timeout", "-k", "5", str(lifetime), *(wrap or []), sys.executable,
                     "-m", "softphone",
                     "edge", "--sip-port", str(sip_port), "--tls-port", "0",
                     "--rtp-ports", f"{rtp[0]}-{rtp[1]}", "--data-dir", str(data_dir),
                     "--http-port", str(http_port), "--drain-timeout", str(drain_timeout),
                     *(extra or [])]
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._ready = threading.Event()

    def start(self, timeout: float = 20.0) -> EdgeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("edge did not start:\n" + self.log())
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if "softphone edge listening" in line:
                self._ready.set()

    def log(self) -> str:
        return "".join(self.output)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # reaches timeout(1), which forwards it
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def crash(self) -> None:
        """SIGKILL the edge itself (the child of timeout(1)): no BYE, no cleanup, as a power
        cut or an OOM kill would leave it."""
        if self.proc is None:
            return
        kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
                              capture_output=True, text=True, timeout=10).stdout.split()
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def edge_pid(self) -> int:
        """The edge's own PID (the child of timeout(1)), for /proc and signals."""
        assert self.proc is not None
        kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
                              capture_output=True, text=True, timeout=10).stdout.split()
        assert len(kids) == 1, kids
        return int(kids[0])

    def open_fds(self) -> int:
        """How many file descriptors the edge process has open (/proc/PID/fd)."""
        return len(os.listdir(f"/proc/{self.edge_pid()}/fd"))

    def status(self) -> dict[str, Any]:
        path = self.data_dir / "status.json"
        try:
            loaded: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return loaded

    def wait_idle(self, timeout: float = 20.0) -> dict[str, Any]:
        """Poll status.json (written every second) until no call, media or port is held."""
        end = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < end:
            st = self.status()
            if st and st["live_calls"] == 0 and st["ports_in_use"] == 0 \
                    and st["media_objects"] == 0:
                return st
            time.sleep(0.2)
        return st

    def rtp_sockets(self) -> list[int]:
        """UDP ports inside the RTP range that the edge process really has open (from ss)."""
        if self.proc is None:
            return []
        kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
                              capture_output=True, text=True, timeout=10).stdout.split()
        pids = {str(self.proc.pid), *kids}
        out = subprocess.run(["ss", "-uanp"], capture_output=True, text=True, timeout=10).stdout
        ports = []
        for line in out.splitlines():
            if not any(f"pid={p}," in line for p in pids):
                continue
            local = line.split()[3]
            port = int(local.rsplit(":", 1)[1])
            if self.rtp[0] <= port <= self.rtp[1]:
                ports.append(port)
        return ports

    def calls(self) -> list[dict[str, Any]]:
        path = self.data_dir / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_calls(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.calls()
            if len(got) >= n:
                return got
            time.sleep(0.1)
        return self.calls()
