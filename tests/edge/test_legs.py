"""A call is a set of legs: a call of two app legs (tone 601 and echo 600 behind the same
``Leg`` interface as every party) with a fake clock and no sockets."""

from __future__ import annotations

import json

from softphone.policy import Account, PolicyGuard, User
from softphone.policy.admission import CallAdmission
from softphone.policy.config import load_default

from softphone.edge.calllog import CallLog, CallRecord
from softphone.edge.legs import EchoLeg, FrameCall, LegState, PromptLeg, ToneLeg, app_leg
from softphone.media.echo import PcmSource
from softphone.media.tone import rms, tone, tone_power_ratio

T0 = 1_768_989_600.0
RATE = 16000
ACCT = Account("acct-1", "FR", seats=3)
USERS = {name: User(name, ACCT, numbers=(f"+3318765432{i}",))
         for i, name in enumerate(("alice", "bob"))}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def test_a_call_of_a_tone_leg_and_an_echo_leg_runs_on_a_fake_clock(tmp_path) -> None:
    """The tone reaches the echo, comes back to the tone leg; keys go to the other leg and to
    the policy; a hang-up ends the call once: every leg ended, the channel given back, one
    call-log line with the clock's times."""
    clock = Clock()
    adm = CallAdmission(PolicyGuard(load_default()), USERS.get, clock=clock)
    assert all(d.allowed for d in adm.admit_decisions("k1", "alice", "bob", inbound_local=True))
    assert adm.guard.held("alice") == adm.guard.held("bob") == 1
    heard_by_tone: list[bytes] = []
    keys: list[tuple[str, str]] = []

    class ListeningTone(ToneLeg):
        def hear(self, pcm: bytes) -> None:
            heard_by_tone.append(pcm)

    a, b = ListeningTone(1000.0, RATE, name="a"), EchoLeg(name="b")
    log = CallLog(tmp_path / "calls.jsonl")
    call = FrameCall("k1", [a, b], clock=clock, rate=RATE,
                     record=CallRecord(call_id="k1", started=clock(), caller="alice",
                                       callee="bob"),
                     call_log=log, release=lambda: adm.released("k1", answered=True,
                                                                duration=0.0),
                     on_dtmf=lambda leg, digit: keys.append((leg, digit)))
    assert a.state is b.state is LegState.SETUP
    call.answer()
    assert a.state is b.state is LegState.ANSWERED
    for _ in range(50):  # one second of 20 ms frames
        call.tick()
        clock.now += 0.02
    # the echo leg returns the tone it heard, one frame later
    assert len(heard_by_tone) == 50 and rms(heard_by_tone[0]) == 0.0
    assert tone_power_ratio(b"".join(heard_by_tone[1:]), RATE, 1000.0) > 0.95
    # on hold, the echo leg neither hears nor sends
    b.hold(True)
    call.tick()
    assert rms(heard_by_tone[-1]) == 0.0 and b.state is LegState.HELD
    b.hold(False)
    assert b.on_dtmf is not None
    b.on_dtmf(b, "5")
    assert a.keys == ["5"] and b.keys == [] and keys == [("b", "5")]
    call.hang_up("b", "hangup")
    call.hang_up("a", "hangup")  # once only
    assert a.state is b.state is LegState.ENDED
    assert adm.guard.held("alice") == adm.guard.held("bob") == 0
    log.close()
    (line,) = (tmp_path / "calls.jsonl").read_text().splitlines()
    rec = json.loads(line)
    assert rec["end_cause"] == "b:hangup" and rec["status"] == 200
    assert rec["answered"] == T0 and rec["duration_s"] == 1.0


def test_a_prompt_leg_plays_once_and_the_app_numbers_are_legs() -> None:
    pcm = tone(440.0, RATE, 2 * 320)
    prompt = PromptLeg(PcmSource(pcm), name="b")
    assert prompt.speak(320) == pcm[:640] and prompt.speak(320) == pcm[640:]
    assert prompt.speak(320) is None
    assert app_leg("echo", tone_hz=1000.0, rate=RATE).kind == "echo"
    assert app_leg("tone", tone_hz=1000.0, rate=RATE).kind == "tone"
