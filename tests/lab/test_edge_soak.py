"""The edge runs for months: calls that end every way leave no descriptor behind.

A call whose BYE arrives right after the answer ends while its media is still starting (the
B2BUA attaches both legs' RTP sessions in a task). That race is normal and frequent under
load; it must be quiet (no "media task failed" traceback) and must leave nothing open. The
edge's open file descriptors (/proc/PID/fd) after hundreds of such calls are compared with
those after a few warm-up calls: a leaked RTP socket would also keep its port bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import call, register, start_callee
from lab.test_edge_load import load_config

pytestmark = pytest.mark.lab

RTP = (21000, 21999)


@pytest.mark.timeout(240)
def test_calls_hung_up_at_the_answer_leave_no_descriptor(tmp_path: Path, lab: Any,
                                                         sipp: Any) -> None:
    edge_port, uas_port, reg_port, c1, c2 = lab.take_ports(5)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP,
                       extra=["--config", str(load_config(tmp_path / "edge.toml"))]).start()
    target = f"127.0.0.1:{edge_port}"
    uas = None
    try:
        uas = start_callee(sipp, lab, "uas", "edge_uas_answer.xml", uas_port, wall=200)
        register(sipp, lab, target, "1002", uas_port, reg_port)
        warm = call(sipp, lab, "warm", "edge_uac_instant.xml", target, "1001", "1002", c1,
                    calls=5, rate=5, limit=1, wall=60)
        assert warm.wait(60) == 0, warm.errors()[-3000:]
        edge.wait_idle()
        baseline = edge.open_fds()
        many = call(sipp, lab, "many", "edge_uac_instant.xml", target, "1001", "1002", c2,
                    calls=300, rate=60, limit=30, wall=150)
        assert many.wait(160) == 0, many.errors()[-3000:] + edge.log()[-3000:]
        assert many.stat("SuccessfulCall(C)") == 300, many.stats()
        status = edge.wait_idle()
        after = edge.open_fds()
        open_ports = edge.rtp_sockets()
        log = edge.log()
    finally:
        if uas is not None:
            uas.stop(soft_timeout=2)
        edge.stop()
    assert status["live_calls"] == 0 and status["ports_in_use"] == 0, status
    assert open_ports == [], f"RTP sockets still open in the edge: {open_ports}"
    assert after <= baseline, f"descriptors {baseline} -> {after} after 300 calls"
    assert "media task failed" not in log and "Traceback" not in log, log[-4000:]
