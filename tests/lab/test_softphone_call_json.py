"""``softphone call`` for scripts: ``--play``/``--record``/``--json`` print one JSON summary and
exit by outcome (0 answered, 1 failed, 3 busy, 4 refused with the reason), against the edge's
echo extension, the edge's 404 for an unknown number, a sipp UAS answering 486, and nobody."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess

from softphone.media.tone import median_tone_ratio, read_wav, tone, write_wav

pytestmark = pytest.mark.lab

EDGE_RTP = (23500, 23699)
CALL_RTP = "23700-23799"


def call(argv: list[str], timeout: float = 60) -> tuple[int, dict[str, Any], str]:
    out = subprocess.run([sys.executable, "-m", "softphone", "call", *argv, "--rtp-ports",
                          CALL_RTP], capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 1, out.stdout + out.stderr
    return out.returncode, json.loads(lines[0]), out.stderr


@pytest.mark.timeout(120)
def test_answered_refused_and_failed_against_the_edge(tmp_path: Path, lab: Any) -> None:
    (sip, nobody) = lab.take_ports(2)
    play, record = tmp_path / "in.wav", tmp_path / "out.wav"
    write_wav(play, tone(440, 8000, 8000 * 2), 8000)
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    auth = ["--user", "1001", "--password", "demo-1001", "--register"]
    try:
        rc, summary, err = call([f"sip:600@127.0.0.1:{sip}", *auth, "--play", str(play),
                                 "--record", str(record), "--duration", "10"])
        assert rc == 0 and summary["outcome"] == "answered", (summary, err)
        assert summary["codec"] == "opus" and summary["exit"] == 0, summary
        assert summary["end_cause"] == "local hangup" and summary["bye_status"] == 200, summary
        assert summary["duration_s"] >= 9.9 and summary["quality"]["mos"] > 4.0, summary
        # R-REC-2: the notice went first (spoken, or beeps without espeak-ng), then recording
        assert summary["recording_notice"] in ("espeak-ng", "beeps"), summary
        pcm, rate = read_wav(record)
        assert median_tone_ratio(pcm[rate:], rate, 440) > 0.8  # the echo of in.wav
        rc, summary, err = call([f"sip:9999@127.0.0.1:{sip}", *auth, "--json"])
        assert rc == 4 and summary["outcome"] == "refused", (summary, err)
        assert summary["status"] == 404 and summary["reason"] == "Not Found", summary
        rc, summary, err = call([f"sip:600@127.0.0.1:{nobody}", "--json",
                                 "--answer-timeout", "2"])
        assert rc == 1 and summary["outcome"] == "failed", (summary, err)
        assert "not answered within 2 s" in summary["reason"], summary
    except AssertionError:
        print(edge.log()[-3000:])
        raise
    finally:
        edge.stop()


def test_tone_and_json_together_are_a_usage_error() -> None:
    out = subprocess.run([sys.executable, "-m", "softphone", "call", "sip:600@127.0.0.1:9",
                          "--json", "--tone", "440"], capture_output=True, text=True,
                         timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "--tone" in out.stderr, out


@pytest.mark.timeout(60)
def test_busy_from_a_sipp_uas_exits_3(sipp: Any, lab: Any) -> None:
    (port,) = lab.take_ports(1)
    peer = sipp.start("uas_busy", ["-sf", str(lab.scenarios / "edge_uas_busy.xml"),
                                   "-i", "127.0.0.1", "-p", str(port), "-m", "1"], wall=40)
    lab.wait_udp_listening(port)
    rc, summary, err = call([f"sip:agent@127.0.0.1:{port}", "--json"])
    assert rc == 3 and summary["outcome"] == "busy", (summary, err)
    assert summary["status"] == 486 and summary["reason"] == "Busy Here", summary
    assert peer.wait(20) == 0
