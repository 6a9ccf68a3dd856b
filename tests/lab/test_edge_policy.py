"""The policy guard on the wire, through the running edge (R-CALLS-1: one call per user)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import call, register, start_callee
from lab.sipp_media import media_ports, write_alaw

pytestmark = pytest.mark.lab

RTP = (20000, 20999)



@pytest.mark.timeout(120)
def test_one_call_per_user_busy_and_released(tmp_path: Path, lab: Any, sipp: Any) -> None:
    """1001 calls 1002. Meanwhile 1003 calling 1002 gets 486 and 1001 placing a second call
    gets 403 (sipp scenarios that accept only those statuses), each refusal audited under
    R-CALLS-1 with its clause, for the user whose channel was taken; after 1001's BYE, 1003
    reaches 1002."""
    edge_port, uas_port, reg_port, p1, p2, p3, p4 = lab.take_ports(7)
    (uac_media,) = media_ports(36400, 1)
    write_alaw(tmp_path / "uac.alaw", 1000, 3)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP).start()
    target = f"127.0.0.1:{edge_port}"
    try:
        start_callee(sipp, lab, "uas", "edge_uas_answer.xml", uas_port)
        register(sipp, lab, target, "1002", uas_port, reg_port)
        # 1001 calls 1002 and stays 3 s on the line
        first = call(sipp, lab, "first", "edge_uac.xml", target, "1001", "1002", p1, media=uac_media)
        end = time.monotonic() + 10
        while edge.status().get("live_calls") != 1 and time.monotonic() < end:
            time.sleep(0.1)
        assert edge.status().get("live_calls") == 1, edge.log()
        # 1003 calling the busy 1002 is refused by the edge: 486
        busy = call(sipp, lab, "busy", "edge_uac_busy.xml", target, "1003", "1002", p2)
        assert busy.wait(20) == 0, busy.errors()
        # 1001, already in a call, cannot place a second one
        second = call(sipp, lab, "second", "edge_uac_forbidden.xml", target, "1001", "1004", p3)
        assert second.wait(20) == 0, second.errors()
        assert first.wait(30) == 0, first.errors()
        # the channel is back: 1003 reaches 1002 now
        again = call(sipp, lab, "again", "edge_uac_quick.xml", target, "1003", "1002", p4)
        assert again.wait(20) == 0, again.errors()
    finally:
        edge.stop()
    audit = [json.loads(line) for line in (tmp_path / "edge" / "audit.jsonl").read_text()
             .splitlines()]
    refusals = [a for a in audit if a.get("rule_id") == "R-CALLS-1" and a.get("action") == "reject"
                and a.get("event") == "policy.decision"]
    assert sorted((a.get("user_id"), a.get("sip_status")) for a in refusals) == \
        [("1001", 403), ("1002", 486)], refusals
    assert all(a["clause"] == "Terms of service, 22 January 2026, Annex 4, point 5, paragraph 2"
               for a in refusals), refusals
    answered = [c for c in edge.calls() if c["status"] == 200]
    assert len(answered) == 2, edge.calls()


@pytest.mark.timeout(120)
def test_two_invites_for_one_user_at_the_same_instant(tmp_path: Path, lab: Any,
                                                      sipp: Any) -> None:
    """R-CALLS-1 race on the wire: two callers fired together at 1002, five rounds; each round
    exactly one call is answered and the other gets 486, and afterwards no call, media object
    or port is left in the edge. (The edge decides on one event loop, so this checks the
    result on the wire, not the guard's lock: that is tests/policy/test_race_sipp.py.)"""
    edge_port, uas_port, reg_port, *caller_ports = lab.take_ports(13)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP).start()
    target = f"127.0.0.1:{edge_port}"
    try:
        start_callee(sipp, lab, "uas", "edge_uas_answer.xml", uas_port)
        register(sipp, lab, target, "1002", uas_port, reg_port)
        for rnd in range(5):
            pair = [call(sipp, lab, f"r{rnd}-{user}", "edge_uac_race.xml", target, user, "1002",
                         caller_ports[2 * rnd + i], trace_msg=True)
                    for i, user in enumerate(("1001", "1003"))]
            for proc in pair:
                assert proc.wait(30) == 0, proc.errors()
            wire = [proc.messages() for proc in pair]
            answered = sum("SIP/2.0 200 OK" in w and "CSeq: 2 INVITE" in w for w in wire)
            refused = sum("SIP/2.0 486 " in w for w in wire)
            assert (answered, refused) == (1, 1), wire
        st = edge.wait_idle()
    finally:
        edge.stop()
    assert st["live_calls"] == 0 and st["ports_in_use"] == 0, st
    assert sum(c["status"] == 200 for c in edge.calls()) == 5, edge.calls()
