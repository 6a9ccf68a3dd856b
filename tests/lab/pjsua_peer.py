"""A real pjsip phone (pjsua2 from the `pjsua2-python` wheel: G.711 only, null audio device).

Run as a separate process with the interpreter of the pjsua2 venv (.venv-pj), because pjsua2
must own its thread and its wheel pins the Python versions:

    python pjsua_peer.py answer|call --port P --user U --password PW --edge HOST:PORT
        --tone-wav in.wav --record out.wav [--target EXT] [--secs S] [--dtmf K --dtmf-at S]

It registers to the edge with digest, answers (or places) one call, plays ``--tone-wav`` into
it, records what it hears into ``--record`` and prints ``RESULT OK codec=...`` on success.
``--dtmf K`` presses key K on the keypad (pjsip sends RFC 4733 by default) ``--dtmf-at``
seconds after the call's media is up.
Every wait is bounded; callbacks run only inside ``libHandleEvents`` on this thread.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any

import pjsua2 as pj  # type: ignore[import-not-found]


class PeerCall(pj.Call):  # type: ignore[misc]
    def __init__(self, acc: Any, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(acc, call_id)
        self.confirmed = False
        self.disconnected = False
        self.media_ready = False
        self.aud_idx = -1
        self.last_status = 0

    def onCallState(self, prm: Any) -> None:
        ci = self.getInfo()
        self.last_status = ci.lastStatusCode
        print(f"[pj] state={ci.stateText} last={ci.lastStatusCode} {ci.lastReason}", flush=True)
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True

    def onCallMediaState(self, prm: Any) -> None:
        ci = self.getInfo()  # keep the CallInfo alive while iterating its media (SWIG)
        for mi in ci.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.media_ready = True
                self.aud_idx = mi.index


class PeerAccount(pj.Account):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[PeerCall] = []
        self.registered = False

    def onRegState(self, prm: Any) -> None:
        info = self.getInfo()
        self.registered = info.regIsActive
        print(f"[pj] reg active={info.regIsActive} code={prm.code}", flush=True)

    def onIncomingCall(self, prm: Any) -> None:
        call = PeerCall(self, prm.callId)
        self.calls.append(call)  # keep a reference: a collected Call hangs up
        op = pj.CallOpParam()
        op.statusCode = 200
        call.answer(op)


def pump(ep: Any, until: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ep.libHandleEvents(20)
        if until():
            return True
    return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("answer", "call"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--edge", required=True)
    ap.add_argument("--tone-wav", required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--target", default="")
    ap.add_argument("--secs", type=float, default=3.0)
    ap.add_argument("--rtp-port", type=int, default=40000)
    ap.add_argument("--wait", type=float, default=30.0)
    ap.add_argument("--dtmf", default="")
    ap.add_argument("--dtmf-at", type=float, default=1.0)
    a = ap.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.userAgent = "pjsua2-peer"
    cfg.logConfig.level = 2
    cfg.logConfig.consoleLevel = 2
    cfg.medConfig.noVad = True
    cfg.medConfig.ecTailLen = 0
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = a.port
    tcfg.boundAddress = "127.0.0.1"
    tcfg.publicAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for c in ep.codecEnum2():
        ep.codecSetPriority(c.codecId, 0)
    ep.codecSetPriority("PCMA/8000/1", 250)
    ep.codecSetPriority("PCMU/8000/1", 249)

    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{a.user}@{a.edge}"
    acfg.regConfig.registrarUri = f"sip:{a.edge}"
    acfg.regConfig.timeoutSec = 300
    cred = pj.AuthCredInfo("digest", "*", a.user, 0, a.password)
    acfg.sipConfig.authCreds.append(cred)
    acfg.mediaConfig.transportConfig.port = a.rtp_port
    acfg.mediaConfig.transportConfig.portRange = 100
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acfg.natConfig.iceEnabled = False
    acc = PeerAccount()
    acc.create(acfg)
    ok = False
    codec = "?"
    player = rec = None
    call: PeerCall | None = None
    try:
        if not pump(ep, lambda: acc.registered, 10):
            print("[pj] registration failed", flush=True)
            return 1
        print("[pj] READY", flush=True)
        if a.mode == "call":
            call = PeerCall(acc)
            acc.calls.append(call)
            call.makeCall(f"sip:{a.target}@{a.edge}", pj.CallOpParam(True))
        if not pump(ep, lambda: bool(acc.calls) and acc.calls[0].media_ready
                    or bool(acc.calls) and acc.calls[0].disconnected, a.wait):
            print("[pj] no call", flush=True)
            return 1
        call = acc.calls[0]
        if call.disconnected:
            print(f"[pj] call failed {call.last_status}", flush=True)
            return 1
        aud = call.getAudioMedia(call.aud_idx)
        player = pj.AudioMediaPlayer()
        player.createPlayer(a.tone_wav, 0)  # loop
        player.startTransmit(aud)
        rec = pj.AudioMediaRecorder()
        rec.createRecorder(a.record)
        aud.startTransmit(rec)
        if a.dtmf and a.dtmf_at < a.secs:
            pump(ep, lambda: call.disconnected, a.dtmf_at)
            if not call.disconnected:
                call.dialDtmf(a.dtmf)
                print(f"[pj] DTMF {a.dtmf} sent", flush=True)
            pump(ep, lambda: call.disconnected, a.secs - a.dtmf_at)
        else:
            pump(ep, lambda: call.disconnected, a.secs)
        try:
            si = call.getStreamInfo(call.aud_idx)
            st = call.getStreamStat(call.aud_idx)
            codec = si.codecName
            print(f"[pj] codec={codec} rx={st.rtcp.rxStat.pkt} tx={st.rtcp.txStat.pkt}", flush=True)
        except Exception as exc:  # pj.Error when the stream is gone
            print(f"[pj] no stream stats: {exc}", flush=True)
        if not call.disconnected:
            if a.mode == "call":
                call.hangup(pj.CallOpParam(True))
            pump(ep, lambda: call.disconnected, 10)
        ok = call.disconnected
    finally:
        ep.hangupAllCalls()
        pump(ep, lambda: False, 0.3)
        player = rec = call = None  # drop every Call before the library goes
        acc.calls.clear()
        acc.shutdown()
        gc.collect()
        ep.libDestroy()
    print(f"[pj] RESULT {'OK' if ok else 'FAIL'} codec={codec}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
