"""Two edges on one data directory: the second refuses to start, naming the lock and its holder.

Both would otherwise write the same ledger, audit log and call log, and each would release the
other's channels as crash leftovers. The second ``softphone edge`` (its own SIP port, so that
the port is not what stops it) exits 2 before binding anything; the first keeps answering.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess

pytestmark = pytest.mark.lab

RTP = (21000, 21999)


def options_status(port: int, timeout: float = 3.0) -> str:
    """Send one OPTIONS from a raw socket; the status line of the answer ("" if none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        src = s.getsockname()[1]
        s.settimeout(timeout)
        s.sendto((f"OPTIONS sip:edge@127.0.0.1:{port} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP 127.0.0.1:{src};branch=z9hG4bK-lock{src}\r\n"
                  "From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:edge@127.0.0.1>\r\n"
                  f"Call-ID: lock{src}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                  "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", port))
        try:
            return s.recv(65535).decode(errors="replace").split("\r\n", 1)[0]
        except TimeoutError:
            return ""


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.timeout(90)
def test_a_second_edge_on_the_same_data_dir_exits_naming_the_lock(tmp_path: Path,
                                                                  lab: Any) -> None:
    first_port, second_port = lab.take_ports(2)
    data = tmp_path / "edge"
    first = EdgeProcess(data, first_port, RTP).start()
    try:
        assert options_status(first_port) == "SIP/2.0 200 OK"
        holder = (data / "edge.lock").read_text().strip()
        assert holder.isdigit(), holder
        t0 = time.monotonic()
        second = subprocess.run(
            ["timeout", "-k", "5", "15", sys.executable, "-m", "softphone", "edge",
             "--sip-port", str(second_port), "--tls-port", "0",
             "--rtp-ports", f"{RTP[0]}-{RTP[1]}", "--data-dir", str(data)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=25)
        took = time.monotonic() - t0
        assert second.returncode == 2, (second.returncode, second.stdout, second.stderr)
        assert f"{data / 'edge.lock'} is locked by PID {holder}" in second.stderr, second.stderr
        assert "listening" not in second.stdout, second.stdout
        assert udp_port_free(second_port), "the second edge bound its SIP port"
        assert took < 15, took
        # the lock still names the first edge, which still answers
        assert (data / "edge.lock").read_text().strip() == holder
        assert options_status(first_port) == "SIP/2.0 200 OK"
        # killed outright, the first edge leaves its lock file (and PID) behind: a stale
        # file stops no one, the kernel dropped the lock with the process
        first.crash()
    finally:
        first.stop()
    assert (data / "edge.lock").read_text().strip() == holder
    again = EdgeProcess(data, second_port, RTP).start()
    try:
        assert options_status(second_port) == "SIP/2.0 200 OK"
        assert (data / "edge.lock").read_text().strip() not in ("", holder)
    finally:
        again.stop()
