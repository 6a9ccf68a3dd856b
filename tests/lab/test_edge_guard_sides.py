"""Whose call the guard decides, and what it counts, on the wire with sipp.

The edge decides a call for the user it belongs to: an INVITE from the trunk's address is an
inbound call to the callee whatever its From says (a provider, or someone who got through it,
may show a local extension's name there), and a call the edge itself refuses after the guard
admitted it (no common codec: 488, no media port: 503) is no call of the user's at all; a
caller whose User-Agent is a PBX's is judged on its INVITE as at REGISTER (R-ACCT-2). The
edge and policy files, sipp phones and audit readers are those of test_edge_limits.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lab import edge_sipp
from lab.edge_proc import EdgeProcess
from lab.test_edge_limits import (
    audit,
    decisions,
    dial,
    edge_file,
    finals,
    policy_file,
    provider,
    provider_numbers,
    start_edge,
    trunk_user,
    wait_for,
)

pytestmark = pytest.mark.lab


@pytest.mark.timeout(90)
def test_a_trunk_call_showing_a_local_extension_is_inbound_to_the_callee(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """The provider calls 1002's DID with ``From: <sip:1001@...>``: 1002's phone rings and
    answers; 1001's channel is not taken (1001 calls 1003 while that call is up: 200), and
    the audit has one inbound decision for 1002 and none for 1001 but its own call."""
    trunk_port, phone2, phone3, reg2, reg3 = lab.take_ports(5)
    media = lab.take_ports(4)[0]  # sipp's audio and video RTP/RTCP: four ports from there
    policy = policy_file(tmp_path / "policy.toml", {})
    cfg = edge_file(tmp_path / "edge.toml", {}, [
        trunk_user("1001", "+33123450001"), trunk_user("1002", "+33123450002"),
        {"ext": "1003"}])
    edge = start_edge(tmp_path, lab, cfg, policy, trunk_port=trunk_port)
    target = f"127.0.0.1:{edge.sip_port}"
    try:
        uas2 = sipp.start("uas1002", ["-sf", str(lab.scenarios / "edge_uas_answer.xml"),
                                      "-i", "127.0.0.1", "-p", str(phone2), "-m", "1"],
                          wall=60, trace_msg=True)
        lab.wait_udp_listening(phone2)
        edge_sipp.register(sipp, lab, target, "1002", phone2, reg2)
        uas3 = edge_sipp.start_callee(sipp, lab, "uas1003", "edge_uas_answer.xml", phone3,
                                      extra=["-m", "1"])
        edge_sipp.register(sipp, lab, target, "1003", phone3, reg3)
        spoof = sipp.start("spoof", [target, "-sf",
                                     str(lab.scenarios / "trunk_inbound_hold.xml"),
                                     "-s", "+33123450002", "-i", "127.0.0.1",
                                     "-p", str(trunk_port), "-mi", "127.0.0.1",
                                     "-mp", str(media), "-set", "cli", "1001", "-d", "8000",
                                     "-m", "1", "-timeout_error"], wall=30, trace_msg=True)
        up = wait_for(lambda: (edge.status() or {}).get("live_calls") == 1, 10)
        assert up, spoof.errors() + spoof.messages()[-3000:] + edge.log()[-3000:]
        # 1001 places its own call while "1001" is calling 1002 from the trunk
        (own,) = dial(sipp, lab, edge, "own", "1001", "1003")
        assert spoof.wait(30) == 0, spoof.errors() + edge.log()[-3000:]
        assert uas2.wait(10) == 0, uas2.errors()
        assert uas3.wait(10) == 0, uas3.errors()
        edge.wait_idle()
    finally:
        edge.stop()
    (answered,) = finals(spoof.messages(), "INVITE", cseq=1)
    assert answered.status == 200, answered
    assert own.status == 200, own
    # 1002's phone got the edge's INVITE showing the number the provider gave
    rung = uas2.messages()
    assert "INVITE sip:1002@" in rung and "<sip:1001@" in rung, rung[:2000]
    attempts = [a for a in audit(edge) if a.get("point") == "call_attempt"]
    mine = [a for a in attempts if a.get("user_id") == "1001"]
    assert [a["call_id"].endswith("/caller") for a in mine] == [True], attempts
    assert mine[0]["action"] == "allow", mine
    (inbound,) = decisions(edge, "R-CALLS-1", point="call_attempt", user_id="1002")
    assert inbound["action"] == "allow" and inbound["call_id"].endswith("/callee"), inbound
    assert inbound["details"] == {"direction": "inbound"}, inbound
    # the trunk call's record: 1002 called from outside, 1001 only the number shown
    spoofed = [c for c in edge.calls() if c["callee"] == "1002"]
    assert [(c["caller"], c["status"]) for c in spoofed] == [("1001", 200)], spoofed
    # and 1001's own call was answered while the trunk's call was up: both at once
    (mine_rec,) = [c for c in edge.calls() if c["callee"] == "1003"]
    assert spoofed[0]["answered"] < mine_rec["answered"] < spoofed[0]["ended"], edge.calls()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("status", [488, 503])
def test_a_call_the_edge_refuses_after_admission_is_no_short_call(
        tmp_path: Path, lab: Any, sipp: Any, status: int) -> None:
    """One short call a day suspends (threshold 1, ``>=``, one breach day). 1001 dials out
    twice and the guard admits both, but the edge refuses them itself: 488 (an offer of G.729
    only) or 503 (an RTP range of one port pair, a call needs two). Neither is a short call
    nor holds 1001's channel: the third call is admitted at once (488 case: answered by the
    provider and not charged, as no suspension of the unlimited plan came of them; 503 case:
    503 again, the edge's own refusal), no breach day before it."""
    (trunk_port,) = lab.take_ports(1)
    policy = policy_file(tmp_path / "policy.toml", {"limits.short_calls": {
        "threshold": "1", "comparator": '">="', "warn_at_days": "[]", "suspend_at_days": "1"}})
    cfg = edge_file(tmp_path / "edge.toml", {}, [trunk_user("1001", "+33123450001")])
    if status == 503:
        (edge_port,) = lab.take_ports(1)
        edge = EdgeProcess(tmp_path / "edge", edge_port, (21000, 21005), extra=[
            "--config", str(cfg), "--policy", str(policy),
            "--trunk", f"sip:127.0.0.1:{trunk_port}"]).start()
    else:
        edge = start_edge(tmp_path, lab, cfg, policy, trunk_port=trunk_port)
    try:
        prov = provider(sipp, lab, edge, trunk_port)
        refused = dial(sipp, lab, edge, "refused", "1001", "+33123456789", calls=2,
                       scenario="limits_uac_nocodec.xml" if status == 488 else "limits_uac.xml")
        (after,) = dial(sipp, lab, edge, "after", "1001", "+33123456788", hold_ms=1000)
        edge.wait_idle()
    finally:
        edge.stop()
    prov.stop()
    assert [m.status for m in refused] == [status, status], refused
    if status == 488:
        assert after.status == 200, after
        assert provider_numbers(prov) == ["+33123456788"], prov.logs()
        (rec,) = [c for c in edge.calls() if c["status"] == 200]
        assert rec["billable"] is False and rec["policy"] == [], rec
    else:
        assert after.status == 503, after
        assert provider_numbers(prov) == []
    # the audit: each refused call admitted, then given back at once, not counted
    ends = [a for a in audit(edge) if a.get("point") == "call_end" and a.get("user_id") == "1001"]
    assert len(ends) == 3, ends
    for end in ends[:2]:
        assert end["details"]["reason"] == "not_placed", end
        assert end["details"]["short"] == "False" and "warnings" not in end, end
        (admitted,) = [a for a in audit(edge) if a.get("point") == "call_attempt"
                       and a.get("call_id") == end["call_id"]]
        assert admitted["action"] == "allow", admitted
        assert end["seq"] == admitted["seq"] + 1, (admitted, end)  # nothing in between
    # no breach day before the third call (its own end, 1 s of talk, may make one)
    assert not decisions(edge, "R-LIMIT-1", action="reject")


