"""Lab fixtures: real sipp and tshark processes on 127.0.0.1, started and stopped by PID.

Every process gets explicit stat/error/log file names (sipp names its default files after the
parent PID in -bg mode, so we never rely on defaults), a hard wall-clock bound, and is stopped
by its own PID in the fixture's teardown. Ports come from 15200-15999, unique per test.
"""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lab.netutil import bindable, free_udp_tcp

SCENARIOS = Path(__file__).parent / "scenarios"
PORT_FIRST, PORT_LAST = 15200, 15999
_next_port = PORT_FIRST + (os.getpid() % 40) * 20  # spread concurrent sessions a little


def take_ports(n: int) -> list[int]:
    """``n`` ports free on UDP and TCP, from 15200-15999, never handed out twice in a session."""
    global _next_port
    out: list[int] = []
    tries = 0
    while len(out) < n:
        if _next_port > PORT_LAST:
            _next_port = PORT_FIRST
        port = _next_port
        _next_port += 1
        tries += 1
        if tries > PORT_LAST - PORT_FIRST:
            raise RuntimeError("no free lab ports in 15200-15999")
        if free_udp_tcp(port):
            out.append(port)
    return out


def last_stats(path: Path) -> dict[str, str]:
    """The last row of a sipp -trace_stat CSV as a dict (column -> value)."""
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


@dataclass
class Sipp:
    """One sipp process. ``stats()`` reads its CSV; ``errors()`` its unexpected messages."""

    name: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    argv: list[str]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"sipp {self.name} still running after {timeout} s; "
                                 f"errors: {self.errors()[-2000:]}") from None

    async def wait_async(self, timeout: float) -> int:
        end = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > end:
                self.stop()
                raise AssertionError(f"sipp {self.name} still running after {timeout} s; "
                                     f"errors: {self.errors()[-2000:]}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def stop(self, soft_timeout: float = 5.0) -> None:
        """SIGUSR1 (sipp's soft exit: finish calls, write stats), then SIGKILL by PID."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGUSR1)
        try:
            self.proc.wait(soft_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def stats(self) -> dict[str, str]:
        return last_stats(self.files["stat"])

    def stat(self, column: str) -> int:
        return int(self.stats().get(column, "0") or 0)

    def errors(self) -> str:
        p = self.files.get("err")
        return p.read_text(errors="replace") if p is not None and p.exists() else ""

    def logs(self) -> str:
        p = self.files.get("log")
        return p.read_text(errors="replace") if p is not None and p.exists() else ""

    def messages(self) -> str:
        p = self.files.get("msg")
        return p.read_text(errors="replace") if p is not None and p.exists() else ""


class SippFactory:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Sipp] = []

    def start(self, name: str, args: Sequence[str], *, wall: float = 120.0,
              trace_msg: bool = False, trace_logs: bool = False) -> Sipp:
        """Start ``sipp <args>`` as our direct child (so SIGUSR1 reaches it), bounded by sipp's
        own global ``-timeout wall``; its files live under the test's tmp dir."""
        files = {"stat": self.workdir / f"{name}.csv", "err": self.workdir / f"{name}_err.log",
                 "screen": self.workdir / f"{name}_screen.txt"}
        argv = ["sipp", *args, "-nostdin", "-timeout", f"{int(wall)}s",
                "-trace_stat", "-stf", str(files["stat"]), "-fd", "1",
                "-trace_err", "-error_file", str(files["err"]),
                "-trace_screen", "-screen_file", str(files["screen"])]
        if trace_msg:
            files["msg"] = self.workdir / f"{name}_msg.log"
            argv += ["-trace_msg", "-message_file", str(files["msg"])]
        if trace_logs:
            files["log"] = self.workdir / f"{name}_logs.log"
            argv += ["-trace_logs", "-log_file", str(files["log"])]
        out = (self.workdir / f"{name}.out").open("wb")
        proc = subprocess.Popen(argv, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        out.close()
        sipp = Sipp(name, proc, self.workdir, argv, files)
        self.started.append(sipp)
        return sipp

    def close(self) -> None:
        for s in self.started:
            s.stop(soft_timeout=3.0)


def wait_udp_listening(port: int, timeout: float = 5.0, transport: str = "udp") -> None:
    """Poll until something is bound on 127.0.0.1:port (sipp's readiness), by trying to bind
    it ourselves: no probe packet or connection reaches the peer."""
    kind = socket.SOCK_STREAM if transport in ("tcp", "tls") else socket.SOCK_DGRAM
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not bindable(port, kind):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listening on {transport} 127.0.0.1:{port} after {timeout} s")


def wait_tcp_listening(port: int, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on tcp 127.0.0.1:{port} after {timeout} s")




@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SippFactory]:
    if shutil.which("sipp") is None:
        pytest.skip("sipp not installed (apt-get install sip-tester)")
    factory = SippFactory(tmp_path)
    yield factory
    factory.close()


@dataclass
class Capture:
    """A tshark live capture on lo, bounded by its own autostop, stopped by PID."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stop(self, timeout: float = 5.0) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.out.read_text(errors="replace")


class TsharkFactory:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Capture] = []

    def start(self, port: int, *, fields: Sequence[str], display_filter: str,
              seconds: int = 30) -> Capture:
        """Capture udp ``port`` on lo decoded as SIP; one ``|``-separated line per packet."""
        out = self.workdir / f"tshark_{port}.txt"
        err = self.workdir / f"tshark_{port}.err"
        argv = ["tshark", "-i", "lo", "-f", f"udp port {port}", "-d", f"udp.port=={port},sip",
                "-a", f"duration:{seconds}", "-l", "-Y", display_filter, "-T", "fields",
                "-E", "separator=|"]
        for f in fields:
            argv += ["-e", f]
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(argv, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
        cap = Capture(proc, out, err)
        self.started.append(cap)
        end = time.monotonic() + 10
        while "Capturing on" not in err.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > end:
                cap.stop()
                raise AssertionError(f"tshark did not start: {err.read_text()[-500:]}")
            time.sleep(0.05)
        return cap

    def close(self) -> None:
        for c in self.started:
            c.stop()


@pytest.fixture
def tshark(tmp_path: Path) -> Iterator[TsharkFactory]:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed (apt-get install tshark)")
    factory = TsharkFactory(tmp_path)
    yield factory
    factory.close()


class Lab:
    """Helpers handed to tests as the ``lab`` fixture (tests do not import conftest)."""

    scenarios = SCENARIOS
    take_ports = staticmethod(take_ports)
    wait_udp_listening = staticmethod(wait_udp_listening)
    wait_tcp_listening = staticmethod(wait_tcp_listening)
    last_stats = staticmethod(last_stats)


@pytest.fixture
def lab() -> Lab:
    return Lab()
