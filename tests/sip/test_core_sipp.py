"""The SIP core against sipp, a real peer, over real UDP on loopback.

A minimal blocking pump (one socket, ``select``, the monotonic clock) drives the sans-I/O
core; it is the least an adapter can be, so that what is tested is the core's wire
behaviour: Via/branch handling, 100/180/200 and the 2xx retransmission until sipp's ACK, the
ACK and BYE we build from a dialog, digest auth both ways, and recovery from sipp's
simulated packet loss (-lost).
"""

from __future__ import annotations

import csv
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest
from lab.netutil import free_port

from softphone.sip.auth import DigestClient, DigestServer
from softphone.sip.core import Address, SipCore
from softphone.sip.dialog import Dialog
from softphone.sip.events import (
    AckNotReceived,
    AckReceived,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTimeout,
)
from softphone.sip.message import Headers, SipRequest, SipResponse, StreamFramer, parse_message
from softphone.sip.transaction import TxnState

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
]

SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


class Pump:
    """One UDP socket on 127.0.0.1 feeding a SipCore; the TU is a callback per event."""

    def __init__(self, **core_kw: float) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.addr = Address("udp", "127.0.0.1", self.port)
        self.core = SipCore(local={"udp": self.addr}, **core_kw)  # type: ignore[arg-type]
        self.events: list[Event] = []
        self.sent: list[bytes] = []

    def close(self) -> None:
        self.sock.close()

    def flush(self) -> None:
        for data, dest in self.core.datagrams_to_send(time.monotonic()):
            self.sent.append(data)
            self.sock.sendto(data, (dest.host, dest.port))

    def run(self, on_event: Callable[[Event], None], until: Callable[[], bool],
            timeout: float) -> None:
        end = time.monotonic() + timeout
        while not until():
            now = time.monotonic()
            if now > end:
                raise AssertionError("timed out waiting for the exchange to finish")
            deadline = self.core.get_timer()
            wait = 0.05 if deadline is None else min(0.05, max(0.0, deadline - now))
            readable, _, _ = select.select([self.sock], [], [], wait)
            if readable:
                data, (host, port) = self.sock.recvfrom(65535)
                self.core.receive(data, Address("udp", host, port), time.monotonic())
            self.core.handle_timer(time.monotonic())
            while (ev := self.core.next_event()) is not None:
                self.events.append(ev)
                on_event(ev)
            self.flush()


def sipp_stats(path: Path) -> dict[str, str]:
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    return dict(zip(rows[0], rows[-1], strict=False))


def start_sipp(tmp: Path, args: list[str], port: int) -> subprocess.Popen[bytes]:
    cmd = ["timeout", "-k", "3", "60", "sipp", *args, "-i", "127.0.0.1", "-p", str(port),
           "-mi", "127.0.0.1", "-nostdin", "-trace_stat", "-stf", str(tmp / "stats.csv"),
           "-trace_err", "-error_file", str(tmp / "err.log"), "-trace_msg", "-message_file",
           str(tmp / "msg.log"), "-timeout", "40", "-timeout_error"]
    return subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Endpoint(Protocol):
    core: SipCore
    port: int


def uas_tu(pump: Endpoint) -> Callable[[Event], None]:
    """Answers INVITE with 180 + 200 (SDP), BYE with 200, like a phone that picks up."""
    def on_event(ev: Event) -> None:
        now = time.monotonic()
        if isinstance(ev, RequestReceived):
            txn, req = ev.transaction, ev.request
            if req.method == "INVITE":
                pump.core.respond(txn, 180, "Ringing", now, to_tag="uas-" + req.call_id[:8])
                pump.core.respond(txn, 200, "OK", now, to_tag="uas-" + req.call_id[:8],
                                  body=SDP, content_type="application/sdp",
                                  extra=[("Contact", f"<sip:uas@127.0.0.1:{pump.port}>")])
            else:
                pump.core.respond(txn, 200, "OK", now)
    return on_event