def dial_as(sipp: Any, lab: Any, edge: Any, name: str, caller: str, number: str,
            user_agent: str) -> Any:
    """``caller`` dials ``number`` from a phone that says ``User-Agent: user_agent``; the
    edge's final answer to the authenticated INVITE."""
    (port,) = lab.take_ports(1)
    target = f"127.0.0.1:{edge.sip_port}"
    proc = sipp.start(name, [target, "-sf", str(lab.scenarios / "limits_uac_ua.xml"),
                             "-s", number, "-i", "127.0.0.1", "-p", str(port),
                             "-au", caller, "-ap", f"demo-{caller}", "-set", "user", caller,
                             "-set", "ua", user_agent, "-auth_uri", f"{number}@{target}",
                             "-m", "1", "-timeout_error"], wall=20, trace_msg=True)
    assert proc.wait(20) == 0, proc.errors()[-3000:] + edge.log()[-3000:]
    (answer,) = finals(proc.messages(), "INVITE", cseq=2)
    return answer


@pytest.mark.timeout(60)
def test_a_pbx_that_never_registered_is_refused_when_it_calls(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """R-ACCT-2 with ``pbx_action = "reject"``: 1001 never registers; its INVITE with
    ``User-Agent: Asterisk PBX 18.20.0`` gets the REGISTER's refusal, 403 Switches Not
    Allowed, audited at the call attempt with the User-Agent, before any channel; the same
    user from a phone is admitted (480: nobody registered as 1002)."""
    policy = policy_file(tmp_path / "policy.toml", {"accounts": {"pbx_action": '"reject"'}})
    cfg = edge_file(tmp_path / "edge.toml", {}, [{"ext": "1001"}, {"ext": "1002"}])
    edge = start_edge(tmp_path, lab, cfg, policy)
    try:
        pbx = dial_as(sipp, lab, edge, "pbx", "1001", "1002", "Asterisk PBX 18.20.0")
        phone = dial_as(sipp, lab, edge, "phone", "1001", "1002", "sipp-phone/1.0")
        edge.wait_idle()
    finally:
        edge.stop()
    assert (pbx.status, pbx.reason) == (403, "Switches Not Allowed"), pbx
    assert phone.status == 480, phone
    (refused,) = decisions(edge, "R-ACCT-2", action="reject")
    assert (refused["point"], refused["user_id"], refused["sip_status"]) == (
        "call_attempt", "1001", 403), refused
    assert refused["details"]["user_agent"] == "Asterisk PBX 18.20.0", refused
    assert not [a for a in audit(edge) if a.get("point") == "registration"]
    # refused before any channel: the callee's side of that call was never decided
    callee_side = refused["call_id"].replace("/caller", "/callee")
    assert not [a for a in audit(edge) if a.get("call_id") == callee_side], audit(edge)
