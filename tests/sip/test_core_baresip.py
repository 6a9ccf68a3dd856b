"""The core as registrar and callee for baresip (libre's SIP stack), over loopback UDP.

baresip registers with digest (our DigestServer verifies it), dials us, we answer with 180
and 200 (PCMU), it ACKs, and we hang up with a BYE built from the UAS side of the dialog.

Found on the way: baresip 1.0's libre gives up ("Register: Function not implemented") on a
401 that offers SHA-256 next to MD5, in either order, instead of answering the challenge it
can compute; so the registrar narrows the offer to MD5 for it (``algorithms=("MD5",)``).
"""

from __future__ import annotations

import select
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from lab.baresip_peer import write_config
from lab.netutil import free_port

from softphone.sip.auth import DigestServer, parse_auth_params
from softphone.sip.core import Address, SipCore
from softphone.sip.dialog import Dialog
from softphone.sip.events import AckReceived, RequestReceived, ResponseReceived

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed"),
]

SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


@pytest.mark.timeout(60)
def test_baresip_registers_with_digest_calls_us_and_takes_our_bye(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    core = SipCore(local={"udp": Address("udp", "127.0.0.1", port)})
    registrar = DigestServer("127.0.0.1", {"alice": "s3cret"}.get, algorithms=("SHA-256", "MD5"))
    baresip_port = free_port()
    conf = tmp_path / "baresip"
    write_config(conf, sip_port=baresip_port,
                 account=f"<sip:alice@127.0.0.1:{port}>;auth_pass=s3cret;regint=60",
                 rtp_ports=(34400, 34499), player="core", codecs=("g711",))
    log = (tmp_path / "baresip.log").open("wb")
    proc = subprocess.Popen(
        ["timeout", "-k", "3", "30", "baresip", "-f", str(conf), "-e",
         f"/dial sip:bob@127.0.0.1:{port}", "-t", "20"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    verified: list[str] = []
    algorithms: list[str] = []
    acked: list[str] = []
    bye_status: list[int] = []
    dialog: Dialog | None = None
    answered_at = 0.0
    bye_sent = False
    try:
        end = time.monotonic() + 20
        while not (bye_status and verified) and time.monotonic() < end \
                and proc.poll() is None:
            if select.select([sock], [], [], 0.05)[0]:
                data, (host, sport) = sock.recvfrom(65535)
                core.receive(data, Address("udp", host, sport), time.monotonic())
            core.handle_timer(time.monotonic())
            while (ev := core.next_event()) is not None:
                now = time.monotonic()
                if isinstance(ev, RequestReceived) and ev.request.method == "REGISTER":
                    req = ev.request
                    result = registrar.verify(req, now)
                    if result.ok:
                        verified.append(result.user or "")
                        algorithms.append(parse_auth_params(
                            req.headers.get("authorization") or "")[1].get("algorithm", "MD5"))
                        contact = req.headers.get("contact") or ""
                        core.respond(ev.transaction, 200, "OK", now,
                                     extra=[("Contact", f"{contact};expires=60")])
                    else:
                        core.send_response(ev.transaction, registrar.challenge_response(
                            req, now, stale=result.stale, to_tag=ev.transaction.local_tag,
                            algorithms=("MD5",)), now)
                elif isinstance(ev, RequestReceived) and ev.request.method == "INVITE":
                    core.respond(ev.transaction, 180, "Ringing", now)
                    ok = core.respond(ev.transaction, 200, "OK", now, body=SDP,
                                      content_type="application/sdp",
                                      extra=[("Contact", f"<sip:bob@127.0.0.1:{port}>")])
                    dialog = Dialog.from_uas(ev.request, ok)
                    answered_at = now
                elif isinstance(ev, RequestReceived):
                    core.respond(ev.transaction, 200, "OK", now)
                elif isinstance(ev, AckReceived):
                    acked.append(ev.request.call_id)
                elif isinstance(ev, ResponseReceived) and ev.transaction.method == "BYE" \
                        and ev.response.status >= 200:
                    bye_status.append(ev.response.status)
            if dialog is not None and acked and not bye_sent \
                    and time.monotonic() - answered_at > 1.0:
                bye = dialog.create_request("BYE")
                target = Address("udp", "127.0.0.1", baresip_port)
                core.send_request(bye, target, time.monotonic())
                bye_sent = True
            for data, dest in core.datagrams_to_send(time.monotonic()):
                sock.sendto(data, (dest.host, dest.port))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        sock.close()
    assert verified and verified[0] == "alice" and algorithms[0] == "MD5"
    assert dialog is not None and acked == [dialog.call_id]
    assert bye_status == [200], (tmp_path / "baresip.log").read_text(errors="replace")[-1500:]
    assert "terminated" in (tmp_path / "baresip.log").read_text(errors="replace")