@pytest.mark.timeout(90)
@pytest.mark.parametrize("lost", [0, 10])
def test_sipp_uac_calls_the_core(tmp_path: Path, lost: int) -> None:
    pump = Pump(t1=0.1)  # loopback: a short T1 keeps timer L (64*T1) at 6.4 s
    sipp_port = free_port()
    calls = 6
    args = [f"127.0.0.1:{pump.port}", "-sn", "uac", "-m", str(calls), "-r", "3", "-d", "200"]
    if lost:
        args += ["-lost", str(lost)]
    proc = start_sipp(tmp_path, args, sipp_port)
    try:
        pump.run(uas_tu(pump), until=lambda: proc.poll() is not None, timeout=80)
        # Let every transaction run out (2xx retransmissions until ACK or timer L).
        pump.run(lambda ev: None, until=lambda: not pump.core.transactions, timeout=20)
    finally:
        stop(proc)
        pump.close()
    stats = sipp_stats(tmp_path / "stats.csv")
    err = (tmp_path / "err.log").read_text(errors="replace") if (tmp_path / "err.log").exists() \
        else ""
    assert proc.returncode == 0, (proc.returncode, stats.get("FailedCall(C)"), err[-2000:])
    assert stats["SuccessfulCall(C)"] == str(calls)
    invites = [e for e in pump.events
               if isinstance(e, RequestReceived) and e.request.method == "INVITE"]
    byes = [e for e in pump.events if isinstance(e, RequestReceived) and e.request.method == "BYE"]
    acks = [e for e in pump.events if isinstance(e, AckReceived)]
    # Each call reached the TU exactly once, whatever sipp retransmitted.
    assert len(invites) == len(byes) == calls, (
        [e.request.call_id for e in invites], [e.request.call_id for e in byes], stats,
        err[-2000:])
    acked = {e.request.call_id for e in acks}
    if not lost:
        assert len(acked) == calls
        return
    # sipp -lost also "loses" some of its ACKs (and does not re-ACK once it has sent its BYE):
    # for those calls the core must keep retransmitting its 200 (§13.3.1.4) until timer L.
    ok_to_invite: dict[str, int] = {}
    for data in pump.sent:
        msg = parse_message(data)
        if isinstance(msg, SipResponse) and msg.status == 200 and msg.cseq.method == "INVITE":
            ok_to_invite[msg.call_id] = ok_to_invite.get(msg.call_id, 0) + 1
    for e in invites:
        sends = ok_to_invite.get(e.request.call_id, 0)
        if e.request.call_id in acked:
            assert sends >= 1
        else:
            assert sends >= 6, (e.request.call_id, sends)  # T1 doubling until 64*T1
    assert any(isinstance(e, AckNotReceived) for e in pump.events) == (len(acked) < calls)


@pytest.mark.timeout(60)
def test_core_calls_sipp_uas_and_hangs_up(tmp_path: Path) -> None:
    pump = Pump()
    sipp_port = free_port()
    proc = start_sipp(tmp_path, ["-sn", "uas", "-m", "1"], sipp_port)
    peer = Address("udp", "127.0.0.1", sipp_port)
    state: dict[str, object] = {}
    try:
        _wait_for_udp_listener(sipp_port)
        h = Headers([("From", "<sip:alice@127.0.0.1>;tag=alice1"),
                     ("To", f"<sip:service@127.0.0.1:{sipp_port}>"),
                     ("Call-ID", "core-to-sipp-1"), ("CSeq", "1 INVITE"),
                     ("Contact", f"<sip:alice@127.0.0.1:{pump.port}>"),
                     ("Content-Type", "application/sdp")])
        invite = SipRequest("INVITE", f"sip:service@127.0.0.1:{sipp_port}", h, SDP)
        txn = pump.core.send_request(invite, peer, time.monotonic())
        pump.flush()

        def on_event(ev: Event) -> None:
            now = time.monotonic()
            if isinstance(ev, ResponseReceived) and ev.transaction is txn \
                    and ev.response.status == 200:
                dialog = Dialog.from_uac(txn.request, ev.response)
                pump.core.send_ack_2xx(dialog.create_ack(), peer, now)
                state["dialog"] = dialog
                state["acked_at"] = now
            elif isinstance(ev, ResponseReceived) and ev.transaction.method == "BYE":
                state["bye_status"] = ev.response.status
            elif isinstance(ev, TransactionTimeout):
                state["timeout"] = ev.timer

        def until() -> bool:
            dialog = state.get("dialog")
            acked = state.get("acked_at")
            if isinstance(dialog, Dialog) and isinstance(acked, float) \
                    and "bye" not in state and time.monotonic() - acked > 0.5:
                state["bye"] = pump.core.send_request(dialog.create_request("BYE"), peer,
                                                      time.monotonic())
            return "bye_status" in state or "timeout" in state

        pump.run(on_event, until, timeout=30)
        proc.wait(20)  # the uas leaves after its 4 s time-wait
    finally:
        stop(proc)
        pump.close()
    assert state.get("bye_status") == 200, state
    statuses = [e.response.status for e in pump.events
                if isinstance(e, ResponseReceived) and e.transaction is txn]
    assert statuses[-1] == 200 and 180 in statuses
    assert proc.returncode == 0
    stats = sipp_stats(tmp_path / "stats.csv")
    assert stats["SuccessfulCall(C)"] == "1"


