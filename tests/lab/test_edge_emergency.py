"""Emergency calls through the running edge (R-EMERG-1..7, R-EMERG-12), with real peers.

sipp stands for the phones and for the emergency gateway (the PSAP side): a routed 112 must
arrive there with the caller's location (RFC 6442: Geolocation by cid: reference, Geolocation-
Routing, multipart/mixed with the SDP offer and the PIDF-LO of RFC 4119/5491), a user already
on a call still gets through, and a user without the service hears the notice in early media
and gets the clear refusal. Every attempt is in the audit log with its rule and clause.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from lab.audio import best_correlation, envelope, read_channel0, strongest_window
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import call, register, start_callee
from lab.rtp_capture import UdpCapture
from lab.rtp_phone import RtpPhone
from lab.sip_phone import SipPhone as UrnPhone
from lab.sipp_media import media_ports, write_alaw

from softphone.media.tone import rms

pytestmark = pytest.mark.lab

RTP = (21000, 21999)
CA = "{urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr}"
SIT_HZ = (950.0, 1400.0, 1800.0)


def listener() -> RtpPhone:
    """A caller's RTP port that only listens (a refused call: nothing to say)."""
    return RtpPhone(1000.0, seconds=0)


def edge_config(path: Path, psap_port: int) -> Path:
    """1001 has the service and a recorded address in Paris; the others cannot call: 1002 and
    1003 lack the service, 1004 has no location, 1005 and 1007 are in a country that is not
    eligible (the US), 1006's only number is a mobile number (routed best effort)."""
    path.write_text(f"""
[emergency]
route = "sip:sos@127.0.0.1:{psap_port}"

[[users]]
ext = "1001"
password = "demo-1001"
emergency = true
location = {{ country = "FR", city = "Paris", street = "Rue de Rivoli", number = "99",
             postcode = "75001", floor = "2" }}

[[users]]
ext = "1002"
password = "demo-1002"

[[users]]
ext = "1003"
password = "demo-1003"
emergency = false
location = {{ country = "FR", city = "Lyon", postcode = "69001" }}

[[users]]
ext = "1004"
password = "demo-1004"
emergency = true

[[users]]
ext = "1005"
password = "demo-1005"
emergency = true
location = {{ country = "US", city = "New York", postcode = "10001" }}

[[users]]
ext = "1007"
password = "demo-1007"
emergency = true
location = {{ country = "US", city = "Boston", postcode = "02108" }}

[[users]]
ext = "1006"
password = "demo-1006"
did = "+33612345678"
emergency = true
location = {{ country = "FR", city = "Lille", postcode = "59000" }}
""".replace(",\n             ", ", "))
    return path


def audit(edge_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (edge_dir / "audit.jsonl").read_text().splitlines()
            if line.strip()]


def invite_of(trace: str) -> str:
    """The first INVITE sipp received, from its -trace_msg text."""
    start = re.search(r"^INVITE \S+ SIP/2\.0", trace, re.M).start()  # type: ignore[union-attr]
    end = trace.find("-----------------", start)
    return trace[start:end if end > 0 else None]


def pidf_part(invite: str) -> tuple[str, str]:
    """(Content-ID, XML) of the application/pidf+xml part of a multipart/mixed INVITE."""
    text = invite.replace("\r\n", "\n")
    head, _, body = text.partition("\n\n")
    boundary = re.search(r"^Content-Type: *multipart/mixed; *boundary=([^\s;]+)", head, re.M)
    assert boundary, invite
    parts = body.split("--" + boundary.group(1))
    assert parts[-1].startswith("--"), body  # the close delimiter (RFC 2046 §5.1.1)
    for part in parts[1:-1]:
        part_head, _, part_body = part.strip("\n").partition("\n\n")
        if "Content-Type: application/pidf+xml" in part_head:
            cid = re.search(r"^Content-ID: *<([^>]+)>", part_head, re.M)
            assert cid, part_head
            return cid.group(1), part_body.strip()
    raise AssertionError(f"no PIDF-LO part in {invite}")


