"""Our digest client against Kamailio's auth module (an independent implementation).

Kamailio challenges with SHA-256 and qop=auth and checks nonce counts (``nonce_count``):
the first REGISTER is answered 401, the retry 200, and a refresh signed from the cached
challenge with nc=00000002 is accepted without a new challenge. A wrong password is refused.
"""

from __future__ import annotations

import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab.kamailio import KAMAILIO, MODULES, header
from lab.netutil import free_port

from softphone.sip.auth import DigestClient, parse_auth_params
from softphone.sip.core import Address, SipCore
from softphone.sip.events import ResponseReceived
from softphone.sip.message import Headers, SipRequest, SipResponse

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(not Path(KAMAILIO).exists() or not (MODULES / "auth.so").exists(),
                       reason="kamailio with the auth module not installed"),
]

CONFIG = header(
    ("pv", "usrloc", "registrar", "auth", "xlog", "textops", "siputils"), children=1, tcp_children=None) + """\
modparam("usrloc", "db_mode", 0)
modparam("auth", "secret", "labsecret0123456789")
modparam("auth", "algorithm", "SHA-256")
modparam("auth", "nonce_count", 1)
request_route {{
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "s3cret", "0")) {{
            www_challenge("$td", "1");
            exit;
        }}
        save("location");
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Address]:
    port = free_port()
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(CONFIG.format(port=port, modules=MODULES))
    log = (tmp_path / "kamailio.log").open("wb")
    proc = subprocess.Popen(
        ["timeout", "-k", "3", "60", KAMAILIO, "-f", str(cfg), "-DD", "-E", "-Y", str(tmp_path),
         "-P", str(tmp_path / "kamailio.pid"), "-w", str(tmp_path), "-m", "32", "-M", "8"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 10
        while f"127.0.0.1:{port} " not in subprocess.run(
                ["ss", "-uln"], capture_output=True, text=True).stdout:
            if proc.poll() is not None or time.monotonic() > end:
                raise AssertionError((tmp_path / "kamailio.log").read_text()[-2000:])
            time.sleep(0.05)
        yield Address("udp", "127.0.0.1", port)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def exchange(core: SipCore, sock: socket.socket, request: SipRequest, dest: Address,
             timeout: float = 5.0) -> SipResponse:
    """Send one request through the core and pump until its final response."""
    txn = core.send_request(request, dest, time.monotonic())
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for data, to in core.datagrams_to_send(time.monotonic()):
            sock.sendto(data, (to.host, to.port))
        if select.select([sock], [], [], 0.05)[0]:
            data, (host, port) = sock.recvfrom(65535)
            core.receive(data, Address("udp", host, port), time.monotonic())
        core.handle_timer(time.monotonic())
        while (ev := core.next_event()) is not None:
            if isinstance(ev, ResponseReceived) and ev.transaction is txn \
                    and ev.response.status >= 200:
                return ev.response
    raise AssertionError("no final response")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("password", "final"), [("s3cret", 200), ("wrong", 401)])
def test_register_with_kamailio_sha256_digest(kamailio: Address, password: str,
                                              final: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    local = Address("udp", "127.0.0.1", sock.getsockname()[1])
    core = SipCore(local={"udp": local})
    client = DigestClient("alice", password)
    try:
        h = Headers([("From", f"<sip:alice@127.0.0.1:{kamailio.port}>;tag=k1"),
                     ("To", f"<sip:alice@127.0.0.1:{kamailio.port}>"), ("Call-ID", "kam-reg-1"),
                     ("CSeq", "1 REGISTER"), ("Contact", f"<sip:alice@127.0.0.1:{local.port}>"),
                     ("Expires", "60")])
        first = SipRequest("REGISTER", f"sip:127.0.0.1:{kamailio.port}", h)
        challenge = exchange(core, sock, first, kamailio)
        assert challenge.status == 401
        offered = parse_auth_params(challenge.headers.get("www-authenticate") or "")[1]
        assert offered["algorithm"] == "SHA-256" and offered["qop"] == "auth"
        retry = client.authorize(first, challenge)
        answer = exchange(core, sock, retry, kamailio)
        assert answer.status == final
        if final != 200:
            return
        # A refresh signed from the cached challenge: nc=2 on the same nonce, accepted.
        refresh = SipRequest("REGISTER", retry.uri, retry.headers.copy())
        refresh.headers.remove("authorization")
        refresh.headers.set("CSeq", f"{retry.cseq.number + 1} REGISTER")
        assert client.sign(refresh)
        assert parse_auth_params(refresh.headers.get("authorization") or "")[1]["nc"] == \
            "00000002"
        assert exchange(core, sock, refresh, kamailio).status == 200
    finally:
        sock.close()
