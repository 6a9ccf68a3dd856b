"""A stranger cannot end or redirect someone else's call (RFC 3261 §12.2.2), through the edge.

A real call (sipp caller 1001 -> edge -> sipp callee 1002) runs for 10 s. Meanwhile an
attacker on 127.0.0.2, who knows the Call-ID (and, in the second part, the tags too: they are
read from the phones' own message traces, as a sniffer on the path would), sends BYE and
re-INVITE (with an SDP that points the media at itself) on both legs. Wrong tags get 481;
the right tags from the wrong address get 407 and, with the credentials of another user, 403;
the call goes on and its record says the caller hung up, from its own address. A BYE that
authenticates as the caller ends it, and the record says so: from where, verified by digest.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess

from softphone.sip.auth import DigestClient
from softphone.sip.message import SipRequest, SipResponse, parse_message

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(not Path("/usr/bin/sipp").exists(), reason="sipp missing")]

RTP = (24000, 24999)
ATTACKER = "127.0.0.2"


def sipp_messages(trace: str) -> list[str]:
    """The SIP messages of a sipp -trace_msg file, in order."""
    parts = re.split(r"^(?:UDP|TCP) message (?:sent|received)[^\n]*\n", trace, flags=re.M)
    return [p.split("\n-------------", 1)[0].strip() for p in parts[1:]]


def header(msg: str, name: str) -> str:
    m = re.search(rf"^{name}:\s*(.*)$", msg, flags=re.M | re.I)
    assert m is not None, (name, msg)
    return m.group(1).strip()


def tag(value: str) -> str:
    m = re.search(r";\s*tag=([^;>\s]+)", value)
    assert m is not None, value
    return m.group(1)


class Attacker:
    """Raw SIP over UDP from 127.0.0.2: one request, its final answer."""

    def __init__(self, edge_port: int) -> None:
        self.edge = ("127.0.0.1", edge_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ATTACKER, 0))
        self.sock.settimeout(3.0)
        self.port = self.sock.getsockname()[1]
        self.cseq = 100

    def request(self, method: str, call_id: str, from_tag: str, to_tag: str, *,
                body: str = "") -> SipRequest:
        self.cseq += 1
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        text = (f"{method} sip:edge@127.0.0.1:{self.edge[1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {ATTACKER}:{self.port};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
                f"From: <sip:1001@127.0.0.1>;tag={from_tag}\r\n"
                f"To: <sip:1002@127.0.0.1>;tag={to_tag}\r\n"
                f"Call-ID: {call_id}\r\nCSeq: {self.cseq} {method}\r\n"
                f"Contact: <sip:x@{ATTACKER}:{self.port}>\r\nMax-Forwards: 70\r\n"
                f"{ctype}Content-Length: {len(body)}\r\n\r\n{body}")
        msg = parse_message(text.encode())
        assert isinstance(msg, SipRequest)
        return msg

    def send(self, req: SipRequest) -> SipResponse:
        if req.headers.get("via") is None:  # a retry built by DigestClient: a new branch
            req.headers.insert_first("Via", f"SIP/2.0/UDP {ATTACKER}:{self.port};branch="
                                            f"z9hG4bK{secrets.token_hex(6)}")
        self.sock.sendto(req.to_bytes(), self.edge)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            data, _ = self.sock.recvfrom(65535)
            resp = parse_message(data)
            # the edge retransmits its final answers to INVITEs we never ACK: skip those
            if isinstance(resp, SipResponse) and resp.status >= 200 \
                    and resp.headers.get("cseq") == req.headers.get("cseq") \
                    and resp.call_id == req.call_id:
                return resp
        raise AssertionError(f"no final answer to {req.method}")

    def status(self, method: str, call_id: str, from_tag: str, to_tag: str,
               body: str = "") -> int:
        return self.send(self.request(method, call_id, from_tag, to_tag, body=body)).status

    def close(self) -> None:
        self.sock.close()


def hijack_sdp(port: int) -> str:
    return (f"v=0\r\no=x 1 2 IN IP4 {ATTACKER}\r\ns=-\r\nc=IN IP4 {ATTACKER}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")


def start_call(sipp: Any, lab: Any, target: str, name: str, ports: list[int]) -> tuple[Any, Any]:
    uas_port, reg_port, uac_port = ports
    uas = sipp.start(f"{name}uas", ["-sf", str(lab.scenarios / "edge_uas_answer.xml"),
                                    "-i", "127.0.0.1", "-p", str(uas_port), "-mi", "127.0.0.1",
                                    "-m", "1"], wall=60, trace_msg=True)
    lab.wait_udp_listening(uas_port)
    reg = sipp.start(f"{name}reg", [target, "-sf", str(lab.scenarios / "edge_register.xml"),
                                    "-i", "127.0.0.1", "-p", str(reg_port), "-au", "1002",
                                    "-ap", "demo-1002", "-set", "user", "1002",
                                    "-set", "cport", str(uas_port), "-m", "1",
                                    "-timeout_error"], wall=20)
    assert reg.wait(20) == 0, reg.errors()
    uac = sipp.start(f"{name}uac", [target, "-sf", str(lab.scenarios / "dialog_uac_long.xml"),
                                    "-s", "1002", "-i", "127.0.0.1", "-p", str(uac_port),
                                    "-au", "1001", "-ap", "demo-1001", "-set", "user", "1001",
                                    "-auth_uri", f"1002@{target}", "-m", "1",
                                    "-timeout_error"], wall=40, trace_msg=True)
    return uas, uac


def dialogs(uas: Any, uac: Any, edge: EdgeProcess,
            answered: int) -> tuple[tuple[str, str, str], ...]:
    """(Call-ID, the phone's tag, the edge's tag) of leg a and of leg b, once answered."""
    end = time.monotonic() + 15
    while edge.status().get("calls", {}).get("answered", 0) < answered or \
            "SIP/2.0 200 OK" not in uac.messages() or "ACK" not in uas.messages():
        assert time.monotonic() < end, edge.log()
        time.sleep(0.1)
    time.sleep(0.3)
    a_ok = next(m for m in sipp_messages(uac.messages())
                if m.startswith("SIP/2.0 200") and "INVITE" in header(m, "CSeq"))
    b_inv = next(m for m in sipp_messages(uas.messages()) if m.startswith("INVITE"))
    b_ok = next(m for m in sipp_messages(uas.messages()) if m.startswith("SIP/2.0 200"))
    leg_a = (header(a_ok, "Call-ID"), tag(header(a_ok, "From")), tag(header(a_ok, "To")))
    leg_b = (header(b_inv, "Call-ID"), tag(header(b_ok, "To")), tag(header(b_inv, "From")))
    return leg_a, leg_b


@pytest.mark.timeout(150)
def test_a_stranger_cannot_end_or_redirect_a_call(tmp_path: Path, lab: Any, sipp: Any) -> None:
    edge_port, *ports = lab.take_ports(7)
    target = f"127.0.0.1:{edge_port}"
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP).start()
    attacker = Attacker(edge_port)
    try:
        # -- 1: the stranger fails on every count; the caller hangs up after 10 s
        uas, uac = start_call(sipp, lab, target, "one", ports[0:3])
        (a_cid, a_phone, a_edge), (b_cid, b_phone, b_edge) = dialogs(uas, uac, edge, 1)
        forged = "f" + secrets.token_hex(4)
        sdp = hijack_sdp(40000)
        answers = {
            "bye-a-made-up-tags": attacker.status("BYE", a_cid, forged, forged),
            "bye-a-made-up-to-tag": attacker.status("BYE", a_cid, a_phone, forged),
            "reinvite-a-made-up-tags": attacker.status("INVITE", a_cid, forged, a_edge, sdp),
            "bye-b-made-up-tags": attacker.status("BYE", b_cid, forged, forged),
            "info-a-made-up-tags": attacker.status("INFO", a_cid, a_phone, forged),
            "bye-a-right-tags": attacker.status("BYE", a_cid, a_phone, a_edge),
            "reinvite-a-right-tags": attacker.status("INVITE", a_cid, a_phone, a_edge, sdp),
            "bye-b-right-tags": attacker.status("BYE", b_cid, b_phone, b_edge),
            "reinvite-b-right-tags": attacker.status("INVITE", b_cid, b_phone, b_edge, sdp),
        }
        # the right tags and someone's credentials, but not those of the dialog's peer
        first = attacker.request("BYE", a_cid, a_phone, a_edge)
        challenge = attacker.send(first)
        other = DigestClient("1003", "demo-1003").authorize(first, challenge)
        answers["bye-a-as-1003"] = attacker.send(other).status
        assert answers == {
            "bye-a-made-up-tags": 481, "bye-a-made-up-to-tag": 481,
            "reinvite-a-made-up-tags": 481, "bye-b-made-up-tags": 481,
            "info-a-made-up-tags": 481,
            "bye-a-right-tags": 407, "reinvite-a-right-tags": 407,
            "bye-b-right-tags": 407, "reinvite-b-right-tags": 407,
            "bye-a-as-1003": 403}, answers
        assert edge.status()["live_calls"] == 1
        assert uac.wait(30) == 0, uac.errors() + edge.log()
        assert uas.wait(10) == 0, uas.errors()
        (rec,) = edge.wait_calls(1)
        assert rec["end_cause"] == "caller-bye" and rec["duration_s"] >= 9.5, rec
        assert rec["ended_by"]["source"].startswith("udp:127.0.0.1:"), rec
        assert rec["ended_by"]["party"] == "caller" and rec["ended_by"]["user"] == "1001"
        assert rec["ended_by"]["verified"] == "address", rec
        assert all(ATTACKER not in leg["remote_rtp"] for leg in rec["legs"]), rec

        # -- 2: from elsewhere with the caller's own credentials the BYE is the caller's
        uas, uac = start_call(sipp, lab, target, "two", ports[3:6])
        (a_cid, a_phone, a_edge), _ = dialogs(uas, uac, edge, 2)
        first = attacker.request("BYE", a_cid, a_phone, a_edge)
        challenge = attacker.send(first)
        assert challenge.status == 407
        retry = DigestClient("1001", "demo-1001").authorize(first, challenge)
        assert attacker.send(retry).status == 200
        calls = edge.wait_calls(2)
        assert len(calls) == 2, calls
        rec = calls[1]
        assert rec["end_cause"] == "caller-bye", rec
        assert rec["ended_by"]["source"].startswith(f"udp:{ATTACKER}:"), rec
        assert rec["ended_by"]["verified"] == "digest", rec
        assert uas.wait(10) == 0, uas.errors()  # the callee was told (BYE from the edge)
        uac.stop()  # its own BYE, later, gets 481: the call is over
    finally:
        attacker.close()
        edge.stop()