@pytest.mark.timeout(120)
def test_112_reaches_the_psap_with_the_location_and_media(tmp_path: Path, lab: Any, sipp: Any
                                                          ) -> None:
    edge_port, psap_port, uac_port = lab.take_ports(3)
    (uac_media,) = media_ports(37000, 1)
    write_alaw(tmp_path / "uac.alaw", 1000, 3)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    target = f"127.0.0.1:{edge_port}"
    psap_media = RtpPhone(440, seconds=3)
    try:
        psap = sipp.start("psap", ["-sf", str(lab.scenarios / "emergency_psap_uas.xml"),
                                   "-i", "127.0.0.1", "-p", str(psap_port),
                                   "-set", "mport", str(psap_media.port), "-m", "1"],
                          trace_msg=True, trace_logs=True, wall=60)
        lab.wait_udp_listening(psap_port)
        rtp = UdpCapture(tmp_path, f"udp portrange {RTP[0]}-{RTP[1]}", seconds=40)
        uac = call(sipp, lab, "uac", "edge_uac.xml", target, "1001", "112", uac_port,
                   media=uac_media, trace_logs=True)
        assert uac.wait(40) == 0, uac.errors() + edge.log()
        assert psap.wait(20) == 0, psap.errors() + edge.log()
        flows = rtp.stop()
        st = edge.wait_idle()
    finally:
        psap_media.close()
        edge.stop()
    # on the wire at the gateway: the location by reference to a body part (RFC 6442 §4.1)
    invite = invite_of(psap.messages())
    # RFC 6881: the service in the Request-URI, the gateway by loose route, the digits in To
    assert re.search(r"^INVITE urn:service:sos SIP/2\.0", invite, re.M), invite
    assert re.search(rf"^Route: *<sip:sos@127\.0\.0\.1:{psap_port};lr>", invite, re.M), invite
    assert re.search(r"^To: *<sip:112@127\.0\.0\.1;user=dialstring>", invite, re.M), invite
    # the edge's BYE came in the dialog, to the gateway's Contact (the scenario checks it)
    assert re.search(r"^BYE sip:psap@127\.0\.0\.1:\d+", psap.messages(), re.M)
    geo = re.search(r"^Geolocation: *<cid:([^>]+)>", invite, re.M)
    assert geo, invite
    assert re.search(r"^Geolocation-Routing: *yes", invite, re.M), invite
    cid, xml = pidf_part(invite)
    assert cid == geo.group(1)
    root = ET.fromstring(xml)
    civic = root.find(f".//{CA}civicAddress")
    assert civic is not None, xml
    got = {el.tag.removeprefix(CA): el.text for el in civic}
    assert got == {"country": "FR", "A3": "Paris", "RD": "Rue de Rivoli", "HNO": "99",
                   "PC": "75001", "FLR": "2"}, got
    assert "application/sdp" in invite and "m=audio" in invite
    assert "PSAP geolocation" in psap.logs() and "routing=yes" in psap.logs()
    # the call connected, and its RTP went both ways through edge ports inside the range
    to_psap = sum(n for (src, dst), n in flows.items() if dst == psap_media.port)
    to_uac = sum(n for (src, dst), n in flows.items() if dst == uac_media)
    assert to_psap >= 50 and to_uac >= 50, flows
    edge_ports = {src for (src, dst) in flows if dst in (psap_media.port, uac_media)}
    assert edge_ports and all(RTP[0] <= p <= RTP[1] for p in edge_ports), edge_ports
    # the operator hears the caller: the caller's 1 kHz tone, decoded at the gateway
    assert strongest_window(psap_media.pcm(), 1000) > 0.6
    assert st.get("live_calls") == 0 and st.get("ports_in_use") == 0, st
    assert st["calls"]["emergency_routed"] == 1 and st["calls"]["emergency_refused"] == 0, st
    calls = edge.calls()
    assert len(calls) == 1 and calls[0]["status"] == 200 and calls[0]["callee"] == "112", calls
    # the routing decision is evidence: rule, clause, the service and the country
    routed = [a for a in audit(tmp_path / "edge") if a.get("action") == "route_emergency"]
    assert len(routed) == 1, audit(tmp_path / "edge")
    assert routed[0]["rule_id"] == "R-EMERG-1" and routed[0]["clause"], routed
    assert "urn:service:sos" in json.dumps(routed[0])


