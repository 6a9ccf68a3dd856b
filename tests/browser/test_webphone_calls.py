"""Calls from and to the web phone in a real browser: audio on the audio (the page's
``remoteTone()``, an AnalyserNode on the remote stream; a desk phone's decoded WAV with
Goertzel), refusals in words.

The edge terminates the browser's ICE and DTLS-SRTP with aiortc (``softphone.media.webrtc``),
its candidate on a port of the RTP range.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from browser.chromium import TONE_HZ, browser
from browser.conftest import RTP, WebEdge, registered_page
from browser.peers import DESK_HZ, DESK_RTP, desk_phone
from lab.audio import best_tone_ratio
from lab.netutil import edge_pid, udp_ports_of

pytestmark = [pytest.mark.lab, pytest.mark.timeout(60)]



def hears(page: Any, hz: float, within_s: float = 10.0, tolerance: float = 30.0) -> float:
    """Poll the page's remoteTone() until it is ``hz`` (within ``tolerance``) three times in
    a row; the last reading (0 when nothing was heard)."""
    end = time.monotonic() + within_s
    streak, last = 0, 0.0
    while time.monotonic() < end and streak < 3:
        last = float(page.evaluate("phone.remoteTone()"))
        streak = streak + 1 if abs(last - hz) < tolerance else 0
        time.sleep(0.2)
    return last


def dial(page: Any, number: str) -> None:
    """Type ``number`` and press Call."""
    page.fill("#number", number)
    page.click("#call")


def wait_call(page: Any, *states: str, timeout_ms: int = 15_000) -> None:
    """Until the page's call is in one of ``states``, or failed (said with the reason)."""
    page.wait_for_function(f"{list(states) + ['failed']!r}.includes(phone.state().call)",
                           timeout=timeout_ms)
    state = page.evaluate("phone.state().call")
    assert state in states, page.evaluate("phone.lastReason()")


def test_the_page_calls_the_echo_and_hears_itself(web_edge: WebEdge, tmp_path: Path) -> None:
    with browser(tmp_path) as b:
        page = registered_page(b, web_edge, "1001")
        dial(page, "600")
        wait_call(page, "in-call")
        heard = hears(page, TONE_HZ)
        assert abs(heard - TONE_HZ) < 30, f"the echo sent back {heard:.0f} Hz"
        assert page.is_visible("#call-timer")
        # the edge's ICE candidates, as the browser got them: host, loopback, in the range
        sdp = page.evaluate("phone.remoteSdp()")
        found = [line.split() for line in sdp.splitlines() if line.startswith("a=candidate:")]
        assert found, sdp
        for c in found:
            assert (c[4], c[7]) == ("127.0.0.1", "host") and RTP[0] <= int(c[5]) <= RTP[1], c
        assert "a=fingerprint:" in sdp and "UDP/TLS/RTP/SAVPF" in sdp, sdp
        shot = tmp_path / "webphone-in-call.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        wanted = os.environ.get("SOFTPHONE_SCREENSHOT")
        if wanted:  # SOFTPHONE_SCREENSHOT=docs/webphone.png regenerates the README's picture
            shutil.copyfile(shot, wanted)
        # and the edge process holds no UDP socket outside the range but its SIP port
        held = udp_ports_of(edge_pid(web_edge.proc))
        assert not {p for p in held if not RTP[0] <= p <= RTP[1] and p != web_edge.sip_port}, held
        page.keyboard.press("Escape")
        page.wait_for_function("phone.state().call === 'ended'")
    (record,) = web_edge.proc.wait_calls(1)
    assert (record["caller"], record["callee"], record["status"]) == ("1001", "600", 200)


