"""Our UA against real sipp (Debian's sip-tester) on loopback: calls both ways over UDP and TCP,
with 10 % packet loss, digest REGISTER with refresh, the INVITE offer on the wire (tshark) and
a fuzzed UDP listener that still answers OPTIONS.

Our UA runs in the test's event loop; sipp is a child process stopped by PID (see conftest).
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from softphone.phone import Call, CallState, RegState, UserAgent
from softphone.sip.transport import ListenSpec

pytestmark = pytest.mark.lab


async def _start_ua(transport: str, port: int, **kw: object) -> UserAgent:
    ua = UserAgent(listen=[ListenSpec(transport, "127.0.0.1", port)], **kw)  # type: ignore[arg-type]
    await ua.start()
    return ua


def _outcomes(calls: Sequence[Call]) -> Counter[tuple[int | None, str, int | None]]:
    """(INVITE final status, why it ended, final status of our BYE) per call."""
    return Counter((c.status, c.end_reason, c.bye_status) for c in calls)


async def _place_calls(ua: UserAgent, target: str, n: int, cps: float, hold: float,
                       timeout: float) -> list[Call]:
    """``n`` calls at ``cps``; each is hung up ``hold`` s after the 200 and awaited to its end."""

    async def one() -> Call:
        call = await ua.call(target)
        if await call.wait_answered(timeout):
            await asyncio.sleep(hold)
            await call.hangup_and_wait(timeout)
        else:
            call.hangup()
        return call

    tasks = []
    for _ in range(n):
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(1.0 / cps)
    return list(await asyncio.gather(*tasks))


# -- sipp uac -> our UA as UAS ------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("transport", "lost"), [("udp", 0), ("tcp", 0), ("udp", 10)])
async def test_sipp_uac_calls_our_uas(sipp: Any, lab: Any, transport: str, lost: int) -> None:
    ua_port, sipp_port = lab.take_ports(2)
    ua = await _start_ua(transport, ua_port, user="service", auto_answer=True, ring=True)
    try:
        args = [f"127.0.0.1:{ua_port}", "-sn", "uac", "-i", "127.0.0.1", "-p", str(sipp_port),
                "-m", "100", "-d", "0", "-timeout_error",
                "-t", "t1" if transport == "tcp" else "u1"]
        if lost:
            # Low rate, generous timeouts: every lost message must be recovered by a
            # retransmission (ours: 200 until ACK, absorbed BYE retransmissions; sipp's).
            args += ["-lost", str(lost), "-r", "20", "-l", "100"]
        else:
            args += ["-r", "50", "-l", "50"]
        peer = sipp.start(f"uac_{transport}_{lost}", args, wall=70)
        rc = await peer.wait_async(75)
        stats = peer.stats()
        assert rc == 0, f"sipp rc {rc}: {stats}\n{peer.errors()[-3000:]}"
        assert peer.stat("OutgoingCall(C)") == 100
        assert peer.stat("SuccessfulCall(C)") == 100, peer.errors()[-3000:]
        assert peer.stat("FailedCall(C)") == 0
        if lost:
            assert peer.stat("Retransmissions(C)") > 0  # the loss really happened
        assert ua.stats["calls_in"] == 100
        assert ua.stats["answered"] == 100
        # Every call ended by sipp's BYE, not by a timeout on our side.
        ended = [c for c in ua.calls.values() if c.ended]
        assert all(c.end_reason == "remote hangup" for c in ended), _outcomes(ended)
        assert ua.transport.stats.core_errors == 0
    finally:
        await ua.close()


# -- our UA as UAC -> sipp uas -------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("transport", "lost"), [("udp", 0), ("tcp", 0), ("udp", 10)])
async def test_our_uac_calls_sipp_uas(sipp: Any, lab: Any, transport: str, lost: int) -> None:
    sipp_port, ua_port = lab.take_ports(2)
    args = ["-i", "127.0.0.1", "-p", str(sipp_port), "-t", "t1" if transport == "tcp" else "u1"]
    if lost:
        # The built-in uas aborts calls whose INVITE retransmission crosses a lost 200
        # (see the scenario's comment); this one differs from it only there.
        args += ["-sf", str(lab.scenarios / "uas_lossy.xml"), "-lost", str(lost)]
    else:
        args += ["-sn", "uas"]
    peer = sipp.start(f"uas_{transport}_{lost}", args, wall=80)
    lab.wait_udp_listening(sipp_port, transport=transport)
    ua = await _start_ua(transport, ua_port, user="alice")
    try:
        target = f"sip:service@127.0.0.1:{sipp_port};transport={transport}"
        # With loss, hold each call a second so that a lost ACK is recovered by sipp's 200
        # retransmission (and our re-ACK) before our BYE goes out.
        calls = await _place_calls(ua, target, 100, cps=20 if lost else 50,
                                   hold=1.0 if lost else 0.0, timeout=40)
        outcomes = _outcomes(calls)
        assert outcomes == Counter({(200, "local hangup", 200): 100}), outcomes
        assert all(c.negotiated is not None and c.negotiated.codec.name == "PCMU"
                   for c in calls)  # the built-in uas only answers PCMU
        # Every RTP port went back to the allocator.
        assert ua.ports.in_use == 0
    finally:
        await ua.close()
    peer.stop(soft_timeout=10)  # SIGUSR1: sipp finishes its 4 s time-wait and writes stats
    assert peer.stat("IncomingCall(C)") == 100
    assert peer.stat("SuccessfulCall(C)") == 100, peer.errors()[-3000:]
    assert peer.stat("FailedCall(C)") == 0
    if lost:
        assert peer.stat("Retransmissions(C)") > 0


# -- REGISTER with digest, refreshed before expiry ----------------------------------------


@pytest.mark.timeout(30)
async def test_register_digest_and_refresh_before_expiry(sipp: Any, lab: Any) -> None:
    reg_port, ua_port = lab.take_ports(2)
    peer = sipp.start("registrar", ["-sf", str(lab.scenarios / "registrar_digest.xml"),
                                    "-i", "127.0.0.1", "-p", str(reg_port), "-m", "1"],
                      wall=20, trace_logs=True, trace_msg=True)
    lab.wait_udp_listening(reg_port)
    ua = await _start_ua("udp", ua_port, user="1001")
    try:
        reg = await ua.register(f"sip:127.0.0.1:{reg_port}", username="1001",
                                password="lab-secret", expires=60, wait=5)
        assert reg.state is RegState.REGISTERED
        assert reg.granted == 4  # the registrar shortened our 60 s
        # The scenario only accepts a refresh that arrives within 3.9 s of its 200.
        assert await reg.wait_registered(6, count=2)
        rc = await peer.wait_async(10)
        assert rc == 0, peer.errors()
        logs = peer.logs()
        assert "first REGISTER auth valid=true" in logs
        assert "refresh REGISTER auth valid=true" in logs
        assert peer.stat("SuccessfulCall(C)") == 1
        # On the wire: the challenge was answered with qop=auth, the refresh reuses the nonce
        # with the next nonce count instead of provoking a new 401.
        msgs = peer.messages()
        assert msgs.count("SIP/2.0 401 Unauthorized") == 1
        assert re.search(r"Authorization: Digest .*qop=auth.*nc=00000001", msgs)
        assert re.search(r"Authorization: Digest .*nc=00000002", msgs)
    finally:
        await ua.close()


# -- the INVITE offer, captured on the wire -----------------------------------------------


@pytest.mark.timeout(40)
async def test_invite_offer_order_on_the_wire(sipp: Any, lab: Any, tshark: Any) -> None:
    sipp_port, ua_port = lab.take_ports(2)
    cap = tshark.start(sipp_port, fields=["sdp.media", "sdp.media_attr"],
                       display_filter='sip.Method == "INVITE"', seconds=20)
    peer = sipp.start("uas_offer", ["-sn", "uas", "-i", "127.0.0.1", "-p", str(sipp_port)],
                      wall=30)
    lab.wait_udp_listening(sipp_port)
    ua = await _start_ua("udp", ua_port, user="alice")
    try:
        call = await ua.call(f"sip:service@127.0.0.1:{sipp_port}")
        assert await call.wait_answered(10)
        await call.hangup_and_wait(10)
    finally:
        await ua.close()
    await asyncio.sleep(0.3)  # let tshark write the line
    lines = [x for x in cap.stop().splitlines() if x.strip()]
    assert lines, "tshark saw no INVITE"
    media, attrs = lines[0].split("|", 1)
    m = re.fullmatch(r"audio (\d+) RTP/AVP 96 8 0 101", media.strip())
    assert m, media
    assert 20000 <= int(m.group(1)) <= 22000
    rtpmaps = [a for a in attrs.split(",") if a.startswith("rtpmap:")]
    assert rtpmaps == ["rtpmap:96 opus/48000/2", "rtpmap:8 PCMA/8000", "rtpmap:0 PCMU/8000",
                       "rtpmap:101 telephone-event/8000"], attrs
    assert "fmtp:96 useinbandfec=1" in attrs
    peer.stop()


# -- robustness: junk at the UDP listener ---------------------------------------------------

_SAMPLE = (
    "INVITE sip:service@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKfuzz{n}\r\n"
    "From: <sip:fuzz@127.0.0.1>;tag=f{n}\r\nTo: <sip:service@127.0.0.1>\r\n"
    "Call-ID: fuzz-{n}@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:fuzz@127.0.0.1:9>\r\n"
    "Content-Type: application/sdp\r\nContent-Length: 129\r\n\r\n"
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)


def _mutants(rng: random.Random, n: int) -> list[bytes]:
    out: list[bytes] = []
    for i in range(n):
        base = bytearray(_SAMPLE.format(n=i).encode())
        kind = i % 6
        if kind == 0:  # random bytes
            out.append(rng.randbytes(rng.randint(1, 1400)))
        elif kind == 1:  # bit flips
            for _ in range(rng.randint(1, 20)):
                base[rng.randrange(len(base))] ^= 1 << rng.randrange(8)
            out.append(bytes(base))
        elif kind == 2:  # truncation
            out.append(bytes(base[: rng.randrange(1, len(base))]))
        elif kind == 3:  # a header line duplicated or dropped
            lines = bytes(base).split(b"\r\n")
            j = rng.randrange(1, 9)
            if rng.random() < 0.5:
                del lines[j]
            else:
                lines.insert(j, lines[j])
            out.append(b"\r\n".join(lines))
        elif kind == 4:  # hostile values
            bad = rng.choice([b"CSeq: 99999999999 INVITE", b"Content-Length: -5",
                              b"Via: SIP/2.0/UDP [::1", b"Max-Forwards: 9999",
                              b"From: \"unterminated <sip:x@y>", b"Content-Length: 999999"])
            lines = bytes(base).split(b"\r\n")
            lines[rng.randrange(1, 8)] = bad
            out.append(b"\r\n".join(lines))
        else:  # binary garbage inside the headers, and bad SDP
            pos = rng.randrange(len(base))
            out.append(bytes(base[:pos]) + rng.randbytes(16) + bytes(base[pos:]))
    return out


@pytest.mark.timeout(40)
async def test_fuzzed_udp_listener_still_answers_options(sipp: Any, lab: Any) -> None:
    ua_port, sipp_port = lab.take_ports(2)
    ua = await _start_ua("udp", ua_port, user="service", auto_answer=False)
    incoming: list[Call] = []
    ua.on_event = lambda ev: incoming.append(ev.call) if hasattr(ev, "call") else None
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        rng = random.Random(20261123)
        junk = _mutants(rng, 600)
        for i, data in enumerate(junk):
            sock.sendto(data, ("127.0.0.1", ua_port))
            if i % 10 == 9:
                # Paced, so the kernel does not drop them from a full receive buffer while
                # a busy machine keeps the listener off the CPU: the listener must see them.
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)
        sock.close()
        assert ua.transport.stats.core_errors == 0
        assert ua.transport.stats.datagrams_in >= 0.9 * len(junk)
        assert ua.core is not None and ua.core.stats["parse_errors"] > 0
        # The listener is alive and answers a real peer.
        peer = sipp.start("options_after_fuzz", [
            f"127.0.0.1:{ua_port}", "-sf", str(lab.scenarios / "options_ping.xml"),
            "-i", "127.0.0.1", "-p", str(sipp_port), "-m", "5", "-r", "10", "-timeout_error"],
            wall=20)
        rc = await peer.wait_async(25)
        assert rc == 0, peer.errors()
        assert peer.stat("SuccessfulCall(C)") == 5
    finally:
        for call in incoming:
            if not call.ended:
                call.reject(480, "Temporarily Unavailable")
        await ua.close()
    assert all(c.state is CallState.TERMINATED for c in incoming)


# -- the command-line tools ------------------------------------------------------------------


async def _run(argv: list[str], timeout: float) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{argv} still running after {timeout} s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.timeout(40)
async def test_softphone_call_against_sipp(sipp: Any, lab: Any) -> None:
    sipp_port, free_port = lab.take_ports(2)
    peer = sipp.start("uas_cli", ["-sn", "uas", "-i", "127.0.0.1", "-p", str(sipp_port)],
                      wall=30)
    lab.wait_udp_listening(sipp_port)
    exe = [sys.executable, "-m", "softphone", "call"]
    rc, out = await _run([*exe, f"sip:service@127.0.0.1:{sipp_port}", "--duration", "1"], 20)
    assert rc == 0, out
    assert "answered: PCMU/8000" in out and "hung up" in out
    # Nobody there: not answered -> exit 1 (after the answer timeout, not timer B).
    rc, out = await _run([*exe, f"sip:service@127.0.0.1:{free_port}", "--answer-timeout", "1"],
                         15)
    assert rc == 1, out
    peer.stop(soft_timeout=10)
    assert peer.stat("SuccessfulCall(C)") == 1


@pytest.mark.timeout(40)
async def test_uas_module_answers_sipp(sipp: Any, lab: Any) -> None:
    uas_port, sipp_port = lab.take_ports(2)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "softphone.phone.uas", "--listen", f"udp:127.0.0.1:{uas_port}",
        "--ring", "--duration", "25", stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert line.startswith(b"listening udp:127.0.0.1:"), line
        peer = sipp.start("uac_cli", [f"127.0.0.1:{uas_port}", "-sn", "uac", "-i", "127.0.0.1",
                                      "-p", str(sipp_port), "-m", "10", "-r", "10", "-d", "0",
                                      "-timeout_error"], wall=20)
        assert await peer.wait_async(25) == 0, peer.errors()
        assert peer.stat("SuccessfulCall(C)") == 10
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


@pytest.mark.timeout(40)
async def test_softphone_call_hears_its_tone_through_sipp_rtp_echo(sipp: Any, lab: Any) -> None:
    # sipp's -mp P binds P and P + 2 (audio, video) and more around them: keep room.
    ports = lab.take_ports(10)
    sipp_port, quiet_port, media_port, quiet_media = ports[0], ports[1], ports[2], ports[6]
    echo = sipp.start("uas_echo", ["-sn", "uas", "-i", "127.0.0.1", "-p", str(sipp_port),
                                   "-mi", "127.0.0.1", "-mp", str(media_port), "-rtp_echo"],
                      wall=30)
    quiet = sipp.start("uas_quiet", ["-sn", "uas", "-i", "127.0.0.1", "-p", str(quiet_port),
                                     "-mi", "127.0.0.1", "-mp", str(quiet_media)], wall=30)
    lab.wait_udp_listening(sipp_port)
    lab.wait_udp_listening(quiet_port)
    exe = [sys.executable, "-m", "softphone", "call", "--tone", "440", "--expect-tone",
           "--duration", "2"]
    rc, out = await _run([*exe, f"sip:service@127.0.0.1:{sipp_port}"], 20)
    assert rc == 0, out
    m = re.search(r"rtp sent=(\d+) received=(\d+) tone 440 Hz ratio=([0-9.]+)", out)
    assert m, out
    sent, received, ratio = int(m.group(1)), int(m.group(2)), float(m.group(3))
    assert sent >= 95 and received >= 0.9 * sent  # 20 ms PCMU frames for 2 s, echoed
    assert ratio >= 0.9  # the decoded echo is the 440 Hz sine (Goertzel)
    # Control: a peer that sends nothing back fails the check.
    rc, out = await _run([*exe, f"sip:service@127.0.0.1:{quiet_port}"], 20)
    assert rc == 1 and "did not come back" in out, out
    echo.stop(soft_timeout=10)
    quiet.stop(soft_timeout=10)
    assert echo.stat("SuccessfulCall(C)") == 1 and quiet.stat("SuccessfulCall(C)") == 1
