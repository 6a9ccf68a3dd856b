"""Calls that strangers cannot hijack or starve, through the running edge, with real peers.

sipp is the caller (its RTP streams a 1 kHz tone) and the callee (whose media is a test-owned
RTP phone that records what it hears and talks back at 440 Hz); the attacker sprays RTP of a
3 kHz tone at every port of the edge's (small) RTP range from another loopback address,
127.0.0.2, and records whatever the edge sends it. RTPbleed (CVE-2017-14099): the ports of a
call are open from the INVITE, what is sent to them before the answer waits in the socket, and
an edge that latches to the first sender, or re-latches after 2 s of silence, gives the
attacker the call's audio and the callee the attacker's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from lab.audio import strongest_window
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import call, register, start_callee
from lab.rtp_phone import RtpPhone
from lab.rtp_spray import ATTACKER, RtpSpray
from lab.sipp_media import media_ports, write_alaw

pytestmark = pytest.mark.lab

# 16 pairs that no other test uses (grep before changing it): the spray hits every port of
# it, and must not hit another test's media
GUARD_RTP = (26400, 26431)


def assert_heard_only_the_caller(callee: RtpPhone, since: float = 0.0) -> None:
    pcm = callee.pcm(since)
    assert strongest_window(pcm, 1000) > 0.6, "the callee did not hear the caller"
    assert strongest_window(pcm, 3000) < 0.1, "the callee heard the attacker"


def leg_guard(edge: EdgeProcess) -> list[dict[str, Any]]:
    calls = edge.calls()
    assert len(calls) == 1 and calls[0]["status"] == 200, calls
    legs: list[dict[str, Any]] = calls[0]["legs"]
    assert {leg["latched"].split(":")[0] for leg in legs} == {"127.0.0.1"}, legs
    return legs


@pytest.mark.timeout(90)
def test_rtp_spray_before_and_during_the_call_reaches_nobody(tmp_path: Path, lab: Any,
                                                             sipp: Any) -> None:
    edge_port, uas_port, reg_port, uac_port = lab.take_ports(4)
    (uac_media,) = media_ports(37400, 1)
    write_alaw(tmp_path / "uac.alaw", 1000, 3)
    edge = EdgeProcess(tmp_path / "edge", edge_port, GUARD_RTP).start()
    target = f"127.0.0.1:{edge_port}"
    callee = RtpPhone(440, seconds=30)
    spray = RtpSpray(GUARD_RTP, seconds=60)  # from before the INVITE to after the BYE
    try:
        uas = start_callee(sipp, lab, "uas", "guard_uas_ring.xml", uas_port,
                           extra=["-set", "mport", str(callee.port), "-m", "1"])
        register(sipp, lab, target, "1002", uas_port, reg_port)
        # the callee rings 2 s: the call's ports are open and sprayed, nobody reads them
        uac = call(sipp, lab, "uac", "edge_uac.xml", target, "1001", "1002", uac_port,
                   media=uac_media)
        assert uac.wait(40) == 0, uac.errors() + edge.log()
        assert uas.wait(10) == 0, uas.errors()
        st = edge.wait_idle()
    finally:
        spray.stop()
        callee.close()
        edge.stop()
    assert spray.sent > 2000, spray.sent
    assert spray.received == [], f"the edge sent the attacker {len(spray.received)} packets"
    assert_heard_only_the_caller(callee)
    legs = leg_guard(edge)
    # what waited in the sockets before the answer was dropped unread, the rest refused
    assert all(leg["flushed"] > 0 and leg["foreign"] > 0 for leg in legs), legs
    assert all(leg["source_switches"] == 0 for leg in legs), legs
    assert st.get("ports_in_use") == 0, st
    assert f"RTP from ('{ATTACKER}'" in edge.log(), edge.log()[-3000:]


@pytest.mark.timeout(90)
def test_a_silent_caller_is_not_taken_over(tmp_path: Path, lab: Any, sipp: Any) -> None:
    """The caller talks 1 s, is silent 4 s (hold, silence suppression), talks again; the
    spray starts 2.2 s into the silence. The edge used to re-latch after 2 s of silence."""
    edge_port, uas_port, reg_port, uac_port = lab.take_ports(4)
    (uac_media,) = media_ports(37500, 1)
    write_alaw(tmp_path / "talk.alaw", 1000, 1)
    edge = EdgeProcess(tmp_path / "edge", edge_port, GUARD_RTP).start()
    target = f"127.0.0.1:{edge_port}"
    callee = RtpPhone(440, seconds=30)
    spray = RtpSpray(GUARD_RTP, seconds=60, active=False)
    try:
        uas = start_callee(sipp, lab, "uas", "recording_uas.xml", uas_port,
                           extra=["-set", "mport", str(callee.port), "-m", "1"])
        register(sipp, lab, target, "1002", uas_port, reg_port)
        uac = call(sipp, lab, "uac", "guard_uac_pause.xml", target, "1001", "1002", uac_port,
                   media=uac_media)
        end = time.monotonic() + 20
        while callee.first_at is None and time.monotonic() < end:
            time.sleep(0.02)
        assert callee.first_at is not None, "the caller's audio never reached the callee"
        time.sleep(max(0.0, callee.first_at + 3.2 - time.monotonic()))
        attack_at = time.monotonic()
        spray.active.set()
        assert uac.wait(40) == 0, uac.errors() + edge.log()
        assert uas.wait(10) == 0, uas.errors()
        edge.wait_idle()
    finally:
        spray.stop()
        callee.close()
        edge.stop()
    assert spray.sent > 500, spray.sent
    assert spray.received == [], f"the edge sent the attacker {len(spray.received)} packets"
    # before the silence, and after it: the caller's second second of talk still gets through
    assert_heard_only_the_caller(callee)
    assert_heard_only_the_caller(callee, since=attack_at)
    legs = leg_guard(edge)
    assert all(leg["source_switches"] == 0 for leg in legs), legs
    assert sum(leg["foreign"] for leg in legs) > 0, legs


@pytest.mark.timeout(90)
def test_one_user_gets_one_of_eight_calls_to_the_echo_test(tmp_path: Path, lab: Any,
                                                           sipp: Any) -> None:
    """Calls to 600/601 are not the guard's (no channel is counted), each holds an RTP pair:
    one user held 500 of them and everyone else got 503. Now ``calls_per_user`` (1)."""
    edge_port, uac_port = lab.take_ports(2)
    (uac_media,) = media_ports(37600, 1, span=40)  # sipp binds a pair per call it places
    write_alaw(tmp_path / "uac.alaw", 1000, 3)
    edge = EdgeProcess(tmp_path / "edge", edge_port, (26440, 26479)).start()
    target = f"127.0.0.1:{edge_port}"
    peak = 0
    try:
        uac = sipp.start("uac", [
            target, "-sf", str(lab.scenarios / "guard_uac_app.xml"), "-s", "600",
            "-i", "127.0.0.1", "-p", str(uac_port), "-au", "1001", "-ap", "demo-1001",
            "-set", "user", "1001", "-auth_uri", f"600@{target}", "-m", "8", "-l", "8",
            "-r", "8", "-mi", "127.0.0.1", "-mp", str(uac_media), "-timeout_error"],
            trace_msg=True, trace_logs=True, wall=60)
        end = time.monotonic() + 60
        while uac.proc.poll() is None and time.monotonic() < end:
            peak = max(peak, edge.status().get("live_calls", 0))
            time.sleep(0.1)
        assert uac.wait(10) == 0, uac.errors() + edge.log()
        st = edge.wait_idle()
    finally:
        edge.stop()
    logs = uac.logs()
    assert (logs.count("answered "), logs.count("refused ")) == (1, 7), logs
    wire = uac.messages()
    assert wire.count("SIP/2.0 403 Forbidden: already in a call to a test number") >= 7, wire
    assert 'Warning: 399 127.0.0.1 "You are already in a call to a test number.' in wire
    assert peak == 1, peak
    calls = edge.calls()
    assert [(c["callee"], c["status"]) for c in calls] == [("600", 200)], calls
    assert st.get("ports_in_use") == 0, st
