"""``softphone call``: a one-shot UA for scripts and smoke tests.

``softphone call sip:600@127.0.0.1:5060 --duration 3 [--user 1001 --password ... --register]``
optionally registers, places one call (OPUS, PCMA, PCMU offered in that order), keeps it up
for ``--duration`` seconds and hangs up. Exit status: 0 when the call was answered and the BYE
was accepted, 1 when the call failed or was not answered in time, 2 on bad arguments or
local errors (a port already in use, say).

``--tone 440`` also sends a sine in the negotiated codec for the whole call, and
``--expect-tone`` makes the exit status depend on hearing it back (an echo service, sipp's
``-rtp_echo``): the received audio is decoded and the tone found with a Goertzel filter. This
small RTP loop is the app's own; the UA itself carries no media.

For scripts: ``--play in.wav`` / ``--record out.wav`` (the agent's file audio,
:mod:`softphone.agent.audio`) or ``--json`` print one JSON summary on stdout (``outcome``,
``status``, ``reason``, ``codec``, ``duration_s``, ``end_cause``, ``bye_status``, ``quality``
with the E-model MOS of :mod:`softphone.agent.quality`, ``recording``, ``exit``) and exit by
outcome: 0 answered, 1 failed (no answer in time, timeout, transport failure, 408, 5xx),
3 busy (486, 600), 4 refused (any other 4xx-6xx; its reason in the summary), 2 bad arguments
or a local error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import sys
from collections.abc import Sequence
from typing import Any

from softphone.codecs.frame import FrameCodec, codec_for
from softphone.media.rtp import RtpError, build_header, parse_rtp
from softphone.media.tone import ToneGenerator, median_tone_ratio
from softphone.phone import CallState, RegState, UserAgent, parse_listen, uri_destination
from softphone.sip.errors import SipError
from softphone.sip.transport import ListenSpec
from softphone.sip.uri import SipUri


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="SIP URI to call, e.g. sip:600@127.0.0.1:5060")
    p.add_argument("--duration", type=float, default=3.0,
                   help="seconds to stay in the call once answered (default 3)")
    p.add_argument("--answer-timeout", type=float, default=30.0,
                   help="give up (CANCEL) when not answered within this many seconds")
    p.add_argument("--user", default=None, help="our user part and digest username")
    p.add_argument("--password", default=None, help="digest password (401/407 answered)")
    p.add_argument("--register", action="store_true",
                   help="REGISTER at the target's host first (digest if challenged)")
    p.add_argument("--registrar", default=None, help="registrar URI (default: target's host)")
    p.add_argument("--listen", action="append", default=[],
                   help="transport:host:port to bind, repeatable (default: an ephemeral port "
                        "on 127.0.0.1 with the target's transport)")
    p.add_argument("--rtp-ports", default="20000-22000", help="RTP port range (default 20000-22000)")
    p.add_argument("--tone", type=float, default=None, metavar="HZ",
                   help="send a sine of this frequency in the negotiated codec")
    p.add_argument("--expect-tone", action="store_true",
                   help="exit 1 unless the tone comes back (against an echo service)")
    p.add_argument("--play", default=None, metavar="IN.WAV",
                   help="play this WAV (mono 16-bit, 8/16/48 kHz) into the call, looped")
    p.add_argument("--record", default=None, metavar="OUT.WAV",
                   help="write what the peer sends (decoded) to this WAV when the call ends")
    p.add_argument("--json", action="store_true",
                   help="one JSON summary on stdout (outcome, status, codec, duration, end "
                        "cause, quality) and the exit status by outcome: 0 answered, 1 failed, "
                        "3 busy, 4 refused (the reason in the summary); implied by --play "
                        "and --record")
    p.add_argument("-v", "--verbose", action="store_true")


class ToneProbe(asyncio.DatagramProtocol):
    """Sends a tone every 20 ms to the peer's RTP address and keeps what comes back."""

    def __init__(self, codec: FrameCodec, remote: tuple[str, int], freq: float) -> None:
        self.codec = codec
        self.remote = remote
        self.gen = ToneGenerator(freq, codec.clock_rate)
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.ts = secrets.randbits(32)
        self.sent = 0
        self.received: dict[int, bytes] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            pkt = parse_rtp(data)
        except RtpError:
            return
        if pkt.payload_type == self.codec.payload_type and len(self.received) < 10000:
            self.received[pkt.sequence] = pkt.payload

    def send_frame(self) -> None:
        if self.transport is None:
            return
        pcm = self.gen.frame(self.codec.frame_samples(20))
        header = build_header(self.codec.payload_type, self.seq, self.ts, self.ssrc,
                              marker=self.sent == 0)
        self.transport.sendto(header + self.codec.encode(pcm), self.remote)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + self.codec.rtp_samples(20)) & 0xFFFFFFFF
        self.sent += 1

    def tone_ratio(self, freq: float) -> float:
        """Goertzel share of ``freq`` in the received audio, the first 100 ms left out: the
        median over 100 ms windows (``median_tone_ratio``), so that one phase step in the
        echoed audio does not hide a tone that is there."""
        frames = [self.codec.decode(self.received[k]) for k in sorted(self.received)]
        pcm = b"".join(frames[5:])
        return median_tone_ratio(pcm, self.codec.clock_rate, freq) if pcm else 0.0