def _wait_for_udp_listener(port: int, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(["ss", "-uln"], capture_output=True, text=True).stdout
        if f"127.0.0.1:{port} " in out:
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


REGISTER_UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="REGISTER with digest">
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@[remote_ip]>;tag=[pid]reg[call_number]
To: <sip:alice@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:alice@[local_ip]:[local_port]>
Expires: 300
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@[remote_ip]>;tag=[pid]reg[call_number]
To: <sip:alice@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:alice@[local_ip]:[local_port]>
[authentication username=alice password=PASSWORD]
Expires: 300
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("password", "accepted"), [("s3cret", True), ("wrong", False)])
def test_sipp_registers_with_digest_against_our_server(tmp_path: Path, password: str,
                                                       accepted: bool) -> None:
    # sipp 3.6.1 computes MD5 digests only: the server offers MD5 for it.
    server = DigestServer("lab.example", {"alice": "s3cret"}.get, algorithms=("MD5",))
    pump = Pump()
    results: list[str] = []

    def on_event(ev: Event) -> None:
        if not isinstance(ev, RequestReceived):
            return
        now = time.monotonic()
        if ev.request.method != "REGISTER":
            # sipp ends a failed call its own way (a BYE here): not part of the exchange.
            pump.core.respond(ev.transaction, 481, "Call/Transaction Does Not Exist", now)
            return
        result = server.verify(ev.request, now)
        results.append(result.reason or "ok")
        if result.ok:
            pump.core.respond(ev.transaction, 200, "OK", now, to_tag="reg")
        elif len(results) == 1 or result.stale:
            pump.core.send_response(ev.transaction, server.challenge_response(
                ev.request, now, stale=result.stale, to_tag="reg"), now)
        else:
            pump.core.respond(ev.transaction, 403, "Forbidden", now, to_tag="reg")

    scenario = tmp_path / "register.xml"
    scenario.write_text(REGISTER_UAC.replace("PASSWORD", password))
    proc = start_sipp(tmp_path, [f"127.0.0.1:{pump.port}", "-sf", str(scenario), "-m", "1"],
                      free_port())
    try:
        pump.run(on_event, until=lambda: proc.poll() is not None, timeout=40)
    finally:
        stop(proc)
        pump.close()
    assert results[0] == "no credentials for this realm"
    if accepted:
        assert results[1:] == ["ok"] and proc.returncode == 0
    else:
        assert results[1:] == ["unknown user or wrong password"] and proc.returncode != 0


VERIFYAUTH_UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="registrar that checks digest">
  <recv request="REGISTER"/>
  <send><![CDATA[
SIP/2.0 401 Unauthorized
[last_Via:]
[last_From:]
[last_To:];tag=[pid]reg
[last_Call-ID:]
[last_CSeq:]
WWW-Authenticate: Digest realm="sipp.lab", nonce="[pid]n[call_number]abcdef", qop="auth", algorithm=MD5
Content-Length: 0

]]></send>
  <recv request="REGISTER">
    <action>
      <verifyauth assign_to="authvalid" username="alice" password="s3cret"/>
    </action>
  </recv>
  <nop test="authvalid" next="goodauth"/>
  <send next="end"><![CDATA[
SIP/2.0 403 Forbidden
[last_Via:]
[last_From:]
[last_To:];tag=[pid]reg
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <label id="goodauth"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]reg
[last_Call-ID:]
[last_CSeq:]
[last_Contact:]
Content-Length: 0

]]></send>
  <label id="end"/>
  <timewait milliseconds="500"/>
