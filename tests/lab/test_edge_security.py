"""R-ACCT-5 through the running edge: stock sipp guessing a password from 127.0.0.2 is written
to the security log, locked out, and the fail2ban filter shipped in docs/ finds it; the
user's own phone and an emergency call from the locked-out address still get through."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.rtp_phone import RtpPhone
from lab.sip_phone import SipPhone

from softphone.sip.message import Headers, SipRequest, SipResponse

pytestmark = pytest.mark.lab

RTP = (21800, 21999)
FILTER = Path(__file__).parents[2] / "docs" / "fail2ban" / "softphone-edge.conf"


def edge_config(path: Path, psap_port: int) -> Path:
    path.write_text(f"""
[security]
max_auth_failures = 3
window_s = 60
lockout_s = 600

[emergency]
route = "sip:sos@127.0.0.1:{psap_port}"

[[users]]
ext = "1001"
password = "demo-1001"
emergency = true
location = {{ country = "FR", city = "Paris", street = "Rue de Rivoli", postcode = "75001" }}

[[users]]
ext = "1002"
password = "demo-1002"
""")
    return path


def request(phone: SipPhone, method: str, user: str) -> SipResponse:
    """A REGISTER of ``user`` (or an OPTIONS) from ``phone``, answering one 401."""
    aor = f"sip:{user}@127.0.0.1"
    h = Headers([("From", f"<{aor}>;tag={uuid.uuid4().hex[:8]}"), ("To", f"<{aor}>"),
                 ("Call-ID", uuid.uuid4().hex), ("CSeq", f"1 {method}"),
                 ("Contact", f"<sip:{user}@{phone.host}:{phone.port}>"), ("Expires", "300"),
                 ("Max-Forwards", "70")])
    req = SipRequest(method, "sip:127.0.0.1", h)
    phone._via(req)
    resp = phone.final(req)
    if resp.status == 401:
        req = phone.digest.authorize(req, resp)
        phone._via(req)
        resp = phone.final(req)
    return resp


@pytest.mark.timeout(120)
def test_password_guessing_is_logged_locked_out_and_banned_but_emergency_gets_through(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    edge_port, psap_port, *guess_ports = lab.take_ports(5)
    cfg = edge_config(tmp_path / "edge.toml", psap_port)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=["--config", str(cfg)]).start()
    target = f"127.0.0.1:{edge_port}"
    own = SipPhone(edge_port, "1002", "demo-1002")
    attacker = SipPhone(edge_port, "1002", "demo-1002", host="127.0.0.2")
    caller = SipPhone(edge_port, "1001", "demo-1001", host="127.0.0.2")
    stranger = SipPhone(edge_port, "1002", "demo-1002", host="127.0.0.3")
    guesser = SipPhone(edge_port, "1002", "guess-2", host="127.0.0.2")
    psap_media, caller_media = RtpPhone(440, seconds=3), RtpPhone(1000, seconds=3)
    try:
        assert request(own, "REGISTER", "1002").status == 200
        # three wrong passwords from 127.0.0.2: two REGISTERs by stock sipp, one INVITE
        for i, port in enumerate(guess_ports[:2]):
            guess = sipp.start(f"guess{i}", [
                target, "-sf", str(lab.scenarios / "edge_register.xml"), "-i", "127.0.0.2",
                "-p", str(port), "-au", "1002", "-ap", f"guess-{i}", "-set", "user", "1002",
                "-set", "cport", str(port), "-m", "1", "-timeout_error"], wall=20)
            assert guess.wait(20) != 0
        assert guesser.dial("sip:1001@127.0.0.1", 0).status == 407
        # 127.0.0.2 is locked out, even with the right password, for REGISTER and OPTIONS
        locked = request(attacker, "REGISTER", "1002")
        assert (locked.status, locked.reason) == (403, "Forbidden: source locked out")
        assert request(attacker, "OPTIONS", "1002").status == 403
        # ... but not for an emergency call (which reaches the gateway and connects)
        psap = sipp.start("psap", ["-sf", str(lab.scenarios / "emergency_psap_uas.xml"),
                                   "-i", "127.0.0.1", "-p", str(psap_port),
                                   "-set", "mport", str(psap_media.port), "-m", "1"], wall=60)
        lab.wait_udp_listening(psap_port)
        sos = caller.dial("sip:112@127.0.0.1", 1.0, media_port=caller_media.port)
        assert sos.status == 200, (sos, edge.log())
        assert psap.wait(30) == 0, psap.errors()
        # the user is locked out too, except from the address it registered from before
        assert request(own, "REGISTER", "1002").status == 200
        other = request(stranger, "REGISTER", "1002")
        assert (other.status, other.reason) == (403, "Forbidden: user locked out")
    finally:
        for p in (own, attacker, caller, stranger, guesser):
            p.close()
        psap_media.close()
        caller_media.close()
        edge.stop()
    lines = (tmp_path / "edge" / "security.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    failures = [e for e in entries if e["event"] == "auth-failure"]
    assert [(e["src"], e["sport"], e["user"], e["method"], e["reason"]) for e in failures] == [
        *(("127.0.0.2", port, "1002", "REGISTER", "unknown user or wrong password")
          for port in guess_ports[:2]),
        ("127.0.0.2", guesser.port, "1002", "INVITE", "unknown user or wrong password")], entries
    locks = [e for e in entries if e["event"] == "lockout"]
    assert [e["reason"].split(":")[0] for e in locks] == ["source 127.0.0.2", "user 1002"]
    assert len(entries) == 5, entries  # the lock-out refusals and the successes: no line
    # the fail2ban filter reads these lines and bans 127.0.0.2, three times
    filt = re.search(r"^failregex = (.*)$", FILTER.read_text(), re.M)
    assert filt is not None
    regex = re.compile(filt.group(1).strip().replace(
        "<HOST>", r"(?:::f{4,6}:)?(?P<host>[\w\-.^_]*\w)"))
    hosts = [m.group("host") for line in lines
             if (m := regex.search(re.sub(r"\d{4}-[\d\-T:.]+Z", "", line, count=1)))]
    assert hosts == ["127.0.0.2"] * 3
    if shutil.which("fail2ban-regex"):
        out = subprocess.run(["fail2ban-regex", str(tmp_path / "edge" / "security.jsonl"),
                              str(FILTER)], capture_output=True, text=True, timeout=60).stdout
        assert re.search(r"Lines: 5 lines, 0 ignored, 3 matched, 2 missed", out), out
