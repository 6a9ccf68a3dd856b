"""The small signalling defences, on the wire of a running edge.

- a Call-ID or a tag with a control character gets 400 (and nothing else happens);
- the name the callee sees is the caller's name in the edge's user table, not the one its
  phone made up ("Your Bank");
- a phone's User-Agent with U+2028, U+0085 and U+2029 lands in the audit log escaped:
  every line of audit.jsonl splits as one JSON object;
- responses that match no transaction count against the sender's flood budget: a flood of
  them from 127.0.0.4 is mostly dropped before parsing, and then so are its requests.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import call, register

from softphone.sip.auth import DigestClient
from softphone.sip.message import SipRequest, SipResponse, parse_message

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(not Path("/usr/bin/sipp").exists(), reason="sipp missing")]

RTP = (24400, 24499)
# the line breakers a header may still carry (the ASCII controls are refused at parse)
NASTY_UA = "Asterisk\u2028{\"forged\":true}\x85\u2029end"


class Udp:
    def __init__(self, source: str, edge_port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(2.0)
        self.source, self.port = source, self.sock.getsockname()[1]
        self.edge = ("127.0.0.1", edge_port)

    def via(self) -> str:
        return f"SIP/2.0/UDP {self.source}:{self.port};branch=z9hG4bK{secrets.token_hex(6)}"

    def answer(self, data: bytes) -> SipResponse | None:
        self.sock.sendto(data, self.edge)
        try:
            msg = parse_message(self.sock.recvfrom(65535)[0])
        except TimeoutError:
            return None
        assert isinstance(msg, SipResponse)
        return msg

    def status_line(self, data: bytes) -> str:
        """The first line of the answer (the 400 echoes the bad Call-ID: not parsed here)."""
        self.sock.sendto(data, self.edge)
        return self.sock.recvfrom(65535)[0].split(b"\r\n", 1)[0].decode()

    def close(self) -> None:
        self.sock.close()


def options(u: Udp, call_id: str, from_tag: str = "ft") -> bytes:
    return (f"OPTIONS sip:edge@127.0.0.1:{u.edge[1]} SIP/2.0\r\nVia: {u.via()}\r\n"
            f"From: <sip:x@{u.source}>;tag={from_tag}\r\nTo: <sip:edge@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def register_with_agent(u: Udp, user: str, agent: str) -> int:
    text = (f"REGISTER sip:127.0.0.1:{u.edge[1]} SIP/2.0\r\nVia: {u.via()}\r\n"
            f"From: <sip:{user}@127.0.0.1>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{user}@127.0.0.1>\r\nCall-ID: {secrets.token_hex(8)}\r\nCSeq: 1 REGISTER\r\n"
            f"Contact: <sip:{user}@{u.source}:{u.port}>\r\nExpires: 60\r\n"
            f"User-Agent: {agent}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    first = parse_message(text.encode())
    assert isinstance(first, SipRequest)
    challenge = u.answer(first.to_bytes())
    assert challenge is not None and challenge.status == 401, challenge
    retry = DigestClient(user, f"demo-{user}").authorize(first, challenge)
    retry.headers.set("User-Agent", agent)
    retry.headers.insert_first("Via", u.via())
    final = u.answer(retry.to_bytes())
    assert final is not None
    return final.status


@pytest.mark.timeout(120)
def test_signalling_hygiene(tmp_path: Path, lab: Any, sipp: Any) -> None:
    edge_port, uas_port, reg_port, uac_port = lab.take_ports(4)
    target = f"127.0.0.1:{edge_port}"
    # the policy refuses (and audits, with its User-Agent) a registration from a PBX
    policy = files("softphone.configs").joinpath("policy.toml").read_text()
    assert 'pbx_action = "warn"' in policy
    (tmp_path / "policy.toml").write_text(policy.replace('pbx_action = "warn"',
                                                         'pbx_action = "reject"'))
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP,
                       extra=["--policy", str(tmp_path / "policy.toml")]).start()
    stranger, phone, flooder = (Udp("127.0.0.2", edge_port), Udp("127.0.0.3", edge_port),
                                Udp("127.0.0.4", edge_port))
    try:
        # -- control characters in a Call-ID or a tag: 400 naming the fault
        assert stranger.answer(options(stranger, "ok-call-id")).status == 200  # type: ignore[union-attr]
        for call_id, tag, reason in (("bad\x1b[2Jid", "ft", "Bad Call-ID: control character"),
                                     ("id-\u2028-x", "ft", "Bad Call-ID: control character"),
                                     ("ok-id-2", "t\x00g", "Bad From: control character in the tag"),
                                     ("ok-id-3", "t\x85g", "Bad From: control character in the tag")):
            line = stranger.status_line(options(stranger, call_id, tag))
            assert line == f"SIP/2.0 400 {reason}", line

        # -- the callee sees the name of the edge's user table, not the phone's claim
        uas = sipp.start("uas", ["-sf", str(lab.scenarios / "edge_uas_answer.xml"), "-i",
                                 "127.0.0.1", "-p", str(uas_port), "-m", "1"],
                         wall=30, trace_msg=True)
        lab.wait_udp_listening(uas_port)
        register(sipp, lab, target, "1002", uas_port, reg_port)
        caller = call(sipp, lab, "uac", "display_uac.xml", target, "1001", "1002", uac_port,
                      wall=30)
        assert caller.wait(30) == 0, caller.errors() + edge.log()
        assert uas.wait(10) == 0, uas.errors()
        invite = next(m for m in uas.messages().split("\n\n") if "INVITE sip:" in m)
        from_line = re.search(r"^From:.*$", uas.messages(), flags=re.M)
        assert from_line is not None and from_line.group(0).startswith('From: "Demo 1001" <sip:1001@'), \
            (from_line, invite)
        assert "Your Bank" not in uas.messages()

        # -- a User-Agent full of line breakers: one JSON object per line of audit.jsonl
        assert register_with_agent(phone, "1003", NASTY_UA) == 403
        audit = (edge.data_dir / "audit.jsonl").read_text(encoding="utf-8")
        lines = audit.splitlines()
        assert len(lines) == audit.count("\n"), "a line breaker other than \\n in the log"
        records = [json.loads(line) for line in lines]
        agents = [r["details"].get("user_agent") for r in records if "details" in r]
        assert NASTY_UA in agents, records[-3:]

        # -- stray responses from 127.0.0.4 are charged: most never reach the parser
        before = edge.status()
        sent = 3000
        for n in range(sent):
            flooder.sock.sendto((f"SIP/2.0 200 OK\r\nVia: {flooder.via()}\r\n"
                                 f"From: <sip:x@127.0.0.4>;tag=a\r\nTo: <sip:y@127.0.0.1>;tag=b\r\n"
                                 f"Call-ID: stray{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
                                 ).encode(), flooder.edge)
            if n % 30 == 29:
                time.sleep(0.01)  # a scanner's pace: the kernel's queue must not drop them
        blocked = flooder.answer(options(flooder, "after-the-flood"))
        time.sleep(1.5)  # status.json every second
        after = edge.status()
    finally:
        for u in (stranger, phone, flooder):
            u.close()
        edge.stop()
    reached = after["sip"].get("received", 0) - before["sip"].get("received", 0)
    assert after["rate_limited"] - before["rate_limited"] >= sent // 2, (before, after)
    assert reached < sent // 2, (before, after)
    assert blocked is None, "the flooder's own request was answered during its penalty"
