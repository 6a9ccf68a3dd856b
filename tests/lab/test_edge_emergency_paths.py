"""Emergency calls that must get through whatever shape the phone's INVITE has.

Nothing but the terms may stop an emergency call: not a location sent by value in a multipart
body (RFC 6442 §4.1), not an INVITE without SDP (RFC 3261 §13.2.1), not a retry on the same
Call-ID, not the way the number was dialled (an outside-line prefix, ``+112``, the US 911).
Each test places the call from a plain-SIP phone (``lab.sip_phone``), with sipp as the emergency
gateway, and checks on the wire what the gateway received and, where media flows, the tone
that crossed the edge.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from lab.audio import strongest_window
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import register, start_callee
from lab.flooder import flood
from lab.rtp_phone import RtpPhone
from lab.sip_phone import SipPhone, pcma_sdp
from lab.test_edge_emergency import audit, edge_config, invite_of

pytestmark = pytest.mark.lab

RTP = (21000, 21999)

PHONE_PIDF = """<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"
 xmlns:gml="http://www.opengis.net/gml" entity="pres:1001@127.0.0.1">
 <tuple id="phone-gps"><status><gp:geopriv><gp:location-info>
  <gml:Point srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>48.8606 2.3376</gml:pos></gml:Point>
 </gp:location-info><gp:usage-rules/></gp:geopriv></status></tuple>
</presence>
"""


def psap(sipp: Any, lab: Any, port: int, media: RtpPhone, calls: int = 1) -> Any:
    proc = sipp.start("psap", ["-sf", str(lab.scenarios / "emergency_psap_uas.xml"),
                               "-i", "127.0.0.1", "-p", str(port),
                               "-set", "mport", str(media.port), "-m", str(calls)],
                      trace_msg=True, trace_logs=True, wall=60)
    lab.wait_udp_listening(port)
    return proc


def with_location_by_value(sdp: bytes, boundary: str = "phone-boundary-1") -> bytes:
    crlf = "\r\n"
    return (f"--{boundary}{crlf}Content-Type: application/sdp{crlf}{crlf}".encode() + sdp
            + f"{crlf}--{boundary}{crlf}Content-Type: application/pidf+xml{crlf}"
              f"Content-ID: <gps-fix@phone.example>{crlf}{crlf}{PHONE_PIDF}{crlf}"
              f"--{boundary}--{crlf}".encode())


@pytest.mark.timeout(90)
def test_a_location_sent_by_value_reaches_the_gateway_beside_the_recorded_one(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """RFC 6442 §4.1 from the phone: multipart/mixed with the SDP offer and its own PIDF-LO,
    ``Geolocation: <cid:...>``. The SDP part is the offer (the call connects, the caller's tone
    reaches the gateway) and the gateway gets both locations: the line's recorded address
    first, then the phone's part untouched, each named by the Geolocation header."""
    edge_port, psap_port = lab.take_ports(2)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    psap_media = RtpPhone(440, seconds=3)
    caller_media = RtpPhone(1000, seconds=3)
    phone = SipPhone(edge_port, "1001", "demo-1001")
    try:
        gateway = psap(sipp, lab, psap_port, psap_media)
        resp = phone.dial(
            "sip:112@127.0.0.1", 2.0,
            body=with_location_by_value(pcma_sdp(caller_media.port)),
            content_type="multipart/mixed;boundary=phone-boundary-1",
            extra=[("Geolocation", "<cid:gps-fix@phone.example>"),
                   ("Geolocation-Routing", "yes")], talker=caller_media)
        assert gateway.wait(20) == 0, gateway.errors() + edge.log()
        st = edge.wait_idle()
    finally:
        phone.close()
        psap_media.close()
        caller_media.close()
        edge.stop()
    assert resp.status == 200, (resp.status, resp.reason, edge.log())
    invite = invite_of(gateway.messages())
    geo = re.search(r"^Geolocation: *(.+)$", invite, re.M)
    assert geo, invite
    cids = re.findall(r"<cid:([^>]+)>", geo.group(1))
    assert len(cids) == 2 and cids[1] == "gps-fix@phone.example", geo.group(1)
    body = invite.replace("\r\n", "\n")
    # the phone's part arrives as it was sent, after ours
    ours, phones = body.find(f"Content-ID: <{cids[0]}>"), body.find(
        "Content-ID: <gps-fix@phone.example>")
    assert 0 < ours < phones, body
    assert "<gml:pos>48.8606 2.3376</gml:pos>" in body and "Rue de Rivoli" in body, body
    assert body.count("Content-Type: application/sdp") == 1, body
    assert strongest_window(psap_media.pcm(), 1000) > 0.6
    assert st.get("live_calls") == 0 and st.get("ports_in_use") == 0, st
    routed = [a for a in audit(tmp_path / "edge") if a.get("action") == "route_emergency"]
    assert len(routed) == 1 and routed[0]["user_id"] == "1001", routed


