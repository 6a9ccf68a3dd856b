"""``softphone agent --audio device:NAME`` through PortAudio (sounddevice) on ALSA devices the
test defines itself: a ``.asoundrc`` in a temporary HOME with an ``asym`` device of two
``file`` plugins over ``null`` (capture read from in.raw; playback, and only playback, written
to out.raw: a single ``file`` plugin would write what it captures there too) and a ``null``
one. Neither paces in real time, so the agent's own 20 ms schedule is what is measured.

Checked: ``--list-devices`` lists both; a call to the edge's echo (600), dialled over MQTT
with the file device as microphone and speaker, is established and hung up, and the 440 Hz
tone written to in.raw comes back in out.raw (Goertzel, median over 100 ms windows) at real
time (out.raw holds about as many seconds as the call lasted, not the megabytes an unpaced
loop would write); a NAME that is not a device exits 2 naming those there are. With an ALSA
configuration whose only device cannot be opened (no sound card) the agent says so, runs
with null audio and publishes why in ``state``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lab.agent_mqtt import AgentProcess, Watcher
from lab.edge_proc import EdgeProcess
from lab.mosquitto import MOSQUITTO, Mosquitto
from lab.test_agent_mqtt import AGENT_ID, check_schemas, dial_600, in_order, write_config

from softphone.media.tone import median_tone_ratio, tone

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed "
                                 "(Debian package mosquitto; `make system-deps` installs it)")]

EDGE_RTP = (23500, 23599)
RATE = 48000  # the agent opens devices at 48 kHz
TONE_HZ = 440.0
DEVICE = "softphone_test_file"


def alsa_home(tmp: Path) -> tuple[dict[str, str], Path, Path]:
    """A HOME whose .asoundrc defines the file device and a null one; its environment."""
    home = tmp / "home"
    home.mkdir()
    inp, out = tmp / "in.raw", tmp / "out.raw"
    inp.write_bytes(tone(TONE_HZ, RATE, RATE * 40))
    (home / ".asoundrc").write_text(f"""
pcm.{DEVICE} {{
    type asym
    playback.pcm {{
        type file
        slave.pcm "null"
        file "{out}"
        format "raw"
    }}
    capture.pcm {{
        type file
        slave.pcm "null"
        file "/dev/null"
        infile "{inp}"
        format "raw"
    }}
}}
pcm.softphone_test_null {{
    type null
}}
""")
    return {**os.environ, "HOME": str(home)}, inp, out


def list_devices(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "softphone", "agent", "--list-devices"],
                          env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.timeout(120)
async def test_device_audio_listed_and_a_call_to_the_echo_brings_the_tone_back(
        tmp_path: Path, lab: Any) -> None:
    env, _inp, out = alsa_home(tmp_path)
    listed = list_devices(env)
    assert listed.returncode == 0, listed.stderr
    if "PortAudio is not available" in listed.stdout:
        pytest.skip(f"PortAudio cannot be loaded here: {listed.stdout.strip()}")
    assert DEVICE in listed.stdout and "softphone_test_null" in listed.stdout, listed.stdout
    # a name that is no device: exit 2, the devices there are named, nothing started
    wrong = subprocess.run([sys.executable, "-m", "softphone", "agent", "--config",
                            str(write_config(tmp_path, 1, 1)), "--audio", "device:nosuch"],
                           env=env, capture_output=True, text=True, timeout=30, check=False)
    assert wrong.returncode == 2 and DEVICE in wrong.stderr, (wrong.returncode, wrong.stderr)
    assert "nosuch" in wrong.stderr, wrong.stderr

    sip, mqtt_port = lab.take_ports(2)
    broker = Mosquitto(tmp_path / "mq", mqtt_port).start()
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    agent = AgentProcess(write_config(tmp_path, sip, mqtt_port), f"device:{DEVICE}", env=env)
    watcher = Watcher(mqtt_port, AGENT_ID, f"test-{os.getpid()}-s")
    try:
        await watcher.start()
        agent.start()
        assert f"audio device:{DEVICE}" in agent.log(), agent.log()
        call = await dial_600(watcher)
        state = watcher.on("state")[-1].json()
        assert state["devices"] == {"input": DEVICE, "output": DEVICE}, state
        assert state["audio"] == f"device:{DEVICE}" and "audio_note" not in state, state
        await asyncio.sleep(6.0)
        await watcher.publish("cmd", {"version": 1, "token": "h1", "command": "hangup"})
        assert (await watcher.wait_reply("h1"))["ok"]
        ended = await watcher.wait_event(10, type="call", call=call, state="terminated")
        assert ended["end_cause"] == "local hangup", ended
        assert agent.stop() == 0, agent.log()[-3000:]
        assert "Traceback" not in agent.log(), agent.log()[-3000:]
        in_order(watcher.events())
        check_schemas(watcher)
    finally:
        agent.stop()
        await watcher.stop()
        edge.stop()
        broker.stop()
    pcm = out.read_bytes()
    seconds = len(pcm) / 2 / RATE
    ratio = median_tone_ratio(pcm[2 * RATE:], RATE, TONE_HZ)  # past the first second
    print(json.dumps({"out_raw_s": round(seconds, 2), "call_s": ended["duration_s"],
                      "tone_ratio": round(ratio, 3), "codec": ended.get("quality", {})
                      .get("codec")}))
    # paced: one 20 ms block per 20 ms while the call was up (an unpaced loop writes minutes)
    assert ended["duration_s"] - 1.5 < seconds < ended["duration_s"] + 1.5, (seconds, ended)
    assert ratio > 0.8, ratio


@pytest.mark.timeout(60)
async def test_without_a_sound_card_the_agent_says_so_and_runs_with_null_audio(
        tmp_path: Path, lab: Any) -> None:
    nocard = tmp_path / "nocard.conf"
    nocard.write_text("pcm.nocard {\n    type hw\n    card 63\n}\n")
    env = {**os.environ, "ALSA_CONFIG_PATH": str(nocard)}
    listed = list_devices(env)
    assert listed.returncode == 0 and "no sound devices" in listed.stdout, listed
    (mqtt_port,) = lab.take_ports(1)
    broker = Mosquitto(tmp_path / "mq", mqtt_port).start()
    agent = AgentProcess(write_config(tmp_path, 1, mqtt_port), "device:headset", env=env)
    watcher = Watcher(mqtt_port, AGENT_ID, f"test-{os.getpid()}-n")
    try:
        await watcher.start()
        agent.start()
        assert "no sound card" in agent.log() and "audio null" in agent.log(), agent.log()
        await watcher.wait_for(lambda: bool(watcher.on("state")), 10)
        state = watcher.on("state")[-1].json()
        assert state["audio"] == "null", state
        assert "no sound card" in state["audio_note"], state
        assert state["devices"] == {"input": None, "output": None}, state
        started = await watcher.wait_event(5, type="agent", what="started")
        assert "no sound card" in started["audio_note"], started
        assert agent.stop() == 0, agent.log()[-3000:]
        check_schemas(watcher)
    finally:
        agent.stop()
        await watcher.stop()
        broker.stop()