async def _media(call: Any, freq: float, seconds: float) -> ToneProbe | None:
    """Run the tone probe on the call's own RTP socket for ``seconds`` (or until it ends)."""
    neg = call.negotiated
    if neg is None or call.port_pair is None:
        return None
    probe = ToneProbe(codec_for(neg), (neg.remote_address, neg.remote_port), freq)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: probe,
                                                       sock=call.port_pair.rtp_sock)
    try:
        start = loop.time()
        n = 0
        while loop.time() - start < seconds and not call.ended:
            probe.send_frame()
            n += 1
            # Absolute schedule: no drift from the time each send takes.
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))
        await asyncio.sleep(0.1)  # the last echoes
    finally:
        transport.close()
    return probe


def _listen_for(target: str, listen: Sequence[str]) -> list[ListenSpec]:
    if listen:
        return [parse_listen(x) for x in listen]
    dest = uri_destination(target)
    host = "::1" if ":" in dest.host else "127.0.0.1"
    return [ListenSpec(dest.transport, host, 0)]


EXIT_ANSWERED, EXIT_FAILED, EXIT_BUSY, EXIT_REFUSED = 0, 1, 3, 4
BUSY = (486, 600)


def outcome_of(call: Any, answered: bool) -> tuple[str, int]:
    """(outcome, exit status) of a call: answered, busy (486/600), refused (another final
    answer of 4xx-6xx, whose reason the summary carries) or failed (no final answer, a
    timeout, a transport failure, 408/5xx)."""
    if answered:
        return "answered", EXIT_ANSWERED
    status = call.status
    if status in BUSY:
        return "busy", EXIT_BUSY
    if status is not None and 400 <= status < 700 and status != 408 and not 500 <= status < 600:
        return "refused", EXIT_REFUSED
    return "failed", EXIT_FAILED


async def run_scripted(args: argparse.Namespace) -> int:
    """``--json`` (or ``--play``/``--record``): the call with file audio, one JSON summary."""
    from softphone.agent.audio import AudioSpec, CallAudio
    from softphone.agent.quality import QualityMeter

    spec = AudioSpec.files(args.play, args.record)
    first, _, last = str(args.rtp_ports).partition("-")
    ua = UserAgent(listen=_listen_for(args.target, args.listen), user=args.user or "softphone",
                   username=args.user, password=args.password,
                   rtp_ports=(int(first), int(last)))
    await ua.start()
    summary: dict[str, Any] = {"target": args.target}
    reg = None
    code = EXIT_FAILED
    try:
        if args.register:
            reg = await ua.register(_registrar_for(args), expires=300, wait=10)
            if reg.state is not RegState.REGISTERED:
                summary.update(outcome="failed", status=reg.status,
                               reason=f"register failed: {reg.status}")
                return EXIT_FAILED
        call = await ua.call(args.target)
        answered = await call.wait_answered(args.answer_timeout)
        if not answered and not call.ended:
            await call.hangup_and_wait(10)  # our CANCEL: not a refusal of the peer's
            summary.update(outcome="failed", status=call.status,
                           reason=f"not answered within {args.answer_timeout:g} s")
            return EXIT_FAILED
        outcome, code = outcome_of(call, answered)
        summary.update(outcome=outcome, status=call.status,
                       reason=call.reason or call.end_reason)
        if not answered:
            return code
        neg = call.negotiated
        summary["codec"] = neg.codec.name if neg is not None else None
        loop = asyncio.get_running_loop()
        started = loop.time()
        from softphone.agent.notice import notice_text, speak
        from softphone.policy.config import load_default

        policy = load_default()
        notice = b""
        if spec.record is not None:  # R-REC-2: the other party is told before we record
            notice, summary["recording_notice"] = speak(notice_text(policy))
        audio = CallAudio(call, spec, notice=notice,
                          objection_digit=policy.recording.objection_digit)
        await audio.start()
        try:
            await call.wait_state(CallState.TERMINATED, timeout=args.duration)
        except TimeoutError:
            pass
        ended_by_peer = call.ended
        if not call.ended:
            await call.hangup_and_wait(35)
        audio.close()
        st = audio.session.stats
        quality = QualityMeter(audio.codec_name).sample(
            interval_s=loop.time() - started, received=st.packets_received,
            expected=st.expected, lost=st.lost, jitter_ms=st.jitter_ms, rtt_ms=st.rtt_ms,
            remote_fraction_lost=st.remote_fraction_lost)
        summary.update(duration_s=round(loop.time() - started, 3),
                       end_cause="remote hangup" if ended_by_peer else "local hangup",
                       bye_status=call.bye_status, quality=quality.as_dict(),
                       recording=None if args.record is None or audio.objected
                       else str(args.record))
        return code
    except (SipError, ValueError, OSError) as exc:
        summary.update(outcome="failed", reason=f"error: {exc}")
        code = 2
        return code
    finally:
        if reg is not None and reg.state is RegState.REGISTERED:
            await reg.unregister(5.0)
        await ua.close()
        summary.setdefault("outcome", "failed")
        summary["exit"] = code
        print(json.dumps(summary, sort_keys=True), flush=True)


