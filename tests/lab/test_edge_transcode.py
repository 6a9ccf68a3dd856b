"""OPUS on one leg, PCMA on the other: the edge transcodes, and both ends hear each other."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import pytest
from lab.audio import best_tone_ratio, tone_ratio
from lab.baresip_peer import Baresip, account, available
from lab.edge_proc import EdgeProcess

ROOT = Path(__file__).resolve().parents[2]
PJ_PYTHON = Path(os.environ.get("SOFTPHONE_PJSUA_PYTHON", ROOT / ".venv-pj" / "bin" / "python"))
PEER = Path(__file__).with_name("pjsua_peer.py")
RTP = (20000, 20999)


def _pjsua_ok() -> bool:
    if not PJ_PYTHON.exists():
        return False
    return subprocess.run([str(PJ_PYTHON), "-c", "import pjsua2"], capture_output=True,
                          timeout=30).returncode == 0


pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(not available(), reason="baresip with opus.so not installed"),
    pytest.mark.skipif(not _pjsua_ok(), reason="pjsua2 venv (.venv-pj) missing: make lab-deps"),
]


def write_tone_wav(path: Path, freq: float, secs: float, rate: int = 8000) -> None:
    frames = b"".join(int(8000 * math.sin(2 * math.pi * freq * i / rate)).to_bytes(
        2, "little", signed=True) for i in range(int(rate * secs)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)


@pytest.mark.timeout(120)
def test_baresip_opus_calls_pjsua_pcma_through_edge(tmp_path: Path, lab: Any) -> None:
    sip, b_sip, _, b_ctl, pj_sip = lab.take_ports(5)
    edge = EdgeProcess(tmp_path / "edge", sip, RTP).start()
    where = f"127.0.0.1:{sip}"
    tone = tmp_path / "tone440.wav"
    write_tone_wav(tone, 440, 3)
    record = tmp_path / "pj_heard.wav"
    pj_out = (tmp_path / "pj.log").open("w")
    pj = subprocess.Popen(
        ["timeout", "-k", "3", "60", str(PJ_PYTHON), str(PEER), "answer", "--port", str(pj_sip),
         "--user", "1004", "--password", "demo-1004", "--edge", where, "--tone-wav", str(tone),
         "--record", str(record), "--secs", "2.5", "--rtp-port", "40100"],
        stdout=pj_out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    b = Baresip(tmp_path, "b", b_sip, b_ctl, 34300, account("1001", "demo-1001", where,
                                                            codecs="opus/48000/2"), freq=1000)
    try:
        end = time.monotonic() + 15
        while "READY" not in (tmp_path / "pj.log").read_text() and time.monotonic() < end:
            assert pj.poll() is None, (tmp_path / "pj.log").read_text()
            time.sleep(0.1)
        assert "READY" in (tmp_path / "pj.log").read_text(), (tmp_path / "pj.log").read_text()
        b.start()
        assert b.wait_registered(10), b.log() + edge.log()
        b.send("dial", f"sip:1004@{where}", token="dial")
        assert b.wait_event("CALL_ESTABLISHED", 10), b.log() + edge.log()
        time.sleep(3.5)
        b.send("hangup", token="hup")
        assert b.wait_event("CALL_CLOSED", 10)
        assert pj.wait(30) == 0, (tmp_path / "pj.log").read_text()
    finally:
        b.stop()
        if pj.poll() is None:
            pj.terminate()
            pj.wait(10)
        pj_out.close()
    log = (tmp_path / "pj.log").read_text()
    assert "codec=PCMA" in log, log
    calls = edge.wait_calls(1)
    edge.stop()
    assert calls, edge.log()
    codecs = {leg["role"]: leg["codec"].lower() for leg in calls[0]["legs"]}
    assert codecs == {"caller": "opus", "callee": "pcma"}, calls[0]
    assert calls[0]["transcoded"] is True
    # the pjsip phone heard baresip's 1 kHz (OPUS -> PCMA), baresip heard the 440 Hz (PCMA -> OPUS)
    assert tone_ratio(record, 1000) > 0.5, "no 1 kHz tone at the PCMA end"
    assert best_tone_ratio(b.decoded_wavs(), 440) > 0.5, "no 440 Hz tone at the OPUS end"


if __name__ == "__main__":  # pragma: no cover - manual run
    sys.exit(pytest.main([__file__, "-v"]))
