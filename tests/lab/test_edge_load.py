"""Many calls through the edge, ended every way there is; afterwards nothing is held.

200 sequential and 50 concurrent calls, calls cancelled by the caller, refused by the callee
(486 relayed), hung up by the callee; then the edge's own status and the kernel's socket table
(ss) must both show zero RTP ports, zero live calls and zero media objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import call, register, start_callee

pytestmark = pytest.mark.lab

RTP = (21000, 21999)


def load_config(path: Path) -> Path:
    """The embedded defaults, with 63 extra channels per user (R-CALLS-1's paid option):
    this test wants many simultaneous calls between the same few users; and no flood guard,
    since every one of its sipp phones sends from 127.0.0.1."""
    from importlib import resources

    text = resources.files("softphone.configs").joinpath("edge.toml").read_text()
    text = text.replace('password = "demo-', 'extra_channels = 63\npassword = "demo-')
    text = text.replace("flood_rate_per_s = 200", "flood_rate_per_s = 0")
    text += '\n[[users]]\next = "1005"\npassword = "demo-1005"\nextra_channels = 63\n'
    path.write_text(text)
    return path




@pytest.mark.timeout(300)
def test_calls_ended_every_way_leave_nothing_behind(tmp_path: Path, lab: Any, sipp: Any) -> None:
    (edge_port, answer_port, busy_port, hangup_port, ring_port, r1, r2, r3, r4,
     c1, c2, c3, c4, c5) = lab.take_ports(14)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP,
                       extra=["--config", str(load_config(tmp_path / "edge.toml"))]).start()
    target = f"127.0.0.1:{edge_port}"
    try:
        uases = [start_callee(sipp, lab, name, f"edge_uas_{name}.xml", port, wall=200)
                 for name, port in (("answer", answer_port), ("busy", busy_port),
                                    ("hangup", hangup_port), ("ring", ring_port))]
        register(sipp, lab, target, "1002", answer_port, r1)
        register(sipp, lab, target, "1003", busy_port, r2)
        register(sipp, lab, target, "1004", hangup_port, r3)
        register(sipp, lab, target, "1005", ring_port, r4)

        def run(name: str, scenario: str, callee: str, port: int, calls: int, rate: int,
                limit: int) -> Any:
            return call(sipp, lab, name, scenario, target, "1001", callee, port, calls=calls,
                        rate=rate, limit=limit, wall=120)

        runs = [("sequential", run("sequential", "edge_uac_quick.xml", "1002", c1, 200, 40, 1),
                 200)]
        assert runs[0][1].wait(150) == 0, runs[0][1].errors()[-3000:] + edge.log()[-3000:]
        runs += [
            ("concurrent", run("concurrent", "edge_uac_quick.xml", "1002", c2, 50, 50, 50), 50),
            ("cancelled", run("cancelled", "edge_uac_cancel.xml", "1005", c3, 20, 10, 10), 20),
            ("refused", run("refused", "edge_uac_busy.xml", "1003", c4, 20, 10, 10), 20),
            ("callee-bye", run("calleebye", "edge_uac_calleebye.xml", "1004", c5, 20, 10, 10), 20),
        ]
        for name, proc, _ in runs[1:]:
            assert proc.wait(120) == 0, f"{name}: " + proc.errors()[-3000:]
        for name, proc, n in runs:
            assert proc.stat("SuccessfulCall(C)") == n, (name, proc.stats())
            assert proc.stat("FailedCall(C)") == 0, (name, proc.stats())
        status = edge.wait_idle()
        open_ports = edge.rtp_sockets()
        calls = edge.calls()
    finally:
        for u in locals().get("uases", []):
            u.stop(soft_timeout=2)
        edge.stop()
    assert status["live_calls"] == 0, status
    assert status["media_objects"] == 0, status
    assert status["ports_in_use"] == 0, status
    assert open_ports == [], f"RTP sockets still open in the edge: {open_ports}"
    causes: dict[str, int] = {}
    for c in calls:
        causes[c["end_cause"]] = causes.get(c["end_cause"], 0) + 1
    assert causes.get("caller-bye") == 250, causes
    assert causes.get("cancelled") == 20, causes
    assert causes.get("callee-486") == 20, causes
    assert causes.get("callee-bye") == 20, causes