@pytest.mark.timeout(120)
def test_a_user_on_a_call_still_reaches_112(tmp_path: Path, lab: Any, sipp: Any) -> None:
    """R-EMERG / R-CALLS-1: the one-channel limit never blocks an emergency call."""
    edge_port, psap_port, callee_port, reg_port, p1, p2, p3 = lab.take_ports(7)
    uac_media, busy_media = media_ports(37200, 2)
    write_alaw(tmp_path / "uac.alaw", 1000, 3)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    target = f"127.0.0.1:{edge_port}"
    psap_media = RtpPhone(440, seconds=3)
    try:
        start_callee(sipp, lab, "callee", "edge_uas_answer.xml", callee_port)
        register(sipp, lab, target, "1002", callee_port, reg_port)
        psap = sipp.start("psap", ["-sf", str(lab.scenarios / "emergency_psap_uas.xml"),
                                   "-i", "127.0.0.1", "-p", str(psap_port),
                                   "-set", "mport", str(psap_media.port), "-m", "1"], wall=60)
        lab.wait_udp_listening(psap_port)
        first = call(sipp, lab, "first", "edge_uac.xml", target, "1001", "1002", p1,
                     media=busy_media)
        end = time.monotonic() + 10
        while edge.status().get("live_calls") != 1 and time.monotonic() < end:
            time.sleep(0.1)
        assert edge.status().get("live_calls") == 1, edge.log()
        # the channel is taken: an ordinary second call is refused ...
        second = call(sipp, lab, "second", "edge_uac_forbidden.xml", target, "1001", "1003", p2)
        assert second.wait(20) == 0, second.errors()
        # ... but 112 goes through, and is answered while the first call is still up
        sos = call(sipp, lab, "sos", "edge_uac.xml", target, "1001", "112", p3,
                   media=uac_media)
        time.sleep(1.0)
        assert edge.status().get("live_calls") == 2, edge.log()
        assert sos.wait(30) == 0, sos.errors() + edge.log()
        assert psap.wait(20) == 0, psap.errors()
        assert first.wait(30) == 0, first.errors()
        edge.wait_idle()
    finally:
        psap_media.close()
        edge.stop()
    records = audit(tmp_path / "edge")
    assert [a["rule_id"] for a in records if a.get("action") == "route_emergency"] == \
        ["R-EMERG-1"], records
    refused = [a for a in records if a.get("rule_id") == "R-CALLS-1"
               and a.get("action") == "reject"]
    assert len(refused) == 1, records
    answered = sorted(c["callee"] for c in edge.calls() if c["status"] == 200)
    assert answered == ["1002", "112"], edge.calls()


