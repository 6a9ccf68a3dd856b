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


def reserve_config(path: Path, psap_port: int) -> Path:
    """1001 has emergency service and a recorded address; 1002-1006 are ordinary users."""
    users = "".join(f'\n[[users]]\next = "{u}"\npassword = "demo-{u}"\n'
                    for u in ("1002", "1003", "1004", "1005", "1006"))
    path.write_text(f"""
[media]
emergency_reserved_ports = 4

[emergency]
route = "sip:sos@127.0.0.1:{psap_port}"

[[users]]
ext = "1001"
password = "demo-1001"
emergency = true
location = {{ country = "FR", city = "Paris", street = "Rue de Rivoli", number = "99", postcode = "75001" }}
{users}""")
    return path


@pytest.mark.timeout(120)
def test_a_range_full_of_ordinary_calls_still_gives_112_its_ports(tmp_path: Path, lab: Any,
                                                                  sipp: Any) -> None:
    """6 pairs, 2 kept for emergency calls: four users' calls to 600 (a pair each) fill the
    ordinary share; a fifth gets 503 with Retry-After; 1001's 112 still reaches the emergency
    gateway, with media both ways."""
    edge_port, psap_port, uac_port, *fill_ports = lab.take_ports(8)
    (uac_media,) = media_ports(37700, 1)
    write_alaw(tmp_path / "uac.alaw", 1000, 3)
    cfg = reserve_config(tmp_path / "edge.toml", psap_port)
    edge = EdgeProcess(tmp_path / "edge", edge_port, (26480, 26491),
                       extra=["--config", str(cfg)]).start()
    target = f"127.0.0.1:{edge_port}"
    sinks = [RtpPhone(1000.0, seconds=0) for _ in range(4)]
    psap_media = RtpPhone(440, seconds=3)
    full = tmp_path / "guard_uac_503.xml"
    full.write_text((lab.scenarios / "edge_uac_forbidden.xml").read_text()
                    .replace('<recv response="403"/>', '<recv response="503"/>'))
    try:
        fillers = [sipp.start(f"fill{user}", [
            target, "-sf", str(lab.scenarios / "recording_uac.xml"), "-s", "600",
            "-i", "127.0.0.1", "-p", str(port), "-au", user, "-ap", f"demo-{user}",
            "-set", "user", user, "-set", "mport", str(sink.port),
            "-auth_uri", f"600@{target}", "-m", "1", "-timeout_error"], wall=60)
            for user, port, sink in zip(("1002", "1003", "1004", "1005"), fill_ports[:4], sinks,
                                        strict=True)]
        end = time.monotonic() + 15
        while edge.status().get("ports_in_use") != 4 and time.monotonic() < end:
            time.sleep(0.1)
        assert edge.status().get("ports_in_use") == 4, edge.log()
        refused = sipp.start("full", [
            target, "-sf", str(full), "-s", "600", "-i", "127.0.0.1", "-p", str(fill_ports[4]),
            "-au", "1006", "-ap", "demo-1006", "-set", "user", "1006",
            "-auth_uri", f"600@{target}", "-m", "1", "-timeout_error"],
            trace_msg=True, wall=30)
        assert refused.wait(30) == 0, refused.errors() + edge.log()
        psap = sipp.start("psap", ["-sf", str(lab.scenarios / "emergency_psap_uas.xml"),
                                   "-i", "127.0.0.1", "-p", str(psap_port),
                                   "-set", "mport", str(psap_media.port), "-m", "1"],
                          trace_msg=True, wall=60)
        lab.wait_udp_listening(psap_port)
        sos = call(sipp, lab, "sos", "edge_uac.xml", target, "1001", "112", uac_port,
                   media=uac_media)
        time.sleep(1.0)
        during = edge.status()
        assert sos.wait(40) == 0, sos.errors() + edge.log()
        assert psap.wait(20) == 0, psap.errors() + edge.log()
        for f in fillers:
            assert f.wait(40) == 0, f.errors()
        st = edge.wait_idle()
    finally:
        psap_media.close()
        for sink in sinks:
            sink.close()
        edge.stop()
    wire = refused.messages()
    assert "SIP/2.0 503 Service Unavailable: no media ports" in wire, wire
    assert "Retry-After: 5" in wire, wire
    assert during.get("ports_in_use") == 6, during  # the four calls and the 112's two legs
    assert during["ports_refused"]["emergency_share"] >= 1, during
    assert "INVITE urn:service:sos SIP/2.0" in psap.messages()
    assert strongest_window(psap_media.pcm(), 1000) > 0.6  # the operator hears the caller
    assert st["calls"]["emergency_routed"] == 1 and st.get("ports_in_use") == 0, st
    answered = sorted(c["callee"] for c in edge.calls() if c["status"] == 200)
    assert answered == ["112", "600", "600", "600", "600"], edge.calls()


