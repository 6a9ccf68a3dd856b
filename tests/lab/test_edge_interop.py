"""Stock peers through the running edge, with their default settings: sipp authenticating
without ``-auth_uri`` (it signs the digest with ``uri="sip:<edge host:port>"``)."""

from __future__ import annotations

import re
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from lab.audio import strongest_window
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import start_callee
from lab.rtp_phone import RtpPhone
from lab.sip_phone import SipPhone

from softphone.sip.message import SipResponse, parse_message

pytestmark = pytest.mark.lab

RTP = (21600, 21799)


@pytest.mark.timeout(120)
def test_stock_sipp_registers_and_calls_without_auth_uri(tmp_path: Path, lab: Any,
                                                         sipp: Any) -> None:
    edge_port, uas_port, reg_port, uac_port = lab.take_ports(4)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP).start()
    target = f"127.0.0.1:{edge_port}"
    try:
        uas = start_callee(sipp, lab, "uas", "edge_uas_answer.xml", uas_port,
                           extra=["-m", "1"])
        reg = sipp.start("reg", [target, "-sf", str(lab.scenarios /
                                                    "interop_register_domain.xml"),
                                 "-i", "127.0.0.1", "-p", str(reg_port), "-au", "1002",
                                 "-ap", "demo-1002", "-set", "user", "1002",
                                 "-set", "cport", str(uas_port), "-m", "1", "-timeout_error"],
                         wall=20, trace_msg=True)
        assert reg.wait(20) == 0, reg.errors() + edge.log()
        uac = sipp.start("uac", [target, "-sf", str(lab.scenarios / "edge_uac_quick.xml"),
                                 "-s", "1002", "-i", "127.0.0.1", "-p", str(uac_port),
                                 "-au", "1001", "-ap", "demo-1001", "-set", "user", "1001",
                                 "-m", "1", "-timeout_error"], wall=40, trace_msg=True)
        assert uac.wait(40) == 0, uac.errors() + edge.log()
        assert uas.wait(20) == 0, uas.errors()
    finally:
        edge.stop()
    # on the wire: the credentials named the edge itself, not the Request-URI
    own = f'uri="sip:{target}"'
    assert re.search(r"^REGISTER sip:127\.0\.0\.1 SIP/2\.0", reg.messages(), re.M)
    assert own in reg.messages(), reg.messages()[-2000:]
    assert re.search(rf"^INVITE sip:1002@{re.escape(target)} SIP/2\.0", uac.messages(), re.M)
    assert own in uac.messages(), uac.messages()[-2000:]
    calls = edge.calls()
    assert len(calls) == 1 and calls[0]["caller"] == "1001" and calls[0]["callee"] == "1002", \
        calls


def options(edge_port: int, *, subject: bytes = b"hello", call_id: bytes = b"",
            cseq: bytes = b"1 OPTIONS") -> bytes:
    via = f"SIP/2.0/UDP 127.0.0.1:{{port}};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport"
    return (b"OPTIONS sip:127.0.0.1:%d SIP/2.0\r\n" % edge_port + b"Via: " + via.encode()
            + b"\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:127.0.0.1>\r\n"
            + b"Call-ID: " + (call_id or uuid.uuid4().hex.encode()) + b"\r\nCSeq: " + cseq + b"\r\n"
            + b"Max-Forwards: 70\r\nSubject: " + subject + b"\r\nContent-Length: 0\r\n\r\n")


def exchange(sock: socket.socket, edge_port: int, data: bytes, wait: float) -> list[SipResponse]:
    """Send one datagram (its Via names our port); every response heard within ``wait``."""
    port = sock.getsockname()[1]
    sock.sendto(data.replace(b"{port}", str(port).encode()), ("127.0.0.1", edge_port))
    got: list[SipResponse] = []
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            raw = sock.recv(65535)
        except TimeoutError:
            continue
        msg = parse_message(raw)
        assert isinstance(msg, SipResponse)
        got.append(msg)
    return got


@pytest.mark.timeout(60)
def test_control_characters_in_header_values_are_refused_by_the_running_edge(
        tmp_path: Path, lab: Any) -> None:
    (edge_port,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP).start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    try:
        (ok,) = exchange(sock, edge_port, options(edge_port), 1.0)
        assert ok.status == 200
        for char in (b"\x00", b"\x01", b"\x1b", b"\x7f"):
            (bad,) = exchange(sock, edge_port, options(edge_port, subject=b"a" + char + b"b"), 1.0)
            assert bad.status == 400, (char, bad)
            assert bad.reason == f"Control character {ord(char):#04x} in Subject", bad.reason
        # in a field the answer would copy: dropped, nothing comes back (a Call-ID or a tag
        # is answered: test_edge_signalling_hygiene)
        assert exchange(sock, edge_port, options(edge_port, cseq=b"1\x00 OPTIONS"), 1.5) == []
        # HTAB is whitespace, and the edge still answers afterwards
        (tab,) = exchange(sock, edge_port, options(edge_port, subject=b"a\tb"), 1.0)
        assert tab.status == 200
    finally:
        sock.close()
        edge.stop()


@pytest.mark.timeout(60)
def test_disabled_first_audio_line_and_another_realms_credentials_through_the_edge(
        tmp_path: Path, lab: Any) -> None:
    """A phone behind an outbound proxy: its INVITE carries the proxy's credentials next to
    ours (skipped: challenged, then accepted, never refused), and an offer whose first audio
    line is disabled (m=audio 0, RFC 3264 §6) is answered on the next one, whose media flows:
    the echo extension sends our 700 Hz back to the second line's port (our RTP socket
    answers the edge's first packet, symmetric RTP)."""
    (edge_port,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP).start()
    phone = SipPhone(edge_port, "1001", "demo-1001")
    media = RtpPhone(700, seconds=10)
    theirs = ('Digest username="1001", realm="proxy.example", nonce="abc", '
              'uri="sip:600@127.0.0.1", response="00000000000000000000000000000000", '
              'algorithm=MD5, qop=auth, nc=00000001, cnonce="x"')
    offer = ("v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             "m=audio 0 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
             f"m=audio {media.port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n").encode()
    try:
        resp = phone.dial("sip:600@127.0.0.1", 2.0, body=offer,
                          extra=[("Proxy-Authorization", theirs)])
        first = phone.sent[0]
    finally:
        phone.close()
        media.close()
        edge.stop()
    assert resp.status == 200, (resp, edge.log())
    ports = [int(p) for p in re.findall(r"^m=audio (\d+) ", resp.body.decode(), re.M)]
    assert len(ports) == 2 and ports[0] == 0 and RTP[0] <= ports[1] <= RTP[1], resp.body
    assert strongest_window(media.pcm(), 700) > 0.6
    # the INVITE that was answered carried both realms, the other one first
    answered = [r for r in phone.sent if r.method == "INVITE"][-1]
    realms = re.findall(r'realm="([^"]+)"', " ".join(
        answered.headers.get_all("proxy-authorization")))
    assert realms == ["proxy.example", "softphone"], realms
    assert first.headers.get_all("proxy-authorization") == [theirs]