@pytest.mark.timeout(90)
def test_without_the_service_the_caller_hears_the_notice_then_a_clear_refusal(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    edge_port, psap_port, uac_port = lab.take_ports(3)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    target = f"127.0.0.1:{edge_port}"
    sink = listener()
    try:
        uac = sipp.start("refused", [
            target, "-sf", str(lab.scenarios / "emergency_uac_refused.xml"), "-s", "15",
            "-i", "127.0.0.1", "-p", str(uac_port), "-au", "1003", "-ap", "demo-1003",
            "-set", "user", "1003", "-set", "mport", str(sink.port),
            "-auth_uri", f"15@{target}", "-m", "1", "-timeout_error"],
            trace_msg=True, trace_logs=True, wall=40)
        assert uac.wait(40) == 0, uac.errors() + edge.log()
        st = edge.wait_idle()
    finally:
        sink.close()
        edge.stop()
    wire = uac.messages()
    # the final answer: the guard's status and reason, the notice's text in a Warning
    assert "SIP/2.0 403 Emergency Calls Not Available From This Line" in wire, wire
    assert re.search(r'^Warning: 399 \S+ "Emergency calls are not available from this line\.'
                     r'[^"]*mobile phone or a landline\."', wire, re.M), wire
    # early media first: a 183 with our answer on a port of the range ...
    early = re.search(r"early media port=(\d+) pt=(\d+)", uac.logs())
    assert early and RTP[0] <= int(early.group(1)) <= RTP[1] and early.group(2) == "8", \
        uac.logs()
    # ... and the notice really played in it: speech, or the special information tone
    pcm = sink.pcm()
    assert len(pcm) >= 2 * 8000 * 2, f"{len(sink.received)} RTP packets only"
    assert rms(pcm) > 300, "the early media was silent"
    if "special information tone plays instead" in edge.log():
        for freq in SIT_HZ:
            assert strongest_window(pcm, freq) > 0.6, (freq, strongest_window(pcm, freq))
    else:
        # the spoken prompt: what arrived follows the loudness of the edge's prompt file,
        # 20 ms by 20 ms, over its whole length
        prompt, rate = read_channel0(tmp_path / "edge" / "prompts" / "emergency-unavailable.wav")
        want, got = envelope(prompt, rate), envelope(pcm, 8000)
        assert len(got) >= 0.9 * len(want), (len(got), len(want))
        assert best_correlation(want, got) > 0.8
    assert st.get("live_calls") == 0 and st.get("ports_in_use") == 0, st
    # the refused attempt is evidence too: which rule refused it and why
    refused = [a for a in audit(tmp_path / "edge") if a.get("action") == "reject"]
    assert len(refused) == 1, audit(tmp_path / "edge")
    assert refused[0]["rule_id"] == "R-EMERG-1" and refused[0]["clause"], refused
    assert "not activated" in json.dumps(refused[0])
    calls = edge.calls()
    assert len(calls) == 1 and calls[0]["status"] == 403, calls


@pytest.mark.timeout(90)
def test_every_reason_for_no_service_gets_the_same_clear_refusal(tmp_path: Path, lab: Any,
                                                                 sipp: Any) -> None:
    """No location (R-EMERG-3), a country that is not eligible (R-EMERG-2, 112 and the US
    911 alike): three callers at once, each hears the notice and gets the same 403, never a
    484; the audit log says which rule refused whom. (A mobile number is no reason: R-EMERG-4
    calls are routed best effort, tests/lab/test_edge_emergency_paths.py.)"""
    edge_port, psap_port, *ports = lab.take_ports(5)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    target = f"127.0.0.1:{edge_port}"
    cases = {"1004": ("17", "R-EMERG-3"), "1005": ("112", "R-EMERG-2"),
             "1007": ("911", "R-EMERG-2")}
    sinks = {user: listener() for user in cases}
    try:
        procs = {user: sipp.start(f"u{user}", [
            target, "-sf", str(lab.scenarios / "emergency_uac_refused.xml"), "-s", dialed,
            "-i", "127.0.0.1", "-p", str(port), "-au", user, "-ap", f"demo-{user}",
            "-set", "user", user, "-set", "mport", str(sinks[user].port),
            "-auth_uri", f"{dialed}@{target}", "-m", "1", "-timeout_error"],
            trace_msg=True, wall=40)
            for (user, (dialed, _)), port in zip(cases.items(), ports, strict=True)}
        for proc in procs.values():
            assert proc.wait(40) == 0, proc.errors() + edge.log()
        st = edge.wait_idle()
    finally:
        for sink in sinks.values():
            sink.close()
        edge.stop()
    for user, proc in procs.items():
        assert "SIP/2.0 403 Emergency Calls Not Available From This Line" in proc.messages()
        assert rms(sinks[user].pcm()) > 300, f"{user} heard nothing"
    assert st.get("live_calls") == 0 and st.get("ports_in_use") == 0, st
    refused = {a["user_id"]: a["rule_id"] for a in audit(tmp_path / "edge")
               if a.get("action") == "reject"}
    assert refused == {user: rule for user, (_, rule) in cases.items()}, refused
    assert not [a for a in audit(tmp_path / "edge") if a.get("action") == "route_emergency"]


@pytest.mark.timeout(60)
def test_hanging_up_during_the_notice_ends_it_cleanly(tmp_path: Path, lab: Any,
                                                      sipp: Any) -> None:
    """CANCEL while the notice plays: 487, no refusal after it, the notice's port freed."""
    edge_port, psap_port, uac_port = lab.take_ports(3)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    target = f"127.0.0.1:{edge_port}"
    try:
        uac = call(sipp, lab, "cancel", "emergency_uac_cancel.xml", target, "1002", "112",
                   uac_port, media=media_ports(37400, 1)[0], trace_msg=True)
        assert uac.wait(30) == 0, uac.errors() + edge.log()
        st = edge.wait_idle()
    finally:
        edge.stop()
    assert "SIP/2.0 403" not in uac.messages()
    assert st.get("live_calls") == 0 and st.get("ports_in_use") == 0, st
    assert st["calls"]["emergency_refused"] == 1, st
    calls = edge.calls()
    assert len(calls) == 1 and calls[0]["status"] == 487, calls
    assert [a["rule_id"] for a in audit(tmp_path / "edge") if a.get("action") == "reject"] == \
        ["R-EMERG-1"]


@pytest.mark.timeout(60)
def test_a_gateway_refusal_is_told_to_the_caller(tmp_path: Path, lab: Any, sipp: Any) -> None:
    """The emergency gateway answers 503: the caller hears the notice (use a mobile or a
    landline), then gets the 503 with a Warning that says the call could not be connected;
    the channel the guard gave the emergency call comes back."""
    edge_port, psap_port, uac_port = lab.take_ports(3)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    scenario = tmp_path / "emergency_uac_failed.xml"
    scenario.write_text((lab.scenarios / "emergency_uac_refused.xml").read_text()
                        .replace('<recv response="403">', '<recv response="503">'))
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    target = f"127.0.0.1:{edge_port}"
    sink = listener()
    try:
        psap = sipp.start("psap", ["-sf", str(lab.scenarios / "emergency_psap_refuse.xml"),
                                   "-i", "127.0.0.1", "-p", str(psap_port), "-m", "1"], wall=30)
        lab.wait_udp_listening(psap_port)
        uac = sipp.start("failed", [
            target, "-sf", str(scenario), "-s", "112", "-i", "127.0.0.1", "-p", str(uac_port),
            "-au", "1001", "-ap", "demo-1001", "-set", "user", "1001",
            "-set", "mport", str(sink.port), "-auth_uri", f"112@{target}", "-m", "1",
            "-timeout_error"], trace_msg=True, wall=40)
        assert uac.wait(40) == 0, uac.errors() + edge.log()
        assert psap.wait(10) == 0, psap.errors()
        st = edge.wait_idle()
    finally:
        sink.close()
        edge.stop()
    wire = uac.messages()
    assert "SIP/2.0 503 Service Unavailable" in wire, wire
    assert re.search(r'^Warning: 399 \S+ "The emergency call could not be connected\.', wire,
                     re.M), wire
    assert rms(sink.pcm()) > 300, "the caller heard nothing"
    assert st["calls"]["emergency_routed"] == 1 and st["calls"]["emergency_failed"] == 1, st
    assert st.get("live_calls") == 0 and st.get("ports_in_use") == 0, st
    records = audit(tmp_path / "edge")
    assert [a["rule_id"] for a in records if a.get("action") == "route_emergency"] == \
        ["R-EMERG-1"]
    ends = [a for a in records if a.get("point") == "call_end"]
    assert len(ends) == 1 and ends[0]["user_id"] == "1001", records
    assert [(c["name"], c["value"]) for c in ends[0]["counters"]] == [("channels", 0)], ends
    calls = edge.calls()
    assert len(calls) == 1 and calls[0]["status"] == 503, calls


@pytest.mark.timeout(90)
def test_a_phone_dialling_the_fire_service_urn_reaches_the_gateway(tmp_path: Path, lab: Any,
                                                                   sipp: Any) -> None:
    """INVITE urn:service:sos.fire from a phone is 18 dialled in France: same guard decision
    (routed, audited with the service), and the gateway sees the phone's URN in the
    Request-URI and in To, the Route to itself. A service outside sos is a clear 404, and a
    line without the service gets the same refusal as for 112."""
    edge_port, psap_port = lab.take_ports(2)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    psap_media = RtpPhone(440, seconds=1)
    phone = UrnPhone(edge_port, "1001", "demo-1001")
    refused = UrnPhone(edge_port, "1003", "demo-1003")
    try:
        psap = sipp.start("psap", ["-sf", str(lab.scenarios / "emergency_psap_uas.xml"),
                                   "-i", "127.0.0.1", "-p", str(psap_port),
                                   "-set", "mport", str(psap_media.port), "-m", "1"],
                          trace_msg=True, trace_logs=True, wall=60)
        lab.wait_udp_listening(psap_port)
        counseling = phone.dial("urn:service:counseling", 0)
        answered = phone.dial("urn:service:sos.fire", 1.0)
        no_service = refused.dial("urn:service:sos", 0)
        assert psap.wait(20) == 0, psap.errors() + edge.log()
        st = edge.wait_idle()
    finally:
        phone.close()
        refused.close()
        psap_media.close()
        edge.stop()
    assert (counseling.status, counseling.reason) == (
        404, "Not Found: no urn:service:counseling service here")
    assert answered.status == 200
    assert (no_service.status, no_service.reason) == (
        403, "Emergency Calls Not Available From This Line")
    assert "mobile phone or a landline" in (no_service.headers.get("warning") or "")
    invite = invite_of(psap.messages())
    assert re.search(r"^INVITE urn:service:sos\.fire SIP/2\.0", invite, re.M), invite
    assert re.search(r"^To: *<urn:service:sos\.fire>", invite, re.M), invite
    assert re.search(rf"^Route: *<sip:sos@127\.0\.0\.1:{psap_port};lr>", invite, re.M), invite
    assert re.search(r"^Geolocation: *<cid:", invite, re.M), invite
    assert st["calls"]["emergency_routed"] == 1 and st["calls"]["emergency_refused"] == 1, st
    assert st.get("live_calls") == 0 and st.get("ports_in_use") == 0, st
    records = audit(tmp_path / "edge")
    routed = [a for a in records if a.get("action") == "route_emergency"]
    assert len(routed) == 1 and routed[0]["user_id"] == "1001", records
    text = json.dumps(routed[0])
    assert "urn:service:sos.fire" in text and '"18"' in text, routed
    assert [a["user_id"] for a in records if a.get("action") == "reject"] == ["1003"], records


@pytest.mark.timeout(90)
def test_the_route_setting_addresses_the_gateway_by_its_own_uri(tmp_path: Path, lab: Any,
                                                                sipp: Any) -> None:
    """[emergency] request_uri = "route": the gateway's own SIP URI in the Request-URI, no
    Route header, To the digits dialled; the call still connects and ends in its dialog."""
    edge_port, psap_port, uac_port = lab.take_ports(3)
    (uac_media,) = media_ports(37600, 1)
    write_alaw(tmp_path / "uac.alaw", 1000, 3)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    cfg.write_text(cfg.read_text().replace("[emergency]\n",
                                           '[emergency]\nrequest_uri = "route"\n', 1))
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    psap_media = RtpPhone(440, seconds=1)
    try:
        psap = sipp.start("psap", ["-sf", str(lab.scenarios / "emergency_psap_uas.xml"),
                                   "-i", "127.0.0.1", "-p", str(psap_port),
                                   "-set", "mport", str(psap_media.port), "-m", "1"],
                          trace_msg=True, wall=60)
        lab.wait_udp_listening(psap_port)
        uac = call(sipp, lab, "uac", "edge_uac.xml", f"127.0.0.1:{edge_port}", "1001", "17",
                   uac_port, media=uac_media)
        assert uac.wait(40) == 0, uac.errors() + edge.log()
        assert psap.wait(20) == 0, psap.errors() + edge.log()
        st = edge.wait_idle()
    finally:
        psap_media.close()
        edge.stop()
    invite = invite_of(psap.messages())
    assert re.search(rf"^INVITE sip:sos@127\.0\.0\.1:{psap_port} SIP/2\.0", invite, re.M), invite
    assert not re.search(r"^Route:", invite, re.M), invite
    assert re.search(r"^To: *<sip:17@127\.0\.0\.1>", invite, re.M), invite
    assert st["calls"]["emergency_routed"] == 1 and st.get("ports_in_use") == 0, st
