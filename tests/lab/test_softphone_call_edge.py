"""``softphone call`` against the running edge, as the README's smoke test runs it.

Ten runs in a row with ``--register``, each calling the echo extension with OPUS and a 440 Hz
tone it must hear back: every run passes (the tone is judged per 100 ms window, so one phase
step in the echo cannot fail a clean call), and every run takes its binding away when it exits,
also when its call fails: the edge's device limit (8 per user) would refuse the ninth run
otherwise.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess

pytestmark = pytest.mark.lab

RTP = (21000, 21999)


def run(argv: list[str], timeout: float = 40) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-m", "softphone", "call", *argv], capture_output=True,
                         text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return out.returncode, out.stdout + out.stderr


def registrations(edge: EdgeProcess) -> int:
    time.sleep(1.2)  # status.json is written every second
    return int(edge.status().get("registrations", -1))


@pytest.mark.timeout(180)
def test_ten_smoke_calls_in_a_row_register_hear_the_tone_and_unregister(tmp_path: Path,
                                                                        lab: Any) -> None:
    (sip,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", sip, RTP).start()
    auth = ["--user", "1001", "--password", "demo-1001", "--register", "--rtp-ports",
            "22000-22999"]
    try:
        # a failed call unregisters too
        rc, out = run([f"sip:9999@127.0.0.1:{sip}", *auth, "--duration", "1"])
        assert rc == 1 and "404" in out and "unregistered sip:1001@" in out, out
        assert registrations(edge) == 0, edge.status()
        ratios = []
        for n in range(10):
            rc, out = run([f"sip:600@127.0.0.1:{sip}", *auth, "--tone", "440", "--expect-tone",
                           "--duration", "2"])
            assert rc == 0, f"run {n}: {out}\n{edge.log()[-3000:]}"
            assert "opus/48000/2" in out.lower(), out
            m = re.search(r"ratio=([0-9.]+)", out)
            assert m, out
            ratios.append(float(m.group(1)))
            assert "unregistered sip:1001@" in out, out
        assert registrations(edge) == 0, edge.status()
    finally:
        edge.stop()
    assert min(ratios) > 0.8, ratios
