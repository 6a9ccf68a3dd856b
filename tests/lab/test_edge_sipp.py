"""sipp phones through the edge: registration with digest, a call with RTP, on the wire."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import call, register, start_callee
from lab.rtp_capture import UdpCapture
from lab.sipp_media import media_ports, write_alaw

pytestmark = pytest.mark.lab

RTP = (20000, 20999)


@pytest.mark.timeout(120)
def test_sipp_call_through_edge_relays_rtp_in_range(tmp_path: Path, lab: Any, sipp: Any,
                                                    tshark: Any) -> None:
    edge_port, uas_port, reg_port, uac_port = lab.take_ports(4)
    uas_media, uac_media = media_ports(36000, 2)
    write_alaw(tmp_path / "uac.alaw", 1000, 3)
    write_alaw(tmp_path / "uas.alaw", 440, 3)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP).start()
    target = f"127.0.0.1:{edge_port}"
    try:
        uas = sipp.start("uas", ["-sf", str(lab.scenarios / "edge_uas_pcma.xml"),
                                 "-i", "127.0.0.1", "-p", str(uas_port), "-mi", "127.0.0.1",
                                 "-mp", str(uas_media), "-m", "1"], trace_logs=True, wall=60)
        lab.wait_udp_listening(uas_port)
        register(sipp, lab, target, "1002", uas_port, reg_port)
        invites = tshark.start(uas_port, fields=["sdp.media"],
                               display_filter='sip.Method == "INVITE"', seconds=40)
        rtp = UdpCapture(tmp_path, f"udp portrange {RTP[0]}-{RTP[1]}", seconds=40)
        uac = call(sipp, lab, "uac", "edge_uac.xml", target, "1001", "1002", uac_port,
                   media=uac_media, trace_logs=True)
        assert uac.wait(40) == 0, uac.errors() + edge.log()
        assert uas.wait(20) == 0, uas.errors()
        flows = rtp.stop()
        offers = invites.stop().split()
    finally:
        edge.stop()
    # the edge's INVITE to the callee offered OPUS, PCMA, PCMU (then telephone-event) ...
    assert any(line.startswith("audio") for line in offers) or offers, offers
    media_lines = [ln for ln in invites.out.read_text().splitlines() if ln.startswith("audio")]
    assert media_lines, invites.out.read_text()
    fields = media_lines[0].split()
    assert fields[3:] == ["96", "8", "0", "101"], media_lines
    assert RTP[0] <= int(fields[1]) <= RTP[1]
    # ... the caller was answered with PCMA (first of ours it offered) ...
    assert "answer_pt=8" in uac.logs()
    assert "offer pts=96 8 0 101" in uas.logs()
    # ... and the RTP went both ways through edge ports inside the range, and only those.
    to_uas = sum(n for (src, dst), n in flows.items() if dst == uas_media)
    to_uac = sum(n for (src, dst), n in flows.items() if dst == uac_media)
    assert to_uas >= 100 and to_uac >= 100, flows
    edge_ports = {src for (src, dst) in flows if dst in (uas_media, uac_media)}
    assert edge_ports and all(RTP[0] <= p <= RTP[1] for p in edge_ports), edge_ports
    calls = edge.calls()
    assert len(calls) == 1 and {leg["codec"] for leg in calls[0]["legs"]} == {"PCMA"}, calls


def one_call(tmp_path: Path, lab: Any, sipp: Any, callee_scenario: str, caller_scenario: str,
             **trace: bool) -> tuple[EdgeProcess, Any]:
    """1001 calls 1002 once through a fresh edge; returns the stopped edge and the caller."""
    edge_port, uas_port, reg_port, uac_port = lab.take_ports(4)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP).start()
    target = f"127.0.0.1:{edge_port}"
    try:
        start_callee(sipp, lab, "uas", callee_scenario, uas_port)
        register(sipp, lab, target, "1002", uas_port, reg_port)
        uac = call(sipp, lab, "uac", caller_scenario, target, "1001", "1002", uac_port, **trace)
        assert uac.wait(40) == 0, uac.errors() + edge.log()
    finally:
        edge.stop()
    return edge, uac


@pytest.mark.timeout(90)
def test_hold_and_resume_by_reinvite(tmp_path: Path, lab: Any, sipp: Any) -> None:
    edge, uac = one_call(tmp_path, lab, sipp, "edge_uas_answer.xml", "edge_uac_hold.xml",
                         trace_logs=True)
    logs = uac.logs()
    # RFC 3264 §6.1: an offer to send only is answered receive only; resuming gets sendrecv
    assert "cseq 3 answer direction=recvonly" in logs, logs
    assert "cseq 4 answer direction=sendrecv" in logs, logs
    calls = edge.calls()
    assert len(calls) == 1 and calls[0]["end_cause"] == "caller-bye", calls


@pytest.mark.timeout(90)
def test_update_with_an_offer_is_answered_and_refer_is_refused_with_allow(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """In an answered call: an UPDATE carrying an offer gets its answer in the 200 (RFC 3311
    §5.2), on hold as a re-INVITE would; a REFER (no transfer here) gets 405 with the Allow
    header RFC 3261 §8.2.1 requires; an UPDATE without a body gets 200; the call goes on to
    its BYE. sipp checks each on the wire."""
    edge, uac = one_call(tmp_path, lab, sipp, "edge_uas_answer.xml",
                         "edge_uac_update_refer.xml", trace_logs=True)
    logs = uac.logs()
    assert "update answer direction=recvonly" in logs, logs
    assert "refer refused, allow=" in logs, logs
    calls = edge.calls()
    assert len(calls) == 1 and calls[0]["end_cause"] == "caller-bye", calls


@pytest.mark.timeout(90)
def test_early_media_is_anchored_before_the_answer(tmp_path: Path, lab: Any, sipp: Any) -> None:
    edge, uac = one_call(tmp_path, lab, sipp, "edge_uas_early.xml", "edge_uac_quick.xml",
                         trace_msg=True)
    msgs = uac.messages()
    early = msgs[msgs.index("SIP/2.0 183"):]
    early = early[:early.index("SIP/2.0 200")]
    # the caller got the edge's own SDP with the 183: media anchored on a port of the range
    port = int(early.split("m=audio ", 1)[1].split()[0])
    assert RTP[0] <= port <= RTP[1], early
    assert len(edge.calls()) == 1 and edge.calls()[0]["status"] == 200
