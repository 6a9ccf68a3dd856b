"""Retransmission timers seen on the wire: tshark captures what the core sends through a
real UDP socket on loopback, against a peer that never answers, with the real clock.

T1 is shortened (0.1 s) to keep the test short; the schedule is the RFC's: INVITE doubling
without a cap (timer A), non-INVITE doubling capped at T2 (timer E).
"""

from __future__ import annotations

import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from softphone.sip.core import Address, SipCore
from softphone.sip.events import TransactionTimeout
from softphone.sip.message import Headers, SipRequest

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed"),
]


@pytest.fixture
def silent_peer() -> Iterator[socket.socket]:
    """A UDP socket that receives and never answers (no ICMP port unreachable either)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def capture(port: int, seconds: float) -> tuple[subprocess.Popen[str], list[str]]:
    """Start tshark on ``port``; returns once it has provably captured a probe datagram."""
    proc = subprocess.Popen(
        ["timeout", "-k", "3", str(int(seconds) + 10), "tshark", "-i", "lo", "-f",
         f"udp dst port {port}", "-d", f"udp.port=={port},sip", "-a", f"duration:{seconds}",
         "-l", "-T", "fields", "-e", "frame.time_relative", "-e", "sip.CSeq.method",
         "-e", "sip.Via.branch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    end = time.monotonic() + 10
    seen = ""
    while "Capturing on" not in seen:  # ready only once it says so
        if time.monotonic() > end or proc.poll() is not None:
            raise AssertionError(f"tshark did not start: {seen}")
        if select.select([proc.stderr], [], [], 0.1)[0]:
            seen += proc.stderr.readline()
    # "Capturing on" comes a moment before the filter is live: probe until one is seen.
    assert proc.stdout is not None
    lines: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        while not lines:
            if time.monotonic() > end:
                raise AssertionError("tshark never saw the probe")
            probe.sendto(b"probe", ("127.0.0.1", port))
            if select.select([proc.stdout], [], [], 0.05)[0]:
                lines.append(proc.stdout.readline())
    return proc, lines


def drive(core: SipCore, sock: socket.socket, seconds: float) -> list[str]:
    """Pump the core's timers in real time for ``seconds``; the timeouts it reported."""
    timeouts = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for data, dest in core.datagrams_to_send(time.monotonic()):
            sock.sendto(data, (dest.host, dest.port))
        deadline = core.get_timer()
        wait = 0.01 if deadline is None else max(0.0, min(0.01, deadline - time.monotonic()))
        time.sleep(wait)
        core.handle_timer(time.monotonic())
        while (ev := core.next_event()) is not None:
            if isinstance(ev, TransactionTimeout):
                timeouts.append(ev.timer)
    return timeouts


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("method", "expected_gaps"), [
    ("INVITE", [0.1, 0.2, 0.4, 0.8, 1.6]),          # timer A: 2^n * T1, no cap
    ("OPTIONS", [0.1, 0.2, 0.4, 0.4, 0.4, 0.4, 0.4]),  # timer E: capped at T2 = 0.4
])
def test_retransmission_intervals_on_the_wire(silent_peer: socket.socket, method: str,
                                              expected_gaps: list[float]) -> None:
    peer_port = silent_peer.getsockname()[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    core = SipCore(local={"udp": Address("udp", "127.0.0.1", sock.getsockname()[1])},
                   t1=0.1, t2=0.4, t4=1.0)
    span = sum(expected_gaps) + 0.3
    tshark, _ = capture(peer_port, span + 2.0)
    try:
        h = Headers([("From", "<sip:a@127.0.0.1>;tag=w1"), ("To", "<sip:b@127.0.0.1>"),
                     ("Call-ID", f"wire-{method}"), ("CSeq", f"1 {method}")])
        txn = core.send_request(SipRequest(method, f"sip:b@127.0.0.1:{peer_port}", h),
                                Address("udp", "127.0.0.1", peer_port), time.monotonic())
        timeouts = drive(core, sock, span)
        out, _ = tshark.communicate(timeout=20)
    finally:
        sock.close()
        if tshark.poll() is None:
            tshark.kill()
            tshark.wait()
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    times = [float(r[0]) for r in rows if len(r) >= 3 and r[1] == method]
    assert {r[2] for r in rows if len(r) >= 3 and r[2]} == {txn.branch}  # the same request
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)][: len(expected_gaps)]
    assert len(gaps) == len(expected_gaps), times
    for got, want in zip(gaps, expected_gaps, strict=True):
        assert got == pytest.approx(want, abs=0.04), (gaps, expected_gaps)
    assert timeouts == []  # timer B/F (6.4 s) not reached within the capture