</scenario>
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("password", "expected"), [("s3cret", 200), ("wrong", 403)])
def test_our_digest_client_registers_with_sipp_verifyauth(tmp_path: Path, password: str,
                                                          expected: int) -> None:
    scenario = tmp_path / "registrar.xml"
    scenario.write_text(VERIFYAUTH_UAS)
    sipp_port = free_port()
    proc = start_sipp(tmp_path, ["-sf", str(scenario), "-m", "1"], sipp_port)
    pump = Pump()
    peer = Address("udp", "127.0.0.1", sipp_port)
    client = DigestClient("alice", password)
    finals: list[int] = []
    try:
        _wait_for_udp_listener(sipp_port)
        h = Headers([("From", "<sip:alice@sipp.lab>;tag=me1"), ("To", "<sip:alice@sipp.lab>"),
                     ("Call-ID", "reg-to-sipp"), ("CSeq", "1 REGISTER"),
                     ("Contact", f"<sip:alice@127.0.0.1:{pump.port}>"), ("Expires", "300")])
        first = SipRequest("REGISTER", f"sip:127.0.0.1:{sipp_port}", h)
        pump.core.send_request(first, peer, time.monotonic())
        pump.flush()

        def on_event(ev: Event) -> None:
            if isinstance(ev, ResponseReceived) and ev.response.status >= 200:
                finals.append(ev.response.status)
                if ev.response.status == 401:
                    retry = client.authorize(ev.transaction.request, ev.response)
                    pump.core.send_request(retry, peer, time.monotonic())

        pump.run(on_event, until=lambda: len(finals) >= 2, timeout=20)
        proc.wait(10)
    finally:
        stop(proc)
        pump.close()
    assert finals == [401, expected]


class TcpPump:
    """A listening TCP socket feeding a SipCore: framing by Content-Length, responses on the
    connection the request came on (``conn_id``)."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.core = SipCore(local={"tcp": Address("tcp", "127.0.0.1", self.port)})
        self.conns: dict[int, tuple[socket.socket, StreamFramer, Address]] = {}
        self.events: list[Event] = []
        self.sent: list[tuple[bytes, Address]] = []

    def close(self) -> None:
        for conn, _, _ in self.conns.values():
            conn.close()
        self.listener.close()

    def run(self, on_event: Callable[[Event], None], until: Callable[[], bool],
            timeout: float) -> None:
        end = time.monotonic() + timeout
        while not until():
            if time.monotonic() > end:
                raise AssertionError("timed out")
            socks = [self.listener] + [c for c, _, _ in self.conns.values()]
            for sock in select.select(socks, [], [], 0.05)[0]:
                if sock is self.listener:
                    conn, (host, port) = self.listener.accept()
                    cid = conn.fileno()
                    self.conns[cid] = (conn, StreamFramer(), Address("tcp", host, port, cid))
                    continue
                cid = sock.fileno()
                _, framer, source = self.conns[cid]
                data = sock.recv(65536)
                if not data:
                    sock.close()
                    del self.conns[cid]
                    continue
                for msg in framer.feed(data):
                    if msg.strip():
                        self.core.receive(msg, source, time.monotonic())
            self.core.handle_timer(time.monotonic())
            while (ev := self.core.next_event()) is not None:
                self.events.append(ev)
                on_event(ev)
            for data, dest in self.core.datagrams_to_send(time.monotonic()):
                self.sent.append((data, dest))
                assert dest.conn_id in self.conns, "a response must reuse its connection"
                self.conns[dest.conn_id][0].sendall(data)


@pytest.mark.timeout(60)
def test_sipp_uac_calls_the_core_over_tcp(tmp_path: Path) -> None:
    pump = TcpPump()
    calls = 3
    proc = start_sipp(tmp_path, [f"127.0.0.1:{pump.port}", "-sn", "uac", "-t", "t1", "-m",
                                 str(calls), "-r", "3", "-d", "200"], free_port())
    try:
        pump.run(uas_tu(pump), until=lambda: proc.poll() is not None, timeout=40)
    finally:
        stop(proc)
        pump.close()
    stats = sipp_stats(tmp_path / "stats.csv")
    assert proc.returncode == 0, stats.get("FailedCall(C)")
    assert stats["SuccessfulCall(C)"] == str(calls)
    assert stats["Retransmissions(C)"] == "0"
    # On TCP nothing is ever sent twice: 100, 180, 200 per INVITE and 200 per BYE.
    assert len(pump.sent) == len({d for d, _ in pump.sent}) == calls * 4
    assert len([e for e in pump.events if isinstance(e, AckReceived)]) == calls


UAS_CANCELLED = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="ring, then take a CANCEL">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]uas[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:uas@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <recv request="CANCEL"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]uas[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <send><![CDATA[
SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]uas[call_number]
[last_Call-ID:]
CSeq: [cseq] INVITE
Content-Length: 0

]]></send>
  <recv request="ACK"/>
  <timewait milliseconds="300"/>
</scenario>
"""

