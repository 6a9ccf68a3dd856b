"""Two real sipp UACs fire an INVITE for the same user at the same instant: exactly one gets
200, the other 486/403, on the wire.

The guard sits behind a deliberately hostile responder: a ``ThreadingUDPServer`` that handles
every datagram in its own thread and holds each round's first INVITE until the second one has
arrived too, then lets both into the guard at once, with the interpreter switching threads about
every microsecond; so the two INVITEs really race inside the guard (the edge, on asyncio, would
serialise them anyway). Without that the two sipp processes, started a few milliseconds apart,
were decided one after the other and the test passed with the guard's lock removed; now it fails
then within a few rounds. The responder is only test scaffolding: request line,
Via/From/To/Call-ID/CSeq echoed, retransmitted INVITEs answered from memory, no transactions.
"""

from __future__ import annotations

import re
import shutil
import socketserver
import subprocess
import threading
from pathlib import Path

import pytest
from lab.netutil import free_port
from softphone.policy import (
    Account,
    Action,
    CallAttempt,
    DeviceClass,
    Direction,
    PolicyGuard,
    User,
)

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")]

T0 = 1_768_989_600.0
SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="invite-race">
  <send retrans="500">
    <![CDATA[
      INVITE sip:bob@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:alice@[local_ip]:[local_port]>;tag=[pid]race[call_number]
      To: <sip:bob@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:alice@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="486" optional="true" next="refused"/>
  <recv response="403" optional="true" next="refused"/>
  <recv response="200"/>
  <send>
    <![CDATA[
      ACK sip:bob@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:alice@[local_ip]:[local_port]>;tag=[pid]race[call_number]
      To: <sip:bob@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="300"/>
  <send retrans="500">
    <![CDATA[
      BYE sip:bob@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:alice@[local_ip]:[local_port]>;tag=[pid]race[call_number]
      To: <sip:bob@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" next="end"/>
  <label id="refused"/>
  <send>
    <![CDATA[
      ACK sip:bob@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:alice@[local_ip]:[local_port]>;tag=[pid]race[call_number]
      To: <sip:bob@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
</scenario>
"""


def header(msg: str, name: str) -> str:
    m = re.search(rf"^{name}:\s*(.*?)\r?$", msg, re.M | re.I)
    return m.group(1) if m else ""


class Responder(socketserver.ThreadingUDPServer):
    daemon_threads = True

    def __init__(self, guard: PolicyGuard, user: User) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.guard = guard
        self.user = user
        self.lock = threading.Lock()
        self.decisions: list[tuple[str, Action, int | None]] = []
        # both INVITEs of a round wait here, then enter the guard together
        self.gate = threading.Barrier(2, timeout=10)
        self.replies: dict[str, bytes | None] = {}  # INVITE call id -> its reply, once sent
        self.errors: list[str] = []


class _Handler(socketserver.DatagramRequestHandler):
    server: Responder

    def handle(self) -> None:
        msg = self.rfile.read().decode("utf-8", "replace")
        method = msg.split(" ", 1)[0]
        call_id = header(msg, "Call-ID")
        if method == "INVITE":
            with self.server.lock:
                retransmission = call_id in self.server.replies
                cached = self.server.replies.setdefault(call_id, None)
            if retransmission:
                if cached is not None:
                    self.wfile.write(cached)
                return  # still being decided by the first copy's thread
            try:
                self.server.gate.wait()
            except threading.BrokenBarrierError:
                with self.server.lock:
                    self.server.errors.append(f"{call_id}: no second INVITE within 10 s")
                return
            d = self.server.guard.on_call_attempt(CallAttempt(
                call_id, self.server.user, f"sipp-{self.client_address[1]}", DeviceClass.SIP,
                Direction.OUTBOUND, "0145678901", "+33187654321", T0))
            with self.server.lock:
                self.server.decisions.append((call_id, d.action, d.sip_status))
            status = (200, "OK") if d.allowed else (d.sip_status or 403, d.reason_phrase or "")
        elif method == "BYE":
            self.server.guard.on_call_end(call_id, T0 + 1)
            status = (200, "OK")
        else:
            return  # ACK
        to = header(msg, "To")
        if ";tag=" not in to:
            to += f";tag=srv{abs(hash(call_id)) % 100000}"
        reply = (f"SIP/2.0 {status[0]} {status[1]}\r\n"
                 f"Via: {header(msg, 'Via')}\r\nFrom: {header(msg, 'From')}\r\nTo: {to}\r\n"
                 f"Call-ID: {call_id}\r\nCSeq: {header(msg, 'CSeq')}\r\n"
                 f"Contact: <sip:bob@127.0.0.1:{self.server.server_address[1]}>\r\n"
                 f"Content-Length: 0\r\n\r\n").encode()
        if method == "INVITE":
            with self.server.lock:
                self.server.replies[call_id] = reply
        self.wfile.write(reply)


@pytest.mark.timeout(120)
def test_two_sipp_invites_at_once_exactly_one_proceeds(config, tmp_path: Path,
                                                      thread_switch_every_microsecond) -> None:
    scenario = tmp_path / "race.xml"
    scenario.write_text(SCENARIO)
    guard = PolicyGuard(config)
    user = User("alice", Account("acct-1", "FR"))
    server = Responder(guard, user)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    procs: list[subprocess.Popen[str]] = []
    try:
        for rnd in range(16):
            server.gate.reset()
            traces = [tmp_path / f"r{rnd}-{n}.log" for n in range(2)]
            cmds = [["sipp", f"127.0.0.1:{server.server_address[1]}", "-sf", str(scenario),
                     "-i", "127.0.0.1", "-p", str(free_port()), "-m", "1", "-nostdin",
                     "-timeout", "15", "-timeout_error", "-trace_msg", "-message_file",
                     str(trace)] for trace in traces]
            procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True, cwd=tmp_path) for c in cmds]
            for p in procs:
                _, err = p.communicate(timeout=30)
                assert p.returncode == 0, err
            with server.lock:
                mine = server.decisions[-2:]
                assert not server.errors, server.errors
            assert sorted(a.value for _, a, _ in mine) == ["allow", "reject"], (rnd, mine)
            wire = [t.read_text() for t in traces]
            got_200 = sum("SIP/2.0 200 OK" in w and "CSeq: 1 INVITE" in w for w in wire)
            refused = sum(bool(re.search(r"SIP/2\.0 (486|403) ", w)) for w in wire)
            assert (got_200, refused) == (1, 1), wire
            assert guard.held("alice") == 0  # the winner's BYE released it
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        server.shutdown()
        server.server_close()
        serving.join(5)
