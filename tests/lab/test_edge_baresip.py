"""Real phones through the edge: baresip (OPUS) to baresip, audio checked on the audio."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from lab.audio import best_tone_ratio
from lab.baresip_peer import Baresip, account, available, echo_call
from lab.edge_proc import EdgeProcess

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(not available(), reason="baresip with opus.so not installed")]

RTP = (20000, 20999)


@pytest.mark.timeout(120)
def test_baresip_calls_baresip_through_edge_with_opus(tmp_path: Path, lab: Any) -> None:
    # baresip also binds SIP/TLS on its SIP port + 1: keep every other port for that
    sip, a_sip, _, b_sip, _, a_ctl, b_ctl = lab.take_ports(7)
    edge = EdgeProcess(tmp_path / "edge", sip, RTP).start()
    where = f"127.0.0.1:{sip}"
    a = Baresip(tmp_path, "a", a_sip, a_ctl, 34000, account("1001", "demo-1001", where),
                freq=1000)
    b = Baresip(tmp_path, "b", b_sip, b_ctl, 34100,
                account("1002", "demo-1002", where, auto_answer=True), freq=440)
    try:
        b.start()
        a.start()
        assert b.wait_registered(10), b.log() + edge.log()
        assert a.wait_registered(10), a.log() + edge.log()
        a.send("dial", f"sip:1002@{where}", token="dial")
        assert a.wait_event("CALL_ESTABLISHED", 10), a.log() + edge.log()
        assert b.wait_event("CALL_ESTABLISHED", 10), b.log()
        time.sleep(3)
        a.send("hangup", token="hup")
        assert a.wait_event("CALL_CLOSED", 10)
        assert b.wait_event("CALL_CLOSED", 10), "the edge did not relay the BYE"
    finally:
        a.stop()
        b.stop()
    calls = edge.wait_calls(1)
    edge.stop()
    assert len(calls) == 1, edge.log()
    call = calls[0]
    assert call["end_cause"] == "caller-bye"
    codecs = {leg["role"]: leg["codec"].lower() for leg in call["legs"]}
    assert codecs == {"caller": "opus", "callee": "opus"}, call
    for leg in call["legs"]:
        assert RTP[0] <= leg["local_rtp"] <= RTP[1]
        assert leg["packets_in"] > 50, call
    # the audio itself: each end hears the other's tone
    assert best_tone_ratio(b.decoded_wavs(), 1000) > 0.5, b.decoded_wavs()
    assert best_tone_ratio(a.decoded_wavs(), 440) > 0.5, a.decoded_wavs()


@pytest.mark.timeout(90)
def test_echo_extension_returns_the_tone(tmp_path: Path, lab: Any) -> None:
    (sip,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", sip, RTP).start()
    a = echo_call(tmp_path, lab, edge, 34200)
    calls = edge.wait_calls(1)
    edge.stop()
    assert calls and calls[0]["callee"] == "600", edge.log()
    # what came back is the caller's own 1 kHz tone, through jitter buffer, decode and encode
    assert best_tone_ratio(a.decoded_wavs(), 1000) > 0.5, a.decoded_wavs()
