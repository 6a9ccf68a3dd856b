"""Nobody can list the edge's users (Asterisk's ``alwaysauthreject``), through the running edge.

sipvicious' svwar, the scanner attackers use, runs over the extensions 1000-1010 with
REGISTER and with INVITE (it is told to bind 127.0.0.2, but sends from where its socket ends
up: the answers are the same from any address), with and without ``--force`` (which scans even
when an unknown extension is challenged): it must find none of 1001-1004. Then, on the wire:
an unknown user and a known one with a wrong password get the same answer, for REGISTER (401)
and for INVITE (407), down to the header names and the reason phrase.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess

from softphone.sip.auth import DigestClient
from softphone.sip.message import SipRequest, SipResponse, parse_message

pytestmark = pytest.mark.lab

RTP = (24100, 24199)
ATTACKER = "127.0.0.2"


def svwar() -> str:
    """svwar from PyPI (``sipvicious_svwar``, in this venv) or Debian's package."""
    for name in ("sipvicious_svwar", "svwar"):
        here = Path(sys.executable).parent / name
        if here.exists():
            return str(here)
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("sipvicious is not installed (pip install sipvicious, or apt-get install "
                "sipvicious)")


def scan(edge_port: int, method: str, *, force: bool) -> str:
    argv = [svwar(), "-m", method, "-e", "1000-1010", "-b", ATTACKER, "-x", ATTACKER,
            "-p", str(edge_port), "-t", "0.05", *(["--force"] if force else []), "127.0.0.1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def found(output: str) -> list[str]:
    """The extensions svwar reports (its table's rows and its log lines)."""
    rows = re.findall(r"^\|\s*(\d+)\s*\|", output, flags=re.M)
    logged = re.findall(r"extension '(\d+)' (?:exists|probably exists)", output)
    return sorted(set(rows) | set(logged))


class Phone:
    """Raw SIP over UDP from 127.0.0.2: a request, then the answer to its digest retry."""

    def __init__(self, edge_port: int) -> None:
        self.edge_port = edge_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ATTACKER, 0))
        self.sock.settimeout(3.0)
        self.port = self.sock.getsockname()[1]

    def request(self, method: str, user: str) -> SipRequest:
        target = "127.0.0.1" if method == "REGISTER" else f"1002@127.0.0.1:{self.edge_port}"
        body = ("v=0\r\no=x 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
                "m=audio 40000 RTP/AVP 8\r\n") if method == "INVITE" else ""
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        to = user if method == "REGISTER" else "1002"
        text = (f"{method} sip:{target} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {ATTACKER}:{self.port};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
                f"From: <sip:{user}@127.0.0.1>;tag={secrets.token_hex(4)}\r\n"
                f"To: <sip:{to}@127.0.0.1>\r\nCall-ID: {secrets.token_hex(8)}\r\n"
                f"CSeq: 1 {method}\r\nContact: <sip:{user}@{ATTACKER}:{self.port}>\r\n"
                f"Max-Forwards: 70\r\n{ctype}Content-Length: {len(body)}\r\n\r\n{body}")
        msg = parse_message(text.encode())
        assert isinstance(msg, SipRequest)
        return msg

    def send(self, req: SipRequest) -> SipResponse:
        if req.headers.get("via") is None:
            req.headers.insert_first("Via", f"SIP/2.0/UDP {ATTACKER}:{self.port};branch="
                                            f"z9hG4bK{secrets.token_hex(6)}")
        self.sock.sendto(req.to_bytes(), ("127.0.0.1", self.edge_port))
        end = time.monotonic() + 5
        while time.monotonic() < end:
            resp = parse_message(self.sock.recvfrom(65535)[0])
            if isinstance(resp, SipResponse) and resp.status >= 200 \
                    and resp.headers.get("cseq") == req.headers.get("cseq") \
                    and resp.call_id == req.call_id:
                return resp
        raise AssertionError(f"no answer to {req.method}")

    def try_password(self, method: str, user: str, password: str) -> tuple[SipResponse, ...]:
        """The challenge, then the answer to credentials ``user``/``password``."""
        first = self.request(method, user)
        challenge = self.send(first)
        retry = DigestClient(user, password).authorize(first, challenge)
        return challenge, self.send(retry)

    def close(self) -> None:
        self.sock.close()


def shape(resp: SipResponse) -> tuple[int, str, list[str]]:
    """What an answer says, without what is random in it (nonce, tags, branch)."""
    names = sorted({n.lower() for n, _ in resp.headers} - {"content-length"})
    return resp.status, resp.reason, names


@pytest.mark.timeout(240)
def test_no_extension_can_be_enumerated(tmp_path: Path, lab: Any) -> None:
    tool = svwar()
    (edge_port,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP).start()
    phone = Phone(edge_port)
    try:
        outputs = {(m, f): scan(edge_port, m, force=f)
                   for m in ("REGISTER", "INVITE") for f in (False, True)}
        for key, out in outputs.items():
            assert found(out) == [], (tool, key, out)
            assert "Traceback" not in out, out
        # svwar did talk to the edge: without --force it gives up on the first challenge
        assert "authentication request for an unknown extension" in \
            outputs[("REGISTER", False)], outputs
        for method in ("REGISTER", "INVITE"):
            unknown = phone.try_password(method, "1009", "demo-1009")
            wrong = phone.try_password(method, "1001", "not-the-password")
            assert [shape(r) for r in unknown] == [shape(r) for r in wrong], (unknown, wrong)
            assert unknown[0].status == (401 if method == "REGISTER" else 407)
            assert unknown[1].status == unknown[0].status
        assert edge.status().get("registrations") == 0
        assert edge.status().get("live_calls") == 0
    finally:
        phone.close()
        edge.stop()