@pytest.mark.timeout(90)
def test_one_users_calls_stop_at_the_per_user_port_cap_and_others_still_call(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """``per_user_max_ports = 4`` and 4 calls to the test numbers allowed: 1001's three calls
    at once get two answers (a pair each) and a 503 with Retry-After; 1002 still gets in."""
    edge_port, p1, p2 = lab.take_ports(3)
    m1, m2 = media_ports(37800, 2, span=20)
    write_alaw(tmp_path / "uac.alaw", 1000, 3)
    cfg = tmp_path / "edge.toml"
    cfg.write_text('[media]\nper_user_max_ports = 4\n\n[extensions]\ncalls_per_user = 4\n'
                   + "".join(f'\n[[users]]\next = "{u}"\npassword = "demo-{u}"\n'
                             for u in ("1001", "1002")))
    edge = EdgeProcess(tmp_path / "edge", edge_port, (26500, 26539),
                       extra=["--config", str(cfg)]).start()
    target = f"127.0.0.1:{edge_port}"

    def dial(user: str, port: int, media: int, calls: int) -> Any:
        return sipp.start(f"u{user}", [
            target, "-sf", str(lab.scenarios / "guard_uac_app.xml"), "-s", "600",
            "-i", "127.0.0.1", "-p", str(port), "-au", user, "-ap", f"demo-{user}",
            "-set", "user", user, "-auth_uri", f"600@{target}", "-m", str(calls),
            "-l", str(calls), "-r", str(calls), "-mi", "127.0.0.1", "-mp", str(media),
            "-timeout_error"], trace_msg=True, trace_logs=True, wall=60)

    by_user: dict[str, int] = {}
    try:
        heavy = dial("1001", p1, m1, 3)
        end = time.monotonic() + 15
        while edge.status().get("ports_in_use") != 2 and time.monotonic() < end:
            time.sleep(0.05)
        light = dial("1002", p2, m2, 1)
        end = time.monotonic() + 15
        while edge.status().get("ports_in_use") != 3 and time.monotonic() < end:
            time.sleep(0.05)
        st = edge.status()
        by_user, refused = st.get("ports_by_user", {}), st.get("ports_refused", {})
        assert heavy.wait(40) == 0, heavy.errors() + edge.log()
        assert light.wait(40) == 0, light.errors() + edge.log()
        edge.wait_idle()
    finally:
        edge.stop()
    assert by_user == {"1001": 4, "1002": 2}, by_user
    assert refused.get("per_user") == 1, refused
    logs = heavy.logs()
    assert (logs.count("answered "), logs.count("refused ")) == (2, 1), logs
    wire = heavy.messages()
    assert "SIP/2.0 503 Service Unavailable: no media ports" in wire and "Retry-After: 5" in wire
    assert light.logs().count("answered ") == 1, light.logs()
    assert sorted(c["caller"] for c in edge.calls() if c["status"] == 200) == \
        ["1001", "1001", "1002"], edge.calls()