UAC_CANCELS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="call, hear ringing, CANCEL">
  <send retrans="500"><![CDATA[
INVITE sip:bob@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]c[call_number]
To: <sip:bob@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <send retrans="500"><![CDATA[
CANCEL sip:bob@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]c[call_number]
To: <sip:bob@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
  <recv response="487"/>
  <send><![CDATA[
ACK sip:bob@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]c[call_number]
To: <sip:bob@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
</scenario>
"""


@pytest.mark.timeout(60)
def test_core_cancels_a_ringing_call_to_sipp(tmp_path: Path) -> None:
    scenario = tmp_path / "uas_cancelled.xml"
    scenario.write_text(UAS_CANCELLED)
    sipp_port = free_port()
    proc = start_sipp(tmp_path, ["-sf", str(scenario), "-m", "1"], sipp_port)
    pump = Pump()
    peer = Address("udp", "127.0.0.1", sipp_port)
    got: list[tuple[str, int]] = []
    try:
        _wait_for_udp_listener(sipp_port)
        h = Headers([("From", "<sip:alice@127.0.0.1>;tag=c1"),
                     ("To", f"<sip:bob@127.0.0.1:{sipp_port}>"), ("Call-ID", "cancel-1"),
                     ("CSeq", "1 INVITE"), ("Contact", f"<sip:alice@127.0.0.1:{pump.port}>")])
        invite = pump.core.send_request(SipRequest("INVITE", f"sip:bob@127.0.0.1:{sipp_port}",
                                                   h), peer, time.monotonic())
        pump.core.cancel(invite, time.monotonic())  # held back until the 180 (§9.1)
        pump.flush()

        def on_event(ev: Event) -> None:
            if isinstance(ev, ResponseReceived):
                got.append((ev.transaction.method, ev.response.status))

        pump.run(on_event, until=lambda: ("INVITE", 487) in got, timeout=20)
        pump.run(lambda ev: None, until=lambda: proc.poll() is not None, timeout=20)
    finally:
        stop(proc)
        pump.close()
    assert got == [("INVITE", 180), ("CANCEL", 200), ("INVITE", 487)]
    assert proc.returncode == 0  # sipp got our ACK for the 487
    log = (tmp_path / "msg.log").read_text(errors="replace")
    branches = {line.split("branch=")[1].split(";")[0].strip() for line in log.splitlines()
                if line.startswith("Via:") and "branch=" in line}
    assert branches == {invite.branch}  # INVITE, CANCEL and ACK share one branch


@pytest.mark.timeout(60)
def test_sipp_cancels_a_ringing_call_to_the_core(tmp_path: Path) -> None:
    scenario = tmp_path / "uac_cancels.xml"
    scenario.write_text(UAC_CANCELS)
    pump = Pump()
    cancels: list[CancelReceived] = []

    def on_event(ev: Event) -> None:
        now = time.monotonic()
        if isinstance(ev, RequestReceived) and ev.request.method == "INVITE":
            pump.core.respond(ev.transaction, 180, "Ringing", now)
        elif isinstance(ev, CancelReceived):
            cancels.append(ev)
            pump.core.respond(ev.invite_transaction, 487, "Request Terminated", now)

    proc = start_sipp(tmp_path, [f"127.0.0.1:{pump.port}", "-sf", str(scenario), "-m", "1"],
                      free_port())
    try:
        pump.run(on_event, until=lambda: proc.poll() is not None, timeout=30)
        # The ACK for the 487 confirms the transaction (no more 487 retransmissions).
        assert cancels and cancels[0].invite_transaction.state in (TxnState.CONFIRMED,
                                                                   TxnState.TERMINATED)
    finally:
        stop(proc)
        pump.close()
    assert proc.returncode == 0, (tmp_path / "err.log").read_text(errors="replace")[-1500:] \
        if (tmp_path / "err.log").exists() else proc.returncode
    assert len(cancels) == 1
