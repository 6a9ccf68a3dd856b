"""A scanner flooding the edge from another address cannot starve the calls of a real phone."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import call, register, start_callee
from lab.flooder import flood

pytestmark = pytest.mark.lab

OPTIONS = (
    "OPTIONS sip:edge@127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.2:{src};branch=z9hG4bK-scan{n}\r\n"
    "From: <sip:scanner@127.0.0.2>;tag=s{n}\r\nTo: <sip:edge@127.0.0.1>\r\n"
    "Call-ID: scan{n}@127.0.0.2\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
    "Content-Length: 0\r\n\r\n"
)


def scan(port: int, src: int, n: int) -> bytes:
    """A scanner's OPTIONS (about 3,000 a second: ``lab.flooder``)."""
    return OPTIONS.format(port=port, src=src, n=n).encode()


@pytest.mark.timeout(120)
def test_flood_from_one_source_does_not_starve_calls(tmp_path: Path, lab: Any, sipp: Any) -> None:
    edge_port, uas_port, reg_port, uac_port = lab.take_ports(4)
    edge = EdgeProcess(tmp_path / "edge", edge_port, (21000, 21999)).start()
    target = f"127.0.0.1:{edge_port}"
    stop = threading.Event()
    sent, answered = [0], [0]
    try:
        start_callee(sipp, lab, "uas", "edge_uas_answer.xml", uas_port, wall=90)
        register(sipp, lab, target, "1002", uas_port, reg_port)
        scanner = threading.Thread(target=flood, args=(edge_port, 20.0, stop, sent, answered, scan))
        scanner.start()
        time.sleep(0.5)
        calls = call(sipp, lab, "calls", "edge_uac_quick.xml", target, "1001", "1002", uac_port,
                     calls=20, rate=5, limit=1, wall=60)
        rc = calls.wait(60)
        stop.set()
        scanner.join(30)
        time.sleep(1.2)  # status.json is rewritten every second
        status = edge.status()
    finally:
        stop.set()
        edge.stop()
    assert rc == 0, calls.errors()[-2000:]
    assert calls.stat("SuccessfulCall(C)") == 20
    # the scanner was held to its budget: most of its requests never reached the SIP core
    assert sent[0] > 5000, sent
    assert status["rate_limited"] > sent[0] // 2, (status, sent)
    assert answered[0] < sent[0] // 2, (answered, sent)
