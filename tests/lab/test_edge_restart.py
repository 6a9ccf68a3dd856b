"""Counters survive a crash (issue: the policy guard, section 6) through the running edge.

The edge is SIGKILLed in the middle of a call: no BYE, no release. Started again on the same
data directory, it must release the channels that call held (audited as a recovery, not
counted as a short call) before it admits anything, so the same two users can call each other
at once; without the recovery the caller would be refused as already in a call.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import finish, media_call
from lab.rtp_phone import RtpPhone

RTP = (21000, 21999)

pytestmark = pytest.mark.skipif(not Path("/usr/bin/sipp").exists(), reason="sipp missing")


def audit(edge_dir: Path) -> list[dict[str, Any]]:
    path = edge_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.timeout(120)
def test_a_crash_mid_call_releases_the_channels_on_restart(tmp_path: Path, lab: Any,
                                                           sipp: Any) -> None:
    edge_port, *ports = lab.take_ports(7)
    data = tmp_path / "edge"
    target = f"127.0.0.1:{edge_port}"
    edge = EdgeProcess(data, edge_port, RTP).start()
    phones = [RtpPhone(600.0), RtpPhone(1000.0)]
    try:
        first = media_call(sipp, lab, target, "1001", "1002", ports[0:3], *phones, name="a")
        end = time.monotonic() + 20
        while edge.status().get("calls", {}).get("answered") != 1 \
                or edge.status().get("live_calls") != 1:
            assert time.monotonic() < end, edge.log()
            time.sleep(0.1)
        edge.crash()
        for proc in first:
            proc.stop()
    finally:
        for phone in phones:
            phone.close()
        edge.stop()
    before = audit(data)
    assert [r["point"] for r in before].count("recovery") == 0
    # started again on the same data: the dead call's channels are given back first
    edge = EdgeProcess(data, edge_port, RTP).start()
    phones = [RtpPhone(600.0), RtpPhone(1000.0)]
    try:
        uas, uac = media_call(sipp, lab, target, "1001", "1002", ports[3:6], *phones, name="b")
        finish([(uas, uac)], edge)
        st = edge.wait_idle()
    finally:
        for phone in phones:
            phone.close()
        edge.stop()
    assert st.get("live_calls") == 0, st
    records = audit(data)[len(before):]
    recovered = [r for r in records if r["point"] == "recovery"]
    assert sorted(r["user_id"] for r in recovered) == ["1001", "1002"], records
    for r in recovered:
        assert r["rule_id"] == "R-CALLS-1" and r["clause"]
        assert r["details"]["reason"] == "restart" and r["details"]["short"] == "False"
    # ... before anything was admitted, and the call after the restart went through
    first_admit = next(i for i, r in enumerate(records) if r["point"] == "call_attempt")
    assert all(records.index(r) < first_admit for r in recovered)
    assert "SIP/2.0 200 OK" in uac.messages()
    assert not [r for r in records if r.get("action") == "reject"], records