@pytest.mark.timeout(90)
def test_an_invite_without_sdp_gets_our_offer_and_connects_at_the_ack(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """RFC 3261 §13.2.1: no offer in the INVITE, so the edge's 200 OK carries its offer (OPUS,
    PCMA, PCMU on a port of the range) and the caller's ACK the answer. The call reaches the
    gateway and the caller's tone is heard there; an ordinary call without SDP to the echo
    extension comes back the same way."""
    edge_port, psap_port = lab.take_ports(2)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    psap_media = RtpPhone(440, seconds=3)
    caller_media = RtpPhone(1000, seconds=3)
    echo_media = RtpPhone(700, seconds=3)
    phone = SipPhone(edge_port, "1001", "demo-1001")
    try:
        gateway = psap(sipp, lab, psap_port, psap_media)
        resp = phone.dial("sip:112@127.0.0.1", 2.0, body=b"",
                          ack_body=pcma_sdp(caller_media.port), talker=caller_media)
        offer = phone.answer_sdp.decode()
        echo = phone.dial("sip:600@127.0.0.1", 2.0, body=b"", ack_body=pcma_sdp(echo_media.port),
                          talker=echo_media)
        assert gateway.wait(20) == 0, gateway.errors() + edge.log()
        st = edge.wait_idle()
    finally:
        phone.close()
        psap_media.close()
        caller_media.close()
        echo_media.close()
        edge.stop()
    assert resp.status == 200 and echo.status == 200, (resp, echo, edge.log())
    m = re.search(r"^m=audio (\d+) RTP/AVP ([0-9 ]+)", offer, re.M)
    assert m and RTP[0] <= int(m.group(1)) <= RTP[1], offer
    assert m.group(2).split()[:3] == ["96", "8", "0"], offer  # OPUS first, then PCMA, PCMU
    assert strongest_window(psap_media.pcm(), 1000) > 0.6
    assert strongest_window(echo_media.pcm(), 700) > 0.6
    assert st.get("live_calls") == 0 and st.get("ports_in_use") == 0, st
    assert st["calls"]["emergency_routed"] == 1, st


@pytest.mark.timeout(60)
def test_a_broken_multipart_body_is_a_400_and_the_edge_goes_on(tmp_path: Path, lab: Any) -> None:
    """A multipart body without its closing delimiter is a clear 400 naming the fault; a body
    that is neither SDP nor multipart is 415 with Accept; the next call still works."""
    (edge_port,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP).start()
    media = RtpPhone(700, seconds=2)
    phone = SipPhone(edge_port, "1001", "demo-1001")
    try:
        broken = phone.dial("sip:600@127.0.0.1", 0, body=b"--b\r\nContent-Type: application/sdp"
                            b"\r\n\r\nv=0\r\n", content_type="multipart/mixed;boundary=b")
        other = phone.dial("sip:600@127.0.0.1", 0, body=b"hello", content_type="text/plain")
        time.sleep(0.2)
        fine = phone.dial("sip:600@127.0.0.1", 1.0, media_port=media.port, talker=media)
        st = edge.wait_idle()
    finally:
        phone.close()
        media.close()
        edge.stop()
    assert broken.status == 400 and "Multipart" in broken.reason, broken.reason
    assert other.status == 415 and "multipart/mixed" in (other.headers.get("accept") or "")
    assert fine.status == 200 and strongest_window(media.pcm(), 700) > 0.6
    assert st.get("live_calls") == 0 and st.get("ports_in_use") == 0, st


@pytest.mark.timeout(120)
def test_dial_variants_and_a_mobile_caller_all_reach_the_gateway(tmp_path: Path, lab: Any,
                                                                 sipp: Any) -> None:
    """``0112`` behind the account's outside-line prefix "0" (Kari's law), ``+112``, and a
    caller whose only number is a mobile one (R-EMERG-4 says "not guaranteed", not
    forbidden: routed best effort, the caller warned on the 200 OK, the audit says so). Each
    arrives at the gateway as urn:service:sos; ``0112`` followed by more digits is no
    emergency call."""
    edge_port, psap_port = lab.take_ports(2)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    cfg.write_text('[account]\noutside_line_prefix = "0"\n\n' + cfg.read_text())
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    psap_media = RtpPhone(440, seconds=1)
    fixed = SipPhone(edge_port, "1001", "demo-1001")
    mobile = SipPhone(edge_port, "1006", "demo-1006")
    try:
        gateway = psap(sipp, lab, psap_port, psap_media, calls=3)
        prefixed = fixed.dial("sip:0112@127.0.0.1", 0.5)
        plus = fixed.dial("sip:+112@127.0.0.1;user=phone", 0.5)
        best_effort = mobile.dial("sip:112@127.0.0.1", 0.5)
        longer = fixed.dial("sip:01120000@127.0.0.1", 0)
        assert gateway.wait(30) == 0, gateway.errors() + edge.log()
        st = edge.wait_idle()
    finally:
        fixed.close()
        mobile.close()
        psap_media.close()
        edge.stop()
    assert [r.status for r in (prefixed, plus, best_effort)] == [200, 200, 200], edge.log()
    assert longer.status == 404, (longer.status, longer.reason)
    warning = best_effort.headers.get("warning") or ""
    assert "mobile number are not guaranteed" in warning, best_effort
    invites = re.findall(r"^INVITE (\S+) SIP/2\.0", gateway.messages(), re.M)
    assert invites == ["urn:service:sos"] * 3, invites
    assert st["calls"]["emergency_routed"] == 3 and st["calls"]["emergency_refused"] == 0, st
    records = audit(tmp_path / "edge")
    routed = [a for a in records if a.get("action") == "route_emergency"]
    assert [a["user_id"] for a in routed] == ["1001", "1001", "1006"], routed
    assert "R-EMERG-4" in str(routed[2].get("warnings")), routed[2]
    assert not [a for a in records if a.get("action") == "reject"], records


@pytest.mark.timeout(90)
def test_a_retry_on_the_same_call_id_is_decided_afresh(tmp_path: Path, lab: Any,
                                                       sipp: Any) -> None:
    """The edge admits 112, then cannot answer the offer (no common codec: 488) and releases
    the attempt. The phone retries with the same Call-ID and a higher CSeq, as RFC 3261
    allows: the retry is routed to the gateway, not refused as a call that already ended."""
    edge_port, psap_port = lab.take_ports(2)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    psap_media = RtpPhone(440, seconds=1)
    phone = SipPhone(edge_port, "1001", "demo-1001")
    g729 = (b"v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n")
    call_id = "retry-112@127.0.0.1"
    try:
        gateway = psap(sipp, lab, psap_port, psap_media)
        first = phone.dial("sip:112@127.0.0.1", 0, body=g729, call_id=call_id)
        again = phone.dial("sip:112@127.0.0.1", 0.5, call_id=call_id, cseq=5)
        assert gateway.wait(20) == 0, gateway.errors() + edge.log()
        st = edge.wait_idle()
    finally:
        phone.close()
        psap_media.close()
        edge.stop()
    assert first.status == 488, (first.status, first.reason)
    assert again.status == 200, (again.status, again.reason, edge.log())
    assert st["calls"]["emergency_routed"] == 1 and st.get("ports_in_use") == 0, st
    routed = [a for a in audit(tmp_path / "edge") if a.get("action") == "route_emergency"]
    assert len(routed) == 2 and routed[0]["call_id"] != routed[1]["call_id"], routed


def misbehaving_phone(port: int, src: int, n: int) -> bytes:
    """INVITEs to an ordinary number without credentials, about 2,000 a second."""
    return (f"INVITE sip:1002@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.2:{src};branch=z9hG4bK-fl{n}\r\n"
            f"From: <sip:1003@127.0.0.2>;tag=f{n}\r\nTo: <sip:1002@127.0.0.1>\r\n"
            f"Call-ID: fl{n}@127.0.0.2\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


@pytest.mark.timeout(120)
def test_a_flood_from_the_same_address_never_stops_an_emergency_call(tmp_path: Path, lab: Any,
                                                                      sipp: Any) -> None:
    """A site behind one NAT address (127.0.0.2): one phone floods, which empties the
    address's budget, so an ordinary call from a second phone there is dropped. 112 from that
    second phone still goes through (INVITE, ACK, BYE), while the flood goes on."""
    edge_port, psap_port = lab.take_ports(2)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    cfg.write_text("[sip]\nflood_rate_per_s = 20\nflood_burst = 20\n\n" + cfg.read_text())
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    psap_media = RtpPhone(440, seconds=3)
    caller_media = RtpPhone(1000, seconds=3)
    phone = SipPhone(edge_port, "1001", "demo-1001", host="127.0.0.2")
    stop, sent = threading.Event(), [0]
    flooder = threading.Thread(target=flood, args=(edge_port, 20, stop, sent, [0],
                                                   misbehaving_phone), kwargs={"pace": 20},
                               daemon=True)
    try:
        gateway = psap(sipp, lab, psap_port, psap_media)
        flooder.start()
        time.sleep(1.0)
        assert edge.status()["rate_limited"] > 100, edge.status()
        with pytest.raises(AssertionError, match="no final answer"):
            phone.final(phone_options(phone), wait=2.0)  # the address is out of budget
        resp = phone.dial("sip:112@127.0.0.1", 2.0, media_port=caller_media.port,
                          talker=caller_media)
        assert flooder.is_alive(), "the flood ended before the call did"
        assert gateway.wait(20) == 0, gateway.errors() + edge.log()
    finally:
        stop.set()
        flooder.join(5)
        phone.close()
        psap_media.close()
        caller_media.close()
        edge.stop()
    assert resp.status == 200, (resp.status, resp.reason)
    assert strongest_window(psap_media.pcm(), 1000) > 0.6
    assert sent[0] > 5000, sent


def phone_options(phone: SipPhone) -> Any:
    from softphone.sip.message import Headers, SipRequest

    req = SipRequest("OPTIONS", "sip:1002@127.0.0.1", Headers([
        ("From", f"<sip:{phone.user}@127.0.0.2>;tag=o1"), ("To", "<sip:1002@127.0.0.1>"),
        ("Call-ID", "opt-1@127.0.0.2"), ("CSeq", "1 OPTIONS"), ("Max-Forwards", "70")]))
    phone._via(req)
    return req


@pytest.mark.timeout(120)
def test_the_gateway_calling_back_is_never_refused_by_the_account(tmp_path: Path, lab: Any,
                                                                  sipp: Any) -> None:
    """A suspended account (billing): 1001's emergency call is routed, and the gateway's
    call back to 1001 within ``[emergency] callback_window_s`` rings and is answered although
    an ordinary inbound call to that account is refused (480). Past the window, a call from
    the gateway is an ordinary inbound call again: 480."""
    edge_port, psap_port, callee_port, reg_port = lab.take_ports(4)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    cfg.write_text('[account]\nstate = "billing_suspended"\n\n' + cfg.read_text().replace(
        "[emergency]\n", "[emergency]\ncallback_window_s = 4\n", 1))
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    target = f"127.0.0.1:{edge_port}"
    psap_media = RtpPhone(440, seconds=1)
    phone = SipPhone(edge_port, "1001", "demo-1001")
    try:
        callee = start_callee(sipp, lab, "callee", "edge_uas_answer.xml", callee_port,
                              extra=["-m", "1"])
        register(sipp, lab, target, "1001", callee_port, reg_port)
        gateway = psap(sipp, lab, psap_port, psap_media)
        sos = phone.dial("sip:112@127.0.0.1", 0.5)
        assert gateway.wait(20) == 0, gateway.errors() + edge.log()
        ended = time.monotonic()
        operator = SipPhone(edge_port, "112", "", port=psap_port)
        try:
            back = operator.dial("sip:1001@127.0.0.1", 0.5)
            time.sleep(max(0.0, ended + 5.0 - time.monotonic()))
            late = operator.dial("sip:1001@127.0.0.1", 0)
        finally:
            operator.close()
        assert callee.wait(20) == 0, callee.errors() + edge.log()
        st = edge.wait_idle()
    finally:
        phone.close()
        psap_media.close()
        edge.stop()
    assert sos.status == 200, (sos.status, sos.reason)
    assert back.status == 200, (back.status, back.reason, edge.log())
    assert late.status == 480, (late.status, late.reason)
    assert st.get("live_calls") == 0 and st.get("ports_in_use") == 0, st
    records = audit(tmp_path / "edge")
    callback = [a for a in records if "psap_callback" in str(a.get("details"))]
    assert len(callback) == 1 and callback[0]["action"] == "allow", records
    assert callback[0]["rule_id"] == "R-EMERG-1" and callback[0]["user_id"] == "1001"
    assert [a["rule_id"] for a in records if a.get("action") == "reject"] == ["R-BILL-10"]


@pytest.mark.timeout(120)
def test_the_gateway_calling_back_after_the_edge_crashed_mid_call_is_still_a_call_back(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """A suspended account (billing). 1001's emergency call is up when the edge dies
    (SIGKILL: no BYE, nothing saved at the end). The edge starts again on the same data
    directory, and the gateway calls 1001 back: it rings and is answered, audited as a PSAP
    call-back, although the account refuses every ordinary call (1002 calling 1001: 403)."""
    edge_port, psap_port, callee_port, reg_port = lab.take_ports(4)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    cfg.write_text('[account]\nstate = "billing_suspended"\n\n' + cfg.read_text().replace(
        "[emergency]\n", "[emergency]\ncallback_window_s = 600\n", 1))
    data = tmp_path / "edge"
    edge = EdgeProcess(data, edge_port, RTP, extra=["--config", str(cfg)]).start()
    psap_media = RtpPhone(440, seconds=6)
    phone = SipPhone(edge_port, "1001", "demo-1001")

    def call_112() -> None:
        with contextlib.suppress(AssertionError, OSError):  # its BYE meets a dead edge
            phone.dial("sip:112@127.0.0.1", 6.0)

    dialling = threading.Thread(target=call_112, daemon=True)
    try:
        gateway = psap(sipp, lab, psap_port, psap_media)
        dialling.start()
        end = time.monotonic() + 10
        while edge.status().get("live_calls") != 1 and time.monotonic() < end:
            time.sleep(0.1)
        assert edge.status().get("live_calls") == 1, edge.log()
        time.sleep(1.0)  # answered by the gateway, media flowing
        edge.crash()
        gateway.stop()
        edge = EdgeProcess(data, edge_port, RTP, extra=["--config", str(cfg)]).start()
        callee = start_callee(sipp, lab, "callee", "edge_uas_answer.xml", callee_port,
                              extra=["-m", "1"])
        register(sipp, lab, f"127.0.0.1:{edge_port}", "1001", callee_port, reg_port)
        operator = SipPhone(edge_port, "112", "", port=psap_port)
        try:
            back = operator.dial("sip:1001@127.0.0.1", 0.5)
            ordinary = SipPhone(edge_port, "1002", "demo-1002").dial("sip:1001@127.0.0.1", 0)
        finally:
            operator.close()
        assert back.status == 200, (back.status, back.reason, edge.log())
        assert callee.wait(20) == 0, callee.errors() + edge.log()
        st = edge.wait_idle()
    finally:
        phone.close()
        dialling.join(10)
        psap_media.close()
        edge.stop()
    assert ordinary.status == 403, (ordinary.status, ordinary.reason)
    assert st.get("live_calls") == 0 and st.get("ports_in_use") == 0, st
    records = audit(data)
    callback = [a for a in records if "psap_callback" in str(a.get("details"))]
    assert len(callback) == 1 and callback[0]["action"] == "allow", records
    assert callback[0]["rule_id"] == "R-EMERG-1" and callback[0]["user_id"] == "1001"