def test_the_page_calls_a_desk_phone_tone_both_ways(web_edge: WebEdge, tmp_path: Path) -> None:
    with desk_phone(tmp_path, web_edge, auto_answer=True) as desk, browser(tmp_path) as b:
        page = registered_page(b, web_edge, "1001")
        page.fill("#number", "1002")
        page.keyboard.press("Enter")
        wait_call(page, "in-call")
        heard = hears(page, DESK_HZ)
        assert abs(heard - DESK_HZ) < 30, f"the page heard {heard:.0f} Hz from the desk phone"
        time.sleep(2)
        page.click("#hangup")
        assert desk.wait_event("CALL_CLOSED", 10), desk.log()
    desk.stop()  # closes its recordings
    assert best_tone_ratio(desk.decoded_wavs(), TONE_HZ) > 0.5, desk.decoded_wavs()


def test_a_desk_phone_calls_the_page_which_answers(web_edge: WebEdge, tmp_path: Path) -> None:
    with desk_phone(tmp_path, web_edge) as desk, browser(tmp_path) as b:
        page = registered_page(b, web_edge, "1001")
        desk.send("dial", f"sip:1001@127.0.0.1:{web_edge.sip_port}", token="dial")
        page.wait_for_function("phone.state().call === 'incoming'", timeout=10_000)
        assert "Desk 1002" in page.inner_text("#incoming")  # the caller's name from the edge
        page.keyboard.press("Enter")  # answers
        wait_call(page, "in-call")
        assert desk.wait_event("CALL_ESTABLISHED", 10), desk.log()
        heard = hears(page, DESK_HZ)
        assert abs(heard - DESK_HZ) < 30, f"the page heard {heard:.0f} Hz from the desk phone"
        # keys pressed on the desk phone (RFC 4733) show on the page (SIP INFO from the edge)
        assert page.locator("#keys-heard").is_hidden()
        for key in "4#":
            desk.send("sndcode", key, token=f"key{key}")
            time.sleep(0.5)
        page.wait_for_function("phone.state().keysHeard === '4#'", timeout=5_000)
        assert page.inner_text("#keys-heard") == "keys: 4#"
        time.sleep(1)
        desk.send("hangup", token="hup")
        page.wait_for_function("phone.state().call === 'ended'")
    desk.stop()
    assert best_tone_ratio(desk.decoded_wavs(), TONE_HZ) > 0.5, desk.decoded_wavs()


def test_a_call_from_a_user_already_in_a_call_is_refused_in_words(web_edge: WebEdge,
                                                                  tmp_path: Path) -> None:
    """1001 is in a call on its desk phone (to 1002's); the page, also 1001, calls 1003:
    one call per user (R-CALLS-1), refused with the guard's reason, shown as the edge said
    it (the status and the Warning's text). (Not 600: calls to the edge's own numbers are
    counted apart, ``[extensions] calls_per_user``.)"""
    with desk_phone(tmp_path, web_edge, user="1002", auto_answer=True) as callee, \
            desk_phone(tmp_path, web_edge, user="1001", rtp=DESK_RTP + 50) as desk, \
            browser(tmp_path) as b:
        desk.send("dial", f"sip:1002@127.0.0.1:{web_edge.sip_port}", token="dial")
        assert desk.wait_event("CALL_ESTABLISHED", 10), desk.log()
        page = registered_page(b, web_edge, "1001")
        dial(page, "1003")
        page.wait_for_function("phone.state().call === 'failed'", timeout=15_000)
        reason = page.evaluate("phone.lastReason()")
        assert reason.startswith("Call failed: the call was refused (403 "), reason
        # the guard's words (configs/policy.toml call-limit), from the edge's Warning
        assert "You already have a call in progress." in reason, reason
        assert page.inner_text("#reason") == reason
        desk.send("hangup", token="hup")
        assert desk.wait_event("CALL_CLOSED", 10)
        assert callee.wait_event("CALL_CLOSED", 10)
        assert b.errors == [], b.errors


