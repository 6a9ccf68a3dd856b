"""The desktop window's sound devices through PortAudio (sounddevice) on ALSA devices the test
defines itself (the agent's sound test's ``.asoundrc`` in a temporary HOME: an ``asym`` device
of two ``file`` plugins over ``null``, capture from in.raw, playback to out.raw, and a ``null``
one). PortAudio reads the ALSA configuration when it starts, so the test restarts it after
pointing HOME (or ALSA_CONFIG_PATH) elsewhere, and again afterwards.

Checked: the input and output lists show the test devices; the microphone and the speaker chosen
in them (two devices: capture from in.raw, playback to speaker.raw) are stored in the settings,
shown again by a new window on the same store, and used by the next call to the edge's echo
(600): the 440 Hz tone written to in.raw comes back in speaker.raw (Goertzel, median over
100 ms windows) and both level meters moved above zero during the call (a screenshot of the
window then is left with the test's artifacts).
``softphone desktop --audio device:NAME`` with a NAME that is no device exits 2 naming those
there are. With an ALSA configuration whose only device cannot be opened (no sound card), the
window says so, its lists offer only "none", and a call to the echo still works with null audio.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from desktop.test_desktop_lab import click, history_rows, make_app, registered, shot, until
from lab.edge_proc import EdgeProcess
from lab.test_agent_sound import DEVICE, RATE, TONE_HZ, alsa_home

from softphone.agent.audio import AudioSpec
from softphone.desktop.phone import DesktopPhone
from softphone.desktop.sound import NONE_CHOICE
from softphone.desktop.store import DesktopStore, Secrets
from softphone.desktop.window import MainWindow
from softphone.media.tone import median_tone_ratio

pytestmark = [pytest.mark.lab]

EDGE_RTP = (23800, 23899)
MIC, SPEAKER = "softphone_test_mic", "softphone_test_speaker"


def restart_portaudio() -> None:
    """PortAudio (and ALSA's configuration with it) read again from the environment now."""
    sd = pytest.importorskip("sounddevice", reason="sounddevice/PortAudio is not available")
    sd._terminate()
    sd._initialize()


@pytest.fixture
def alsa_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set HOME / ALSA_CONFIG_PATH through the returned monkeypatch, then restart PortAudio;
    afterwards the environment is restored and PortAudio restarted on it."""
    try:
        import sounddevice  # noqa: F401
    except OSError as exc:
        pytest.skip(f"PortAudio cannot be loaded here: {exc}")
    yield monkeypatch
    monkeypatch.undo()
    restart_portaudio()


def items(combo: Any) -> list[str]:
    return [str(combo.itemData(i)) for i in range(combo.count())]


@pytest.mark.timeout(120)
def test_chosen_device_is_stored_and_the_next_call_to_the_echo_uses_it_with_moving_meters(
        qloop: asyncio.AbstractEventLoop, qtbot: Any, lab: Any, tmp_path: Path,
        alsa_env: pytest.MonkeyPatch) -> None:
    env, inp, _out = alsa_home(tmp_path)
    out = tmp_path / "speaker.raw"
    with (Path(env["HOME"]) / ".asoundrc").open("a") as rc:  # a microphone and a speaker apart
        rc.write(f"""
pcm.{MIC} {{
    type asym
    capture.pcm {{
        type file
        slave.pcm "null"
        file "/dev/null"
        infile "{inp}"
        format "raw"
    }}
    playback.pcm "null"
}}
pcm.{SPEAKER} {{
    type asym
    playback.pcm {{
        type file
        slave.pcm "null"
        file "{out}"
        format "raw"
    }}
    capture.pcm "null"
}}
""")
    alsa_env.setenv("HOME", env["HOME"])
    restart_portaudio()
    # a NAME that is no device: exit 2, the devices there are named, no window
    wrong = subprocess.run([sys.executable, "-m", "softphone", "desktop", "--data-dir",
                            str(tmp_path / "cli"), "--audio", "device:nosuch"],
                           env={**env, "QT_QPA_PLATFORM": "offscreen"}, capture_output=True,
                           text=True, timeout=30, check=False)
    assert wrong.returncode == 2 and DEVICE in wrong.stderr and "nosuch" in wrong.stderr, \
        (wrong.returncode, wrong.stderr)
    assert not (tmp_path / "cli" / "desktop.db").exists()

    (sip,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    window = make_app(tmp_path, sip, AudioSpec("null"))
    qtbot.addWidget(window)
    for combo in (window.input_choice, window.output_choice):
        assert combo.isEnabled() and combo.itemText(0) == NONE_CHOICE
        assert {DEVICE, MIC, SPEAKER, "softphone_test_null"} <= set(items(combo)), items(combo)
    assert window.phone.input_device is None  # nothing chosen yet: the --audio setting
    window.input_choice.setCurrentIndex(window.input_choice.findData(MIC))
    window.output_choice.setCurrentIndex(window.output_choice.findData(SPEAKER))
    store = window.phone.store
    assert store.sound_devices() == (MIC, SPEAKER)
    # remembered: a new window on the same settings shows the choice and uses it
    again = MainWindow(DesktopPhone(store, window.phone.account, "", audio=AudioSpec("null")),
                       Secrets(tmp_path / "desktop", use_keyring=False), sound="")
    qtbot.addWidget(again)
    assert (again.input_choice.currentData(), again.output_choice.currentData()) == (MIC, SPEAKER)
    assert again.phone.input_device is not None and again.phone.input_device.name == MIC
    assert again.phone.output_device is not None and again.phone.output_device.name == SPEAKER
    again.close()

    seen: dict[str, int] = {"in": 0, "out": 0}
    window.input_meter.valueChanged.connect(lambda v: seen.__setitem__("in", max(seen["in"], v)))
    window.output_meter.valueChanged.connect(
        lambda v: seen.__setitem__("out", max(seen["out"], v)))
    timing: dict[str, float] = {}

    async def scenario() -> None:
        await registered(window)
        window.number.setText("600")
        click(window.call_button)
        await until(lambda: window.call_state.text().startswith("in call with 600"), 10,
                    window.call_state.text() + window.refusal.text())
        cur = window.phone.current
        assert cur is not None
        await until(lambda: cur.audio is not None, 5, "the call's audio")
        assert cur.audio is not None and cur.audio.device is not None, "no device audio"
        start = asyncio.get_running_loop().time()
        await asyncio.sleep(5.0)
        shot(window, tmp_path / "desktop-sound-in-call.png")  # the meters during the call
        assert cur.audio.device is not None and not cur.audio.device.error
        click(window.hangup_button)
        await until(lambda: window.call_state.text() == "idle", 10, "the call to end")
        timing["call_s"] = asyncio.get_running_loop().time() - start
        await until(lambda: window.input_meter.value() == 0, 2, "the meters back to zero")
        await window.phone.stop()

    try:
        qloop.run_until_complete(scenario())
    finally:
        qloop.run_until_complete(window.phone.stop())
        window.close()
        edge.stop()
    pcm = out.read_bytes()
    ratio = median_tone_ratio(pcm[2 * RATE:], RATE, TONE_HZ)  # past the echo's first second
    print(json.dumps({"out_raw_s": round(len(pcm) / 2 / RATE, 2),
                      "call_s": round(timing["call_s"], 2), "tone_ratio": round(ratio, 3),
                      "meter_max": seen}))
    assert ratio > 0.8, ratio
    assert seen["in"] > 0 and seen["out"] > 0, seen
    assert history_rows(window)[0][3] == "answered"


@pytest.mark.timeout(60)
def test_without_a_sound_card_the_window_says_so_and_a_call_works_with_null_audio(
        qloop: asyncio.AbstractEventLoop, qtbot: Any, lab: Any, tmp_path: Path,
        alsa_env: pytest.MonkeyPatch) -> None:
    nocard = tmp_path / "nocard.conf"
    nocard.write_text("pcm.nocard {\n    type hw\n    card 63\n}\n")
    alsa_env.setenv("ALSA_CONFIG_PATH", str(nocard))
    restart_portaudio()
    (sip,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    store = DesktopStore(tmp_path / "desktop")
    store.save_sound_devices(DEVICE, DEVICE)  # chosen on a day the device was there
    store.close()
    window = make_app(tmp_path, sip, AudioSpec("null"))
    qtbot.addWidget(window)
    for combo in (window.input_choice, window.output_choice):
        assert items(combo) == [""] and combo.itemText(0) == NONE_CHOICE
        assert not combo.isEnabled()
    assert "No sound card: PortAudio found no device" in window.sound_note.text(), \
        window.sound_note.text()
    assert window.phone.input_device is None and window.phone.output_device is None

    async def scenario() -> None:
        await registered(window)
        window.number.setText("600")
        click(window.call_button)
        await until(lambda: window.call_state.text().startswith("in call with 600"), 10,
                    window.call_state.text() + window.refusal.text())
        cur = window.phone.current
        assert cur is not None
        await until(lambda: cur.audio is not None, 5, "the call's audio")
        assert cur.audio is not None and cur.audio.device is None
        await asyncio.sleep(1.5)
        assert cur.audio.session.stats.packets_received > 0  # the echo's RTP came back
        click(window.hangup_button)
        await until(lambda: window.history.rowCount() == 1, 10, "the history row")
        await window.phone.stop()

    try:
        qloop.run_until_complete(scenario())
    finally:
        qloop.run_until_complete(window.phone.stop())
        window.close()
        edge.stop()
    assert history_rows(window)[0][3] == "answered"
    assert window.input_meter.value() == 0 and window.output_meter.value() == 0
