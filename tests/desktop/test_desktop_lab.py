"""``softphone desktop`` against a real edge, in an offscreen Qt window driven like a person
would: clicks on its buttons, text in its fields, the ringing window answered by its button.

The app (account 1001) registers to ``softphone edge``; it calls the echo (600) with file audio
and the 440 Hz tone it plays comes back (Goertzel, median over 100 ms windows); sipp (1002)
calls it, the ringing window shows the caller, Answer is clicked and the call is up at sipp;
a call to a busy user is refused with the edge's own words (its Warning); 112 on a line
without the service shows the emergency notice; the history lists every call. Screenshots of
the states (idle, ringing, in call, refused) are written next to the test's artifacts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import register, start_callee
from lab.sipp_media import write_alaw
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QPushButton

from softphone.agent.audio import AudioSpec
from softphone.desktop.phone import EMERGENCY_UNAVAILABLE, DesktopPhone
from softphone.desktop.store import AccountSettings, DesktopStore, Secrets
from softphone.desktop.window import MainWindow
from softphone.media.tone import median_tone_ratio, read_wav, tone, write_wav
from softphone.sip.registration import RegState
from softphone.sip.transport import ListenSpec

pytestmark = [pytest.mark.lab]

EDGE_RTP = (23400, 23599)
APP_RTP = (23600, 23799)
TONE_HZ = 440.0
DOCS = Path(__file__).resolve().parents[2] / "docs"


async def until(what: Callable[[], object], timeout: float, why: str) -> None:
    end = time.monotonic() + timeout
    while not what():
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout} s: {why}")
        await asyncio.sleep(0.05)


def click(button: QPushButton) -> None:
    assert button.isVisible() and button.isEnabled(), button.objectName()
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)


def shot(window: Any, path: Path) -> None:
    """The widget as drawn now (grab() paints it: no event processing, which would re-enter
    the running asyncio task under qasync)."""
    assert window.grab().save(str(path)), path


def make_app(tmp: Path, sip: int, audio: AudioSpec, **account: Any) -> MainWindow:
    data = tmp / "desktop"
    store = DesktopStore(data)
    store.acknowledge_emergency()
    settings = AccountSettings(server=f"127.0.0.1:{sip}", user="1001", **account)
    store.save_account(settings)
    secrets = Secrets(data, use_keyring=False)
    secrets.set("1001", "demo-1001")
    phone = DesktopPhone(store, settings, secrets.get("1001"), audio=audio,
                         listen=[ListenSpec("udp", "127.0.0.1", 0)], rtp_ports=APP_RTP,
                         quality_interval_s=1.0)
    window = MainWindow(phone, secrets, sound="No sound card (test): calls use file audio.")
    window.resize(760, 820)
    window.show()
    return window


async def registered(window: MainWindow) -> None:
    phone = window.phone
    await phone.start()
    await until(lambda: phone.registration is not None
                and phone.registration.state is RegState.REGISTERED, 10, phone.reg_text)
    await until(lambda: "registered as 1001" in window.reg_label.text(), 2, "label")


class DtmfCapture:
    """tshark on lo: the RFC 4733 event ids our RTP port sends (bounded by -a duration)."""

    def __init__(self, proc: subprocess.Popen[bytes], out: Path) -> None:
        self.proc = proc
        self.out = out

    def read(self) -> str:
        return self.out.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def dtmf_capture(tmp: Path, port: int, pt: int) -> DtmfCapture:
    out, err = tmp / "dtmf.txt", tmp / "dtmf.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            ["tshark", "-i", "lo", "-f", f"udp src port {port}", "-d", f"udp.port=={port},rtp",
             "-o", f"rtpevent.event_payload_type_value:{pt}", "-a", "duration:20", "-l",
             "-Y", "rtpevent", "-T", "fields", "-e", "rtpevent.event_id"],
            stdout=o, stderr=e, stdin=subprocess.DEVNULL)
    capture = DtmfCapture(proc, out)
    end = time.monotonic() + 10
    while "Capturing on" not in err.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > end:
            capture.stop()
            raise AssertionError(f"tshark did not start: {err.read_text()[-500:]}")
        await asyncio.sleep(0.05)
    return capture


def history_rows(window: MainWindow) -> list[list[str]]:
    t = window.history
    return [[(t.item(r, c).text() if t.item(r, c) else "") for c in range(t.columnCount())]
            for r in range(t.rowCount())]


@pytest.mark.timeout(120)
def test_register_call_the_echo_with_file_audio_and_the_tone_comes_back(
        qloop: asyncio.AbstractEventLoop, qtbot: Any, lab: Any, tmp_path: Path) -> None:
    (sip,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    play, out = tmp_path / "in.wav", tmp_path / "out.wav"
    write_wav(play, tone(TONE_HZ, 8000, 8000 * 3), 8000)
    window = make_app(tmp_path, sip, AudioSpec.files(str(play), str(out)))
    qtbot.addWidget(window)
    recorded: list[tuple[bytes, int]] = []

    async def scenario() -> None:
        await registered(window)
        shot(window, tmp_path / "desktop-idle.png")
        # R-EMERG-6: what the edge's 200 to REGISTER says (its Warning) is shown
        assert "The server says: Emergency calls are not available from this line" in \
            window.reg_label.text(), window.reg_label.text()
        assert window.call_state.text() == "idle"
        window.number.setText("600")
        click(window.call_button)
        await until(lambda: window.call_state.text().startswith("in call with 600"), 10,
                    window.call_state.text() + window.refusal.text())
        await until(lambda: window.mos.text().startswith("MOS"), 5, "the quality indicator")
        # R-REC-2: the notice goes to the other party first, then REC lights up
        assert not window.rec.isVisible()
        assert "recorded after this notice" in window.rec_notice.text()
        await until(lambda: window.rec.isVisible(), 30, "REC after the recording notice")
        assert "the other party was told" in window.rec_notice.text()
        await asyncio.sleep(3.0)
        shot(window, tmp_path / "desktop-in-call.png")
        if os.environ.get("SOFTPHONE_UPDATE_DOCS"):  # the README's picture, on request only:
            shot(window, DOCS / "desktop-in-call.png")  # a test run leaves the tree as it was
        click(window.hangup_button)
        await until(lambda: window.call_state.text() == "idle", 10, "the call to end")
        await until(lambda: window.history.rowCount() == 1, 5, "the history row")
        recorded.append(read_wav(out))  # the next call writes out.wav again
        # calling back from the history: Return on the row (or a double-click) dials 600
        window.number.clear()
        table = window.history
        table.setFocus()
        table.setCurrentCell(0, 2)
        QTest.keyClick(table, Qt.Key.Key_Return)
        await until(lambda: window.call_state.text().startswith("in call with 600"), 10,
                    f"the call back: {window.call_state.text()!r} {window.number.text()!r} "
                    f"{window.refusal.text()!r}")
        # mute, hold (a re-INVITE the edge answers), DTMF from the dial pad
        cur = window.phone.current
        assert cur is not None
        await until(lambda: cur.audio is not None, 5, "the call's audio")
        assert cur.audio is not None
        click(window.mute_button)
        assert cur.audio.muted and "(muted)" in window.call_state.text()
        click(window.mute_button)
        assert not cur.audio.muted
        click(window.hold_button)
        await until(lambda: "(on hold)" in window.call_state.text(), 10, "on hold")
        neg = cur.call.negotiated
        assert neg is not None and neg.direction == "sendonly", neg
        assert not cur.audio.session.sending
        click(window.hold_button)
        await until(lambda: "(on hold)" not in window.call_state.text(), 10, "resumed")
        neg = cur.call.negotiated
        assert neg is not None and neg.direction == "sendrecv" and cur.audio.session.sending
        if shutil.which("tshark") is not None:  # the digit on the wire, as RFC 4733 events
            assert cur.call.rtp_port is not None and neg.telephone_event_pt is not None
            capture = await dtmf_capture(tmp_path, cur.call.rtp_port,
                                         neg.telephone_event_pt)
            try:
                click(window.pad_buttons["5"])
                await until(lambda: "5" in capture.read(), 8, "RFC 4733 events for 5")
            finally:
                capture.stop()
        assert window.number.text() == "600"  # in a call the pad sends, it does not type
        click(window.hangup_button)
        await until(lambda: window.history.rowCount() == 2, 10, "the second row")
        await window.phone.stop()

    try:
        qloop.run_until_complete(scenario())
    finally:
        qloop.run_until_complete(window.phone.stop())  # also when the scenario failed
        window.close()
        edge.stop()
    pcm, rate = recorded[0]
    ratio = median_tone_ratio(pcm[rate:], rate, TONE_HZ)  # after the echo's path filled up
    print(f"echo tone ratio {ratio:.3f}, {len(pcm) / 2 / rate:.1f} s recorded")
    assert ratio > 0.8
    back, first = history_rows(window)
    assert first[2] == "600" and first[3] == "answered" and "MOS" in first[4], first
    assert back[2] == "600" and back[3] == "answered", back
    assert [c["callee"] for c in edge.calls()] == ["600", "600"]


@pytest.mark.timeout(120)
def test_an_incoming_call_rings_and_is_answered_then_busy_and_emergency_refusals_in_words(
        qloop: asyncio.AbstractEventLoop, qtbot: Any, sipp: Any, lab: Any,
        tmp_path: Path) -> None:
    sip, uac, uas, reg, talker = lab.take_ports(5)
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    target = f"127.0.0.1:{sip}"
    window = make_app(tmp_path, sip, AudioSpec("null"))
    qtbot.addWidget(window)
    shots = tmp_path

    async def scenario() -> None:
        await registered(window)
        # sipp 1002 calls 1001: the ringing window, answered by its button
        caller = sipp.start("caller", [
            target, "-sf", str(lab.scenarios / "edge_uac_calleebye.xml"), "-s", "1001",
            "-i", "127.0.0.1", "-p", str(uac), "-au", "1002", "-ap", "demo-1002",
            "-set", "user", "1002", "-auth_uri", f"1001@{target}", "-m", "1",
            "-timeout_error"], wall=60, trace_msg=True)
        await until(lambda: window.ringing is not None and window.ringing.isVisible(), 10,
                    "the ringing window")
        assert "1002" in window.ringing.findChild(type(window.call_state), "ringingPeer").text()
        assert window.call_state.text().startswith("ringing")
        shot(window.ringing, shots / "desktop-ringing-window.png")
        shot(window, shots / "desktop-ringing.png")
        click(window.ringing.answer_button)
        await until(lambda: window.call_state.text().startswith("in call with"), 5,
                    window.call_state.text())
        await asyncio.sleep(1.0)
        click(window.hangup_button)
        assert await caller.wait_async(15) == 0, caller.errors()
        assert "SIP/2.0 200 OK" in caller.messages()
        await until(lambda: window.call_state.text() == "idle", 5, "idle after the call")
        # a second call from 1002, rejected from the ringing window: 486 reaches the caller
        rejected = sipp.start("rejected", [
            target, "-sf", str(lab.scenarios / "edge_uac_busy.xml"), "-s", "1001",
            "-i", "127.0.0.1", "-p", str(uac), "-au", "1002", "-ap", "demo-1002",
            "-set", "user", "1002", "-auth_uri", f"1001@{target}", "-m", "1",
            "-timeout_error"], wall=30)
        await until(lambda: window.ringing is not None and window.ringing.isVisible(), 10,
                    "the ringing window again")
        click(window.ringing.reject_button)
        assert await rejected.wait_async(15) == 0, rejected.errors()
        await until(lambda: window.call_state.text() == "idle" and window.ringing is None, 5,
                    "idle after the rejection")

        # 1003 is on a call with 1004: the edge refuses our call to 1003 with its Warning
        await until(lambda: edge.status().get("live_calls") == 0, 10, "the edge idle")
        write_alaw(tmp_path / "uac.alaw", 1000, 1)  # what 1004 says (sipp's rtp_stream)
        start_callee(sipp, lab, "callee", "edge_uas_answer.xml", uas,
                     extra=["-m", "1"])
        register(sipp, lab, target, "1003", uas, reg)
        talk = sipp.start("talk", [
            target, "-sf", str(lab.scenarios / "edge_uac_talk.xml"), "-s", "1003",
            "-i", "127.0.0.1", "-p", str(talker), "-au", "1004", "-ap", "demo-1004",
            "-set", "user", "1004", "-auth_uri", f"1003@{target}", "-m", "1", "-d", "8000",
            "-timeout_error"], wall=40)
        await until(lambda: edge.status().get("live_calls", 0) >= 1, 10, "1004 -> 1003 up")
        window.number.setText("1003")
        click(window.call_button)
        await until(lambda: window.refusal.text() != "", 10, "the refusal")
        shot(window, shots / "desktop-refused.png")
        busy_text = window.refusal.text()
        # 112 on a line without the service: refused here, with the notice
        window.number.setText("112")
        click(window.call_button)
        await until(lambda: "emergency" in window.refusal.text().lower(), 5, "the notice")
        emergency_text = window.refusal.text()
        shot(window, shots / "desktop-emergency.png")
        assert await talk.wait_async(30) == 0, talk.errors()
        await window.phone.stop()
        return busy_text, emergency_text

    try:
        busy_text, emergency_text = qloop.run_until_complete(scenario())
    finally:
        qloop.run_until_complete(window.phone.stop())  # also when the scenario failed
        window.close()
        edge.stop()
    print(f"busy: {busy_text!r}\nemergency: {emergency_text!r}\nhistory: {history_rows(window)}")
    assert "on another call" in busy_text
    assert EMERGENCY_UNAVAILABLE in emergency_text.lower()
    assert EMERGENCY_UNAVAILABLE in window.banner.text().lower()
    rows = history_rows(window)
    assert [(r[1], r[2], r[3]) for r in rows] == [("→", "112", "refused"),
                                                  ("→", "1003", "refused"),
                                                  ("←", "1002", "rejected"),
                                                  ("←", "1002", "answered")], rows
    assert "on another call" in rows[1][4] and "not available" in rows[0][4]


@pytest.mark.timeout(90)
def test_blind_transfer_refers_the_peer_and_hangs_up_when_the_new_call_is_answered(
        qloop: asyncio.AbstractEventLoop, qtbot: Any, sipp: Any, lab: Any,
        tmp_path: Path) -> None:
    sip, peer_port = lab.take_ports(2)
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    window = make_app(tmp_path, sip, AudioSpec("null"))
    qtbot.addWidget(window)

    async def scenario() -> None:
        await registered(window)
        peer = sipp.start("xfer", ["-sf", str(lab.scenarios / "desktop_uas_refer.xml"),
                                   "-i", "127.0.0.1", "-p", str(peer_port), "-mi", "127.0.0.1",
                                   "-m", "1"],
                          wall=40, trace_msg=True)
        lab.wait_udp_listening(peer_port)
        # a call straight to the peer (a SIP address), then Transfer to 1003
        window.number.setText(f"sip:xfer@127.0.0.1:{peer_port}")
        click(window.call_button)
        await until(lambda: window.call_state.text().startswith("in call with sip:xfer"), 10,
                    window.call_state.text() + window.refusal.text())
        window.number.setText("1003")
        click(window.transfer_button)
        await until(lambda: window.call_state.text() == "idle", 15,
                    window.call_state.text() + window.refusal.text())
        assert await peer.wait_async(15) == 0, peer.errors()
        messages = peer.messages()
        assert f"Refer-To: <sip:1003@127.0.0.1:{sip}>" in messages, messages[-3000:]
        assert "Referred-By: <sip:1001@" in messages
        await window.phone.stop()

    try:
        qloop.run_until_complete(scenario())
    finally:
        qloop.run_until_complete(window.phone.stop())
        window.close()
        edge.stop()
    assert window.refusal.text() == ""
    (row,) = history_rows(window)
    assert row[3] == "answered", row
    (record,) = window.phone.store.calls()
    assert record.reason == "transferred to 1003", record
