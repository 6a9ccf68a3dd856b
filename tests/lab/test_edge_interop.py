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
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import start_callee

from softphone.sip.message import SipResponse, parse_message

pytestmark = pytest.mark.lab

RTP = (21000, 21199)


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


def options(edge_port: int, *, subject: bytes = b"hello", call_id: bytes = b"") -> bytes:
    via = f"SIP/2.0/UDP 127.0.0.1:{{port}};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport"
    return (b"OPTIONS sip:127.0.0.1:%d SIP/2.0\r\n" % edge_port + b"Via: " + via.encode()
            + b"\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:127.0.0.1>\r\n"
            + b"Call-ID: " + (call_id or uuid.uuid4().hex.encode()) + b"\r\nCSeq: 1 OPTIONS\r\n"
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
        # in a field the answer would copy: dropped, nothing comes back
        assert exchange(sock, edge_port, options(edge_port, call_id=b"x\x00y"), 1.5) == []
        # HTAB is whitespace, and the edge still answers afterwards
        (tab,) = exchange(sock, edge_port, options(edge_port, subject=b"a\tb"), 1.0)
        assert tab.status == 200
    finally:
        sock.close()
        edge.stop()
