"""Emergency calls that must get through whatever shape the phone's INVITE has.

Nothing but the terms may stop an emergency call: not a location sent by value in a multipart
body (RFC 6442 §4.1), not an INVITE without SDP (RFC 3261 §13.2.1), not a retry on the same
Call-ID, not the way the number was dialled (an outside-line prefix, ``+112``, the US 911).
Each test places the call from a plain-SIP phone (``lab.sip_phone``), with sipp as the emergency
gateway, and checks on the wire what the gateway received and, where media flows, the tone
that crossed the edge.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from lab.audio import strongest_window
from lab.edge_proc import EdgeProcess
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
