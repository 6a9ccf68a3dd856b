"""Browser legs through the shipped edge, without a browser: SIP over WebSocket at ``/ws`` of
the HTTP listener and aiortc media (``lab.webrtc_phone``), against the edge's own aiortc.

What is checked is on the wire and on the audio: the edge's answer (ICE host candidates only,
ports in the RTP range, DTLS fingerprint, OPUS first), the sockets the edge process holds
(``ss``), the tone the phone sends coming back from 600, and a desk phone (an RTP phone over
UDP SIP) and the browser phone hearing each other's tones, transcoded OPUS <-> PCMA.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lab.audio import best_tone_ratio, strongest_window
from lab.baresip_peer import Baresip, account
from lab.baresip_peer import available as baresip_available
from lab.conftest import take_ports
from lab.edge_proc import EdgeProcess
from lab.netutil import edge_pid, udp_ports_of
from lab.webrtc_phone import AMPLITUDE, RATE, WebRtcPhone

from softphone.media.tone import rms
from softphone.sip.message import SipRequest

pytestmark = [pytest.mark.lab, pytest.mark.timeout(90)]

RTP = (20700, 20799)
PHONE_RTP = (20800, 20839)


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[EdgeProcess]:
    sip, http = take_ports(2)
    proc = EdgeProcess(tmp_path / "edge", sip, RTP, http_port=http)
    await asyncio.to_thread(proc.start)
    try:
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


def ws_url(edge: EdgeProcess) -> str:
    return f"ws://127.0.0.1:{edge.http_port}/ws"


@contextlib.asynccontextmanager
async def registered(edge: EdgeProcess, ext: str, *, rtp: tuple[int, int] = PHONE_RTP,
                     tone_hz: float = 1000.0) -> AsyncIterator[WebRtcPhone]:
    """A browser-style phone registered over /ws as ``ext`` (its demo password)."""
    async with WebRtcPhone(ws_url(edge), ext, f"demo-{ext}", rtp=rtp,
                           tone_hz=tone_hz) as phone:
        reg = await phone.register()
        assert reg.status == 200, reg
        yield phone


def candidates(sdp: bytes) -> list[tuple[str, int, str]]:
    """(address, port, type) of every a=candidate line."""
    out = []
    for line in sdp.decode().splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            out.append((parts[4], int(parts[5]), parts[7]))
    return out


async def test_a_browser_calls_600_and_hears_itself_on_ports_of_the_range(
        edge: EdgeProcess) -> None:
    async with registered(edge, "1001") as phone:
        resp, invite = await phone.call("600")
        assert resp.status == 200, resp
        answer = resp.body.decode()
        # DTLS-SRTP with ICE, OPUS first, one bundled port with rtcp-mux
        assert re.search(r"^m=audio \d+ UDP/TLS/RTP/SAVPF \d+", answer, re.M), answer
        assert "a=fingerprint:sha-256" in answer and "a=rtcp-mux" in answer, answer
        assert re.search(r"^a=rtpmap:\d+ opus/48000/2", answer, re.M), answer
        found = candidates(resp.body)
        assert found, answer
        for host, port, kind in found:
            assert kind == "host" and host == "127.0.0.1", found
            assert RTP[0] <= port <= RTP[1], found
        await asyncio.sleep(3.0)
        held = udp_ports_of(edge_pid(edge))
        sip_port = edge.sip_port
        outside = {p for p in held if not RTP[0] <= p <= RTP[1] and p != sip_port}
        assert not outside, f"edge UDP sockets outside {RTP}: {sorted(outside)}"
        bye = await phone.hang_up(invite, resp)
        assert bye.status == 200, bye
    heard = bytes(phone.heard)
    assert len(heard) > RATE * 2, f"only {len(heard) / 2 / RATE:.2f} s heard"
    assert strongest_window(heard, 1000, rate=RATE) > 0.6
    # at the level it was sent (within 2 dB), not 3 dB down by an upmix on the way back
    sent = AMPLITUDE / math.sqrt(2)
    level = rms(heard[len(heard) // 2:])
    assert 0.79 * sent < level < 1.26 * sent, f"echo at {20 * math.log10(level / sent):.1f} dB"


@pytest.mark.skipif(not baresip_available(), reason="baresip with opus.so not installed")
async def test_a_browser_and_a_desk_phone_call_each_other(edge: EdgeProcess,
                                                        tmp_path: Path) -> None:
    """1001 in the browser calls 1002, a baresip desk phone on PCMA only: each hears the
    other's tone, transcoded between OPUS and PCMA by the edge's bridge. Then the desk phone
    calls the browser, which answers, and the tones cross again."""
    b_sip, _, b_ctl = take_ports(3)
    where = f"127.0.0.1:{edge.sip_port}"
    desk = Baresip(tmp_path, "desk", b_sip, b_ctl, 34700,
                   account("1002", "demo-1002", where, codecs="PCMA/8000/1",
                           auto_answer=True), freq=440)
    try:
        await asyncio.to_thread(desk.start)
        assert await asyncio.to_thread(desk.wait_registered, 10), desk.log()
        async with registered(edge, "1001") as phone:
            resp, invite = await phone.call("1002")
            assert resp.status == 200, (resp, edge.log())
            await asyncio.sleep(1.5)
            # a key pressed in the browser (SIP INFO) reaches the desk phone as RFC 4733
            assert (await phone.press(invite, resp, "5")).status == 200
            key = await asyncio.to_thread(desk.wait_event, "CALL_DTMF_START", 5)
            assert key is not None and key.get("param") == "5", desk.events
            # a key pressed on the desk phone (RFC 4733) reaches the browser as SIP INFO
            desk.send("sndcode", "7", token="key7")
            assert keys_heard(await phone.wait_request("INFO", 5)) == "7", edge.log()[-2000:]
            await asyncio.sleep(1.5)
            assert (await phone.hang_up(invite, resp)).status == 200
            heard_out = bytes(phone.heard)
            assert await asyncio.to_thread(desk.wait_event, "CALL_CLOSED", 10)
            phone.heard.clear()
            # the desk phone calls the browser
            answering = asyncio.create_task(phone.answer_next(15))
            desk.send("dial", f"sip:1001@{where}", token="dial")
            incoming = await answering
            assert b"UDP/TLS/RTP/SAVPF" in incoming.body, incoming.body
            for host, port, kind in candidates(incoming.body):
                assert (host, kind) == ("127.0.0.1", "host") and RTP[0] <= port <= RTP[1]
            assert await asyncio.to_thread(desk.wait_event, "CALL_ESTABLISHED", 10), desk.log()
            await asyncio.sleep(1.0)
            desk.send("sndcode", "#", token="key#")  # to the browser that answered (leg b)
            assert keys_heard(await phone.wait_request("INFO", 5)) == "#", edge.log()[-2000:]
            await asyncio.sleep(2.0)
            desk.send("hangup", token="hup")
            assert await asyncio.to_thread(desk.wait_event, "CALL_CLOSED", 10)
            heard_in = bytes(phone.heard)
    finally:
        await asyncio.to_thread(desk.stop)
    assert strongest_window(heard_out, 440, rate=RATE) > 0.6, "browser did not hear the desk"
    assert strongest_window(heard_in, 440, rate=RATE) > 0.6, "browser did not hear the desk"
    assert best_tone_ratio(desk.decoded_wavs(), 1000) > 0.5, desk.decoded_wavs()
    calls = await asyncio.to_thread(edge.wait_calls, 2)
    assert len(calls) == 2, edge.log()
    for call in calls:
        codecs = sorted(leg["codec"].lower() for leg in call["legs"])
        assert codecs == ["opus", "pcma"], call
        assert call["transcoded"], call
        # the browser leg's quality as aiortc measured it: RTT from the browser's receiver
        # reports, loss and jitter on its SRTP stream (loopback: nothing lost)
        (web,) = [leg for leg in call["legs"] if leg["codec"].lower() == "opus"]
        assert web["rtt_ms"] is not None and 0 <= web["rtt_ms"] < 100, web
        assert web["lost"] == 0 and 0 <= web["jitter_ms"] < 20 and web["packets_in"] > 100, web


async def test_a_stranger_cannot_call_over_the_websocket_without_credentials(
        edge: EdgeProcess) -> None:
    """A WebSocket anyone can open: an INVITE with a browser's offer but a wrong password
    gets 407 then 403/407 and no media port is taken."""
    async with WebRtcPhone(ws_url(edge), "1001", "wrong", rtp=PHONE_RTP) as phone:
        resp, _invite = await phone.call("600")
        assert resp.status in (401, 403, 407), resp
        assert not phone.answer_sdp
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2:
        if not {p for p in udp_ports_of(edge_pid(edge)) if RTP[0] <= p <= RTP[1]}:
            break
        await asyncio.sleep(0.1)
    assert not {p for p in udp_ports_of(edge_pid(edge)) if RTP[0] <= p <= RTP[1]}


async def test_112_from_a_browser_without_the_service_plays_the_notice_then_refuses(
        edge: EdgeProcess) -> None:
    """The shipped configuration has no emergency service: the browser hears the notice as
    early media (aiortc's answer in a 183), then gets 403 with the notice's words."""
    async with registered(edge, "1001", tone_hz=0) as phone:
        resp, _invite = await phone.call("112")
    assert resp.status == 403, resp
    assert "mobile" in (resp.headers.get("warning") or ""), resp
    assert phone.early is not None and b"UDP/TLS/RTP/SAVPF" in phone.early.body
    heard = bytes(phone.heard)
    assert len(heard) > RATE * 2, f"{len(heard) / 2 / RATE:.2f} s of notice heard"
    assert rms(heard) > 300, "the notice was silent"


@pytest.mark.skipif(not baresip_available(), reason="baresip with opus.so not installed")
async def test_one_call_per_user_across_desk_phone_and_browser(edge: EdgeProcess,
                                                               tmp_path: Path) -> None:
    """1001's desk phone (baresip) is on a call with 1002 in a browser; 1001 in a browser
    then calls 1003: refused with the rule's words, and the first call goes on."""
    a_sip, _, a_ctl = take_ports(3)
    where = f"127.0.0.1:{edge.sip_port}"
    desk = Baresip(tmp_path, "desk", a_sip, a_ctl, 34750,
                   account("1001", "demo-1001", where), freq=440)
    try:
        await asyncio.to_thread(desk.start)
        assert await asyncio.to_thread(desk.wait_registered, 10), desk.log()
        async with registered(edge, "1002") as callee, \
                registered(edge, "1001", rtp=(20840, 20859)) as second:
            answering = asyncio.create_task(callee.answer_next(15))
            desk.send("dial", f"sip:1002@{where}", token="dial")
            await answering
            assert await asyncio.to_thread(desk.wait_event, "CALL_ESTABLISHED", 10), desk.log()
            resp, _invite = await second.call("1003")
            assert resp.status in (403, 486), resp
            warning = resp.headers.get("warning") or ""
            assert "399" in warning and "call" in warning.lower(), resp
            await asyncio.sleep(1.0)
            callee.heard.clear()
            await asyncio.sleep(2.0)
            desk.send("hangup", token="hup")
            assert await asyncio.to_thread(desk.wait_event, "CALL_CLOSED", 10)
            still = bytes(callee.heard)
    finally:
        await asyncio.to_thread(desk.stop)
    assert strongest_window(still, 440, rate=RATE) > 0.6, "the first call did not go on"


async def test_rtp_sprayed_at_a_browser_leg_is_neither_heard_nor_answered(
        edge: EdgeProcess) -> None:
    """A stranger sprays RTP (a 3 kHz tone, in sequence) from 127.0.0.2 at every port of the
    range while a browser talks to 600: what the browser hears back is its own tone only
    (DTLS-SRTP: forged packets fail authentication), and nothing is sent to the stranger."""
    from lab.rtp_spray import RtpSpray

    spray = RtpSpray(RTP, freq=3000, seconds=20)
    try:
        async with registered(edge, "1001") as phone:
            resp, invite = await phone.call("600")
            assert resp.status == 200, resp
            await asyncio.sleep(4.0)
            assert (await phone.hang_up(invite, resp)).status == 200
    finally:
        await asyncio.to_thread(spray.stop)
    heard = bytes(phone.heard)
    assert spray.sent > 1000
    assert strongest_window(heard, 1000, rate=RATE) > 0.6
    assert strongest_window(heard, 3000, rate=RATE) < 0.05, "the stranger's tone was heard"
    assert not spray.received, f"{len(spray.received)} packets sent to the stranger"


async def test_an_edge_that_stops_says_bye_to_the_browser(edge: EdgeProcess) -> None:
    """SIGTERM ends the calls with BYE before the HTTP listener (which carries /ws) closes."""
    async with registered(edge, "1001") as phone:
        resp, invite = await phone.call("600")
        assert resp.status == 200, resp
        assert await asyncio.to_thread(edge.stop) == 0
        async with asyncio.timeout(5):
            while True:
                msg = await phone.inbox.get()
                if getattr(msg, "method", "") == "BYE":
                    break
    assert msg.call_id == invite.call_id


async def test_a_browser_holds_and_resumes_with_a_new_offer(edge: EdgeProcess) -> None:
    """JsSIP's hold: a re-INVITE with a sendonly offer, answered recvonly by the edge's
    aiortc on the same connection; the edge stops sending (601's tone stops) and starts
    again on resume."""
    async with registered(edge, "1001", tone_hz=0) as phone:
        resp, invite = await phone.call("601")
        assert resp.status == 200, resp
        await asyncio.sleep(2.0)
        before = len(phone.heard)
        held = await phone.reinvite(invite, resp, "sendonly")
        assert held.status == 200, held
        assert re.search(r"^a=recvonly", held.body.decode(), re.M), held.body
        await asyncio.sleep(0.5)
        during_from = len(phone.heard)
        await asyncio.sleep(2.0)
        during = len(phone.heard) - during_from
        resumed = await phone.reinvite(invite, resp, "sendrecv")
        assert resumed.status == 200, resumed
        assert re.search(r"^a=sendrecv", resumed.body.decode(), re.M), resumed.body
        await asyncio.sleep(0.5)
        after_from = len(phone.heard)
        await asyncio.sleep(2.0)
        after = bytes(phone.heard[after_from:])
        assert (await phone.hang_up(invite, resp)).status == 200
    assert before > RATE  # the tone came before the hold
    assert during < RATE * 2 * 0.2, f"{during / 2 / RATE:.2f} s heard while on hold"
    assert len(after) > RATE * 2, f"{len(after) / 2 / RATE:.2f} s heard after resuming"
    assert strongest_window(after, 1000, rate=RATE) > 0.6, "601's tone did not come back"


async def _range_idle(edge: EdgeProcess, within: float = 3.0) -> set[int]:
    """The edge's UDP ports in the RTP range, once it has let them go (or after ``within``)."""
    end = time.monotonic() + within
    while True:
        held = {p for p in udp_ports_of(edge_pid(edge)) if RTP[0] <= p <= RTP[1]}
        if not held or time.monotonic() > end:
            return held
        await asyncio.sleep(0.1)


@pytest.mark.skipif(not baresip_available(), reason="baresip with opus.so not installed")
async def test_a_user_on_a_desk_phone_and_a_browser_rings_on_both(edge: EdgeProcess,
                                                                  tmp_path: Path) -> None:
    """1002 is registered on a baresip desk phone and in a browser. A call rings both (the
    browser with aiortc's offer on a port of its own): first the browser answers, the desk
    phone stops ringing and the two browsers hear each other; then the desk phone answers,
    the browser is cancelled. After each call every port of the range is free again."""
    b_sip, _, b_ctl = take_ports(3)
    where = f"127.0.0.1:{edge.sip_port}"
    desk = Baresip(tmp_path, "desk", b_sip, b_ctl, 34800, account("1002", "demo-1002", where),
                   freq=440)
    try:
        await asyncio.to_thread(desk.start)
        assert await asyncio.to_thread(desk.wait_registered, 10), desk.log()
        async with registered(edge, "1001") as a, \
                registered(edge, "1002", rtp=(20840, 20859), tone_hz=700) as b:
            # 1. the browser answers
            answering = asyncio.create_task(b.answer_next(15))
            resp, invite = await a.call("1002")
            await answering
            assert resp.status == 200, resp
            assert await asyncio.to_thread(desk.wait_event, "CALL_CLOSED", 10), desk.log()
            await asyncio.sleep(3.0)
            assert (await a.hang_up(invite, resp)).status == 200
            heard_a, heard_b = bytes(a.heard), bytes(b.heard)
            assert not await _range_idle(edge), "ports kept after the browser's call"
            # 2. the desk phone answers; the browser only rings
            desk.events.clear()
            ringing = asyncio.create_task(b.wait_request("INVITE", 15))
            calling = asyncio.create_task(a.call("1002"))
            assert await ringing is not None
            assert await asyncio.to_thread(desk.wait_event, "CALL_INCOMING", 10), desk.log()
            desk.send("accept", token="acc")
            resp2, invite2 = await calling
            assert resp2.status == 200, resp2
            cancel = await b.wait_request("CANCEL", 5)
            assert cancel is not None, "the browser was not cancelled"
            a.heard.clear()
            await asyncio.sleep(3.0)
            heard_desk = bytes(a.heard)
            assert (await a.hang_up(invite2, resp2)).status == 200
            assert not await _range_idle(edge), "ports kept after the desk phone's call"
    finally:
        await asyncio.to_thread(desk.stop)
    assert strongest_window(heard_a, 700, rate=RATE) > 0.6, "1001 did not hear the browser"
    assert strongest_window(heard_b, 1000, rate=RATE) > 0.6, "the browser did not hear 1001"
    assert strongest_window(heard_desk, 440, rate=RATE) > 0.6, "1001 did not hear the desk"


def keys_heard(info: SipRequest | None) -> str:
    """The key of a SIP INFO application/dtmf-relay (as JsSIP reads it), "" for none."""
    if info is None or (info.content_type or "").lower() != "application/dtmf-relay":
        return ""
    fields = dict(line.split("=", 1) for line in info.body.decode().splitlines() if "=" in line)
    return fields.get("Signal", "").strip()