def test_112_from_a_line_without_the_service_says_so(web_edge: WebEdge, tmp_path: Path) -> None:
    with browser(tmp_path, tone_hz=TONE_HZ) as b:
        page = registered_page(b, web_edge, "1002")
        dial(page, "112")
        # the spoken notice comes as early media, then the refusal with the notice's text
        wait_call(page, "ringing")
        page.wait_for_function("phone.remoteTone() > 0", timeout=15_000)
        page.wait_for_function("phone.state().call === 'failed'", timeout=30_000)
        reason = page.evaluate("phone.lastReason()")
        assert "(403 " in reason, reason
        assert "Emergency calls are not available from this line" in reason, reason
        assert page.inner_text("#emergency") == (
            "Emergency calls are not available on this line: use a mobile or a landline")


def test_rec_shows_while_recorded_and_the_pad_objects(web_edge: WebEdge, tmp_path: Path) -> None:
    """1001 calls 1003, whose calls are recorded: after the notice the page shows REC (the
    edge's INFO); 9 on the page's pad (SIP INFO dtmf-relay) objects, and REC goes off."""
    with desk_phone(tmp_path, web_edge, user="1003", auto_answer=True), \
            browser(tmp_path) as b:
        page = registered_page(b, web_edge, "1001")
        dial(page, "1003")
        wait_call(page, "in-call")
        assert not page.is_visible("#rec")
        page.wait_for_function("phone.state().recording === true", timeout=40_000)
        assert page.is_visible("#rec")
        page.click('#pad button[data-key="9"]')
        page.wait_for_function("phone.state().recording === false", timeout=10_000)
        assert not page.is_visible("#rec")
        assert list((web_edge.proc.data_dir / "recordings").iterdir()) == []
        page.keyboard.press("Escape")
        page.wait_for_function("phone.state().call === 'ended'")


def test_hold_and_resume_from_the_page(web_edge: WebEdge, tmp_path: Path) -> None:
    """JsSIP's hold (a re-INVITE, sendonly) is renegotiated by the edge's aiortc: its answer
    is recvonly, and sendrecv again on resume, when 601's tone comes back."""
    with browser(tmp_path) as b:
        page = registered_page(b, web_edge, "1001")
        dial(page, "601")
        wait_call(page, "in-call")
        assert abs(hears(page, 1000) - 1000) < 30, "601's tone before the hold"
        page.click("#hold")
        page.wait_for_function("phone.state().held === true", timeout=10_000)
        # the edge answered the new offer, on the wire as the browser got it: it now only
        # receives (a browser on hold does not play what comes in: the audio cannot tell)
        page.wait_for_function("/^a=recvonly/m.test(phone.remoteSdp())", timeout=5_000)
        page.click("#hold")
        page.wait_for_function("phone.state().held === false", timeout=10_000)
        page.wait_for_function("/^a=sendrecv/m.test(phone.remoteSdp())", timeout=5_000)
        assert abs(hears(page, 1000) - 1000) < 30, "601's tone after resuming"
        page.keyboard.press("Escape")
        page.wait_for_function("phone.state().call === 'ended'")
        assert b.errors == [], b.errors


def test_mute_silences_what_the_other_end_hears(web_edge: WebEdge, tmp_path: Path) -> None:
    """Muted, the page sends silence: the echo (600) brings back nothing; unmuted, the tone."""
    with browser(tmp_path) as b:
        page = registered_page(b, web_edge, "1001")
        dial(page, "600")
        wait_call(page, "in-call")
        assert abs(hears(page, TONE_HZ) - TONE_HZ) < 30
        page.click("#mute")
        page.wait_for_function("phone.state().muted === true", timeout=5_000)
        page.wait_for_function("phone.remoteTone() === 0", timeout=5_000)
        page.click("#mute")
        page.wait_for_function("phone.state().muted === false", timeout=5_000)
        assert abs(hears(page, TONE_HZ) - TONE_HZ) < 30, "the tone did not come back"
        page.keyboard.press("Escape")
        page.wait_for_function("phone.state().call === 'ended'")