def _registrar_for(args: argparse.Namespace) -> str:
    target = SipUri.parse(args.target)
    return args.registrar or str(SipUri(scheme=target.scheme, host=target.host,
                                        port=target.port, params={
                                            k: v for k, v in target.params.items()
                                            if k == "transport"}))


async def run_call(args: argparse.Namespace) -> int:
    first, _, last = str(args.rtp_ports).partition("-")
    ua = UserAgent(listen=_listen_for(args.target, args.listen), user=args.user or "softphone",
                   username=args.user, password=args.password,
                   rtp_ports=(int(first), int(last)))
    await ua.start()
    reg = None
    try:
        if args.register:
            target = SipUri.parse(args.target)
            registrar = args.registrar or str(SipUri(scheme=target.scheme, host=target.host,
                                                     port=target.port, params={
                                                         k: v for k, v in target.params.items()
                                                         if k == "transport"}))
            reg = await ua.register(registrar, expires=300, wait=10)
            if reg.state is not RegState.REGISTERED:
                print(f"register failed: {reg.status}", file=sys.stderr)
                return 1
            print(f"registered {reg.aor} for {reg.granted} s")
        call = await ua.call(args.target)
        if not await call.wait_answered(args.answer_timeout):
            if not call.ended:
                await call.hangup_and_wait(10)
            print(f"call not answered: {call.status} {call.reason or call.end_reason}".rstrip(),
                  file=sys.stderr)
            return 1
        neg = call.negotiated
        if neg is not None:
            print(f"answered: {neg.codec.rtpmap} (PT {neg.codec.payload_type}) "
                  f"remote {neg.remote_address}:{neg.remote_port} local port {call.rtp_port}")
        probe = None
        if args.tone is not None:
            probe = await _media(call, args.tone, args.duration)
        else:
            try:
                await call.wait_state(CallState.TERMINATED, timeout=args.duration)
            except TimeoutError:
                pass
        if probe is not None:
            ratio = probe.tone_ratio(args.tone)
            print(f"rtp sent={probe.sent} received={len(probe.received)} "
                  f"tone {args.tone:g} Hz ratio={ratio:.2f}")
            if args.expect_tone and ratio < 0.5:
                print("the tone did not come back", file=sys.stderr)
                await call.hangup_and_wait(35)
                return 1
        if call.ended:
            print(f"call ended by the peer after less than {args.duration} s: {call.end_reason}",
                  file=sys.stderr)
            return 1
        await call.hangup_and_wait(35)
        if call.bye_status != 200:
            print(f"BYE not accepted: {call.bye_status}", file=sys.stderr)
            return 1
        print("hung up")
        return 0
    finally:
        if reg is not None and reg.state is RegState.REGISTERED:
            # the binding goes with us (Expires: 0), on success, failure and Ctrl-C alike:
            # else each run leaves one behind until the registrar's device limit refuses us
            await reg.unregister(5.0)
            after: RegState = reg.state  # changed by the registrar's answer meanwhile
            print(f"unregistered {reg.aor}" if after is RegState.UNREGISTERED else
                  f"unregister of {reg.aor} not confirmed: {after.value}")
        await ua.close()


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    scripted = args.json or args.play is not None or args.record is not None
    if scripted and args.tone is not None:
        print("error: --tone goes with neither --json, --play nor --record", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_scripted(args) if scripted else run_call(args))
    except (SipError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
