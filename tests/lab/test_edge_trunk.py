"""The edge's upstream trunk against sipp standing for the provider, checked on the wire.

Each local user registers upstream with its own account (digest verified by sipp's
``verifyauth`` with that account's password, refreshed before a short Expires); 1001 dialling
a national number reaches the provider's UAS as 1001's account, answering the 407 with 1001's
credentials; the provider calling 1002's DID rings the sipp phone registered as 1002.

Lab convention: the upstream password of account A is ``up-A`` (the provider scenarios
compute it the same way), so a request signed with another user's password fails.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.rtp_capture import UdpCapture
from lab.sipp_media import media_ports, write_alaw
from softphone.native.g711 import alaw_decode

from softphone.media.tone import tone_power_ratio

pytestmark = pytest.mark.lab

RTP = (21000, 21999)  # inside the product range, clear of the UA tests that start at 20000
REALM = "provider.lab"
ACCOUNTS = {"1001": ("33100001001", "+33123450001"), "1002": ("33100001002", "+33123450002")}
NUMBER = "+33123456789"


def write_config(path: Path, *, expires: int = 3600, t1_ms: int = 500) -> Path:
    """Three users: 1001 and 1002 with their own upstream accounts and DIDs, 1003 without."""
    lines = [f"[sip]\nt1_ms = {t1_ms}\n", f"[trunk]\nexpires = {expires}\n"]
    for ext in ("1001", "1002", "1003"):
        lines.append(f'[[users]]\next = "{ext}"\npassword = "demo-{ext}"\n')
        if ext in ACCOUNTS:
            acct, did = ACCOUNTS[ext]
            lines.append(f'did = "{did}"\ntrunk_user = "{acct}"\ntrunk_password = "up-{acct}"\n')
    path.write_text("\n".join(lines))
    return path


def start_edge(tmp_path: Path, edge_port: int, trunk_port: int, *, transport: str = "udp",
               **kw: Any) -> EdgeProcess:
    cfg = write_config(tmp_path / "edge.toml", **kw)
    uri = f"sip:127.0.0.1:{trunk_port}" + ("" if transport == "udp" else f";transport={transport}")
    return EdgeProcess(tmp_path / "edge", edge_port, RTP,
                       extra=["--config", str(cfg), "--trunk", uri]).start()


def registrar(sipp: Any, lab: Any, trunk_port: int, scenario: str, exp: int,
              transport: str = "udp") -> Any:
    reg = sipp.start("provider_reg", ["-sf", str(lab.scenarios / scenario), "-i", "127.0.0.1",
                                      "-p", str(trunk_port), "-set", "exp", str(exp),
                                      "-set", "realm", REALM, "-m", "2",
                                      "-t", "t1" if transport == "tcp" else "u1"],
                     trace_logs=True, trace_msg=True, wall=40)
    lab.wait_udp_listening(trunk_port, transport=transport)
    return reg


def trunk_status(edge: EdgeProcess) -> dict[str, Any]:
    st = edge.status().get("trunk") or {}
    regs: dict[str, Any] = st.get("registrations", {})
    return regs


def wait_for(pred: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return bool(pred())


class PayloadCapture:
    """tshark keeping the UDP payloads sent to one port (the provider's RTP), in order."""

    def __init__(self, workdir: Path, port: int, seconds: int = 40) -> None:
        self.out = workdir / f"payload_{port}.txt"
        self.err = workdir / f"payload_{port}.err"
        argv = ["tshark", "-i", "lo", "-f", f"udp dst port {port}", "-a", f"duration:{seconds}",
                "-l", "-T", "fields", "-e", "udp.payload"]
        with self.out.open("wb") as o, self.err.open("wb") as e:
            self.proc = subprocess.Popen(argv, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while "Capturing on" not in self.err.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise AssertionError(f"tshark did not start: {self.err.read_text()[-400:]}")
            time.sleep(0.05)

    def stop(self) -> list[bytes]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        lines = self.out.read_text(errors="replace").split()
        return [bytes.fromhex(x.replace(":", "")) for x in lines if x]


def pcma_audio(packets: list[bytes]) -> bytes:
    """The 16-bit audio of the PCMA (PT 8) RTP packets, headers (CSRCs, extension) skipped."""
    pcm = bytearray()
    for p in packets:
        if len(p) < 12 or p[0] >> 6 != 2 or p[1] & 0x7F != 8:
            continue
        off = 12 + 4 * (p[0] & 0x0F)
        if p[0] & 0x10 and len(p) >= off + 4:
            off += 4 + 4 * int.from_bytes(p[off + 2:off + 4], "big")
        pcm += alaw_decode(p[off:])
    return bytes(pcm)


def digest_ok(auth: dict[str, str], password: str, method: str) -> bool:
    """RFC 2617 / 3261 §22.4 MD5 qop=auth, recomputed here from what crossed the wire."""
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{auth['username']}:{auth['realm']}:{password}")
    ha2 = md5(f"{method}:{auth['uri']}")
    expected = md5(f"{ha1}:{auth['nonce']}:{auth['nc']}:{auth['cnonce']}:{auth['qop']}:{ha2}")
    return expected == auth["response"]


@pytest.mark.timeout(120)
def test_each_user_registers_upstream_with_its_own_account(tmp_path: Path, lab: Any,
                                                           sipp: Any) -> None:
    edge_port, trunk_port = lab.take_ports(2)
    reg = registrar(sipp, lab, trunk_port, "trunk_registrar.xml", exp=4)
    # T1 = 100 ms: a REGISTER nobody answers times out (timer F) after 6.4 s, not 32 s
    edge = start_edge(tmp_path, edge_port, trunk_port, expires=60, t1_ms=100)
    try:
        # challenged, verified with each account's own password, refreshed before 4 s
        assert reg.wait(30) == 0, reg.errors() + edge.log()
        logs = reg.logs()
        for acct, _did in ACCOUNTS.values():
            assert f"register aor={acct} user={acct}" in logs, logs
            assert f"refresh aor={acct} user={acct}" in logs, logs
        assert wait_for(lambda: all(r.get("registrations", 0) >= 2
                                    for r in trunk_status(edge).values()), 5), edge.status()
        regs = trunk_status(edge)
        assert set(regs) == {"1001", "1002"}  # 1003 has no upstream account
        assert {r["account"] for r in regs.values()} == {"33100001001", "33100001002"}
        assert all(r["granted"] == 4 for r in regs.values()), regs
        # the provider is gone: the next refresh fails and is retried with backoff
        assert wait_for(lambda: all(r.get("state") == "retrying" and r.get("failures", 0) >= 1
                                    for r in trunk_status(edge).values()), 40), edge.status()
        assert "up-" not in (tmp_path / "edge" / "status.json").read_text()
    finally:
        edge.stop()


@pytest.mark.timeout(90)
def test_registration_over_tcp(tmp_path: Path, lab: Any, sipp: Any) -> None:
    edge_port, trunk_port = lab.take_ports(2)
    reg = registrar(sipp, lab, trunk_port, "trunk_registrar_once.xml", exp=3600,
                    transport="tcp")
    edge = start_edge(tmp_path, edge_port, trunk_port, transport="tcp")
    try:
        assert reg.wait(20) == 0, reg.errors() + edge.log()
        assert wait_for(lambda: all(r.get("state") == "registered"
                                    for r in trunk_status(edge).values()), 5), edge.status()
    finally:
        edge.stop()
    msgs = reg.messages()
    # the REGISTERs came over TCP, with a Contact that says so
    assert "SIP/2.0/TCP" in msgs and f"@127.0.0.1:{edge_port};transport=tcp>" in msgs, msgs


def registered(sipp: Any, lab: Any, tmp_path: Path, edge_port: int,
               trunk_port: int) -> EdgeProcess:
    """The edge with both upstream accounts registered (long expiry: the trunk port is quiet
    afterwards, free for the next sipp standing for the provider)."""
    reg = registrar(sipp, lab, trunk_port, "trunk_registrar_once.xml", exp=3600)
    edge = start_edge(tmp_path, edge_port, trunk_port)
    try:
        assert reg.wait(20) == 0, reg.errors() + edge.log()
        assert wait_for(lambda: all(r.get("state") == "registered"
                                    for r in trunk_status(edge).values()), 5), edge.status()
    except BaseException:
        edge.stop()
        raise
    return edge


INVITE_FIELDS = ["sip.Method", "sip.r-uri.user", "sip.from.user", "sip.auth.username", "sip.auth.realm",
                 "sip.auth.nonce", "sip.auth.uri", "sip.auth.nc", "sip.auth.cnonce",
                 "sip.auth.qop", "sip.auth.digest.response", "sdp.media", "sip.CSeq.seq"]


@pytest.mark.timeout(150)
def test_outbound_call_goes_out_as_the_callers_own_account(tmp_path: Path, lab: Any,
                                                           sipp: Any, tshark: Any) -> None:
    edge_port, trunk_port, uac_port, refused_port = lab.take_ports(4)
    provider_media, uac_media = media_ports(36800, 2)
    write_alaw(tmp_path / "uac.alaw", 1000, 3)
    edge = registered(sipp, lab, tmp_path, edge_port, trunk_port)
    target = f"127.0.0.1:{edge_port}"
    try:
        acct = ACCOUNTS["1001"][0]
        uas = sipp.start("provider_uas", ["-sf", str(lab.scenarios / "trunk_uas.xml"),
                                          "-i", "127.0.0.1", "-p", str(trunk_port),
                                          "-mi", "127.0.0.1", "-mp", str(provider_media),
                                          "-set", "realm", REALM,
                                          "-m", "1"], trace_logs=True, wall=60)
        lab.wait_udp_listening(trunk_port)
        requests = tshark.start(trunk_port, fields=INVITE_FIELDS, seconds=60,
                                display_filter='sip.Method in {"INVITE", "ACK", "BYE"}')
        rtp = UdpCapture(tmp_path, f"udp portrange {RTP[0]}-{RTP[1]}", seconds=40)
        audio = PayloadCapture(tmp_path, provider_media)
        uac = sipp.start("uac", [target, "-sf", str(lab.scenarios / "edge_uac.xml"),
                                 "-s", NUMBER, "-i", "127.0.0.1", "-p", str(uac_port),
                                 "-mi", "127.0.0.1", "-mp", str(uac_media), "-au", "1001",
                                 "-ap", "demo-1001", "-set", "user", "1001",
                                 "-auth_uri", f"{NUMBER}@{target}", "-m", "1", "-timeout_error"],
                         trace_logs=True, wall=40)
        assert uac.wait(40) == 0, uac.errors() + edge.log()
        assert uas.wait(20) == 0, uas.errors() + uas.logs() + edge.log()
        flows = rtp.stop()
        heard = pcma_audio(audio.stop())
        # 1003 has no upstream account: refused at the edge, nothing reaches the provider
        refused = sipp.start("refused", [target, "-sf",
                                         str(lab.scenarios / "edge_uac_forbidden.xml"),
                                         "-s", NUMBER, "-i", "127.0.0.1",
                                         "-p", str(refused_port), "-au", "1003",
                                         "-ap", "demo-1003", "-set", "user", "1003",
                                         "-auth_uri", f"{NUMBER}@{target}", "-m", "1",
                                         "-timeout_error"], wall=20)
        assert refused.wait(20) == 0, refused.errors() + edge.log()
        time.sleep(0.5)
        wire = [dict(zip(INVITE_FIELDS, ln.split("|"), strict=False))
                for ln in requests.stop().splitlines() if ln.strip()]
    finally:
        edge.stop()
    assert f"invite account={acct}" in uas.logs() and f"bye account={acct}" in uas.logs()
    # on the wire: two INVITEs (the 407 answered), both for the dialled number as 1001's
    # upstream account, and no third one for 1003
    invites = [r for r in wire if r["sip.Method"] == "INVITE"]
    assert len(invites) == 2, wire
    first, second = invites
    for inv in (first, second):
        assert inv["sip.r-uri.user"] == NUMBER and inv["sip.from.user"] == acct, inv
        media = inv["sdp.media"].split()
        assert media[0] == "audio" and media[3:] == ["96", "8", "0", "101"], inv
        assert RTP[0] <= int(media[1]) <= RTP[1], inv
    assert first["sip.auth.username"] == "" and int(second["sip.CSeq.seq"]) == 2
    auth = {k.removeprefix("sip.auth.").removeprefix("digest."): v.strip('"')
            for k, v in second.items() if k.startswith("sip.auth.")}
    assert auth["username"] == acct and auth["realm"] == REALM, auth
    assert digest_ok(auth, f"up-{acct}", "INVITE"), auth
    other = ACCOUNTS["1002"][0]
    assert not digest_ok(auth, f"up-{other}", "INVITE")
    # the ACK of the 200 carries the INVITE's credentials (RFC 3261 §13.2.2.4); the BYE,
    # challenged in its turn, is answered with 1001's account again
    acks = [r for r in wire if r["sip.Method"] == "ACK" and r["sip.CSeq.seq"] == "2"]
    assert acks and acks[0]["sip.auth.digest.response"] == second["sip.auth.digest.response"]
    byes = [r for r in wire if r["sip.Method"] == "BYE"]
    assert len(byes) == 2 and byes[0]["sip.auth.username"] == "", byes
    bye_auth = {k.removeprefix("sip.auth.").removeprefix("digest."): v.strip('"')
                for k, v in byes[1].items() if k.startswith("sip.auth.")}
    assert bye_auth["username"] == acct and digest_ok(bye_auth, f"up-{acct}", "BYE"), bye_auth
    # the caller's RTP went to the provider's media port from an edge port in the range
    to_provider = {src: n for (src, dst), n in flows.items() if dst == provider_media}
    assert sum(to_provider.values()) >= 100, flows
    assert all(RTP[0] <= p <= RTP[1] for p in to_provider), to_provider
    # and it is the caller's 1 kHz tone the provider gets (Goertzel over one second)
    assert len(heard) >= 2 * 8000 * 2, len(heard)
    assert tone_power_ratio(heard[8000:8000 + 16000], 8000, 1000.0) > 0.8
    assert tone_power_ratio(heard[8000:8000 + 16000], 8000, 440.0) < 0.05
    calls = edge.calls()
    answered = [c for c in calls if c["status"] == 200]
    assert [(c["caller"], c["callee"]) for c in answered] == [("1001", NUMBER)], calls


@pytest.mark.timeout(150)
def test_inbound_call_to_a_did_rings_the_users_phone(tmp_path: Path, lab: Any,
                                                     sipp: Any) -> None:
    edge_port, trunk_port, uas_port, reg_port, stranger_port, inside_port = lab.take_ports(6)
    (trunk_media,) = media_ports(37200, 1)
    edge = registered(sipp, lab, tmp_path, edge_port, trunk_port)
    target = f"127.0.0.1:{edge_port}"
    did = ACCOUNTS["1002"][1]
    try:
        uas = sipp.start("phone_1002", ["-sf", str(lab.scenarios / "edge_uas_answer.xml"),
                                        "-i", "127.0.0.1", "-p", str(uas_port),
                                        "-mi", "127.0.0.1", "-m", "2"],
                         trace_msg=True, wall=60)
        lab.wait_udp_listening(uas_port)
        reg = sipp.start("reg_1002", [target, "-sf", str(lab.scenarios / "edge_register.xml"),
                                      "-i", "127.0.0.1", "-p", str(reg_port), "-au", "1002",
                                      "-ap", "demo-1002", "-set", "user", "1002",
                                      "-set", "cport", str(uas_port), "-m", "1",
                                      "-timeout_error"], wall=20)
        assert reg.wait(20) == 0, reg.errors() + edge.log()
        # the provider (from the trunk's address) calls 1002's DID: no digest asked
        call = sipp.start("provider_uac", [target, "-sf",
                                           str(lab.scenarios / "trunk_inbound_uac.xml"),
                                           "-s", did, "-i", "127.0.0.1", "-p", str(trunk_port),
                                           "-mi", "127.0.0.1", "-mp", str(trunk_media),
                                           "-set", "cli", "+33611111111", "-m", "1",
                                           "-timeout_error"], trace_logs=True, wall=30)
        assert call.wait(30) == 0, call.errors() + edge.log()
        # 1001 dialling 1002's DID stays inside: the same phone rings, the provider is not
        # involved (nothing listens on the trunk port now: a call sent there would fail)
        inside = sipp.start("inside", [target, "-sf", str(lab.scenarios / "edge_uac_quick.xml"),
                                       "-s", did, "-i", "127.0.0.1", "-p", str(inside_port),
                                       "-au", "1001", "-ap", "demo-1001", "-set", "user", "1001",
                                       "-auth_uri", f"{did}@{target}", "-m", "1",
                                       "-timeout_error"], wall=20)
        assert inside.wait(20) == 0, inside.errors() + edge.log()
        assert uas.wait(20) == 0, uas.errors()
        # an unknown DID from the trunk: 404
        unknown = sipp.start("unknown_did", [target, "-sf",
                                             str(lab.scenarios / "trunk_uac_refused.xml"),
                                             "-s", "+33123450999", "-i", "127.0.0.1",
                                             "-p", str(trunk_port), "-m", "1",
                                             "-timeout_error"], trace_logs=True, wall=20)
        assert unknown.wait(20) == 0, unknown.errors() + edge.log()
        # the right DID from another address is not the provider: challenged like anyone
        stranger = sipp.start("stranger", [target, "-sf",
                                           str(lab.scenarios / "trunk_uac_refused.xml"),
                                           "-s", did, "-i", "127.0.0.1",
                                           "-p", str(stranger_port), "-m", "1",
                                           "-timeout_error"], trace_logs=True, wall=20)
        assert stranger.wait(20) == 0, stranger.errors() + edge.log()
        edge.wait_idle(10)
    finally:
        edge.stop()
    assert "refused=404" in unknown.logs(), unknown.logs()
    assert "refused=407" in stranger.logs(), stranger.logs()
    answer = [ln for ln in call.logs().splitlines() if ln.startswith("answer port=")]
    assert answer, call.logs()
    port = int(answer[0].split()[1].removeprefix("port="))
    assert RTP[0] <= port <= RTP[1], answer
    # the phone got the edge's own INVITE, showing the provider's calling number
    msgs = uas.messages()
    assert "INVITE sip:1002@" in msgs and "<sip:+33611111111@" in msgs, msgs[:2000]
    calls = [c for c in edge.calls() if c["status"] == 200]
    assert [(c["caller"], c["callee"]) for c in calls] == [("+33611111111", "1002"),
                                                           ("1001", "1002")], calls
