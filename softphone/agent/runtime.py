"""The headless agent: the phone (:class:`~softphone.phone.UserAgent`) with its accounts, the
audio of its calls, the phone's policy guard, quality reports, and the MQTT control plane.

Everything the agent does is an event with a ``seq`` that counts up by one (published on
``event``, logged when control is off); its state (registrations, the call, mute, audio) is
republished, retained, whenever it changes. Calls are named ``c1``, ``c2``... in commands and
events. See docs/MQTT.md for the topics and the commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from softphone.agent.audio import AudioSpec, CallAudio
from softphone.agent.config import Account, AgentConfig
from softphone.agent.device import DeviceInfo
from softphone.agent.guard import DialDecision, PhoneGuard
from softphone.agent.messages import VERSION, Command, CommandError, parse_command, reply, token_of
from softphone.agent.notice import notice_text, speak
from softphone.agent.quality import QualityMeter
from softphone.phone import (
    Call,
    CallState,
    CallStateChanged,
    IncomingCall,
    Registration,
    RegistrationChanged,
    UaEvent,
    UserAgent,
)
from softphone.phone.account import UaError
from softphone.policy.config import PolicyConfig, load_default
from softphone.sip.errors import SipError
from softphone.sip.registration import RegState
from softphone.sip.uri import SipUri

log = logging.getLogger(__name__)

SEEN_TOKENS = 4096  # tokens remembered to answer a duplicate (QoS 1 redelivery) once
TRANSFER_WAIT_S = 60.0  # how long a transferred call waits for the NOTIFY of the new call


@dataclass
class AgentCall:
    ref: str
    call: Call
    account: Account
    peer: str
    emergency: bool = False
    held: bool = False
    audio: CallAudio | None = None
    meter: QualityMeter | None = None
    quality_task: asyncio.Task[None] | None = None
    answered_at: float | None = None
    reported: set[str] = field(default_factory=set)


class Agent:
    def __init__(self, config: AgentConfig, audio: AudioSpec, *,
                 policy: PolicyConfig | None = None, device: DeviceInfo | None = None,
                 audio_note: str = "") -> None:
        """``device``: the sound device of ``--audio device:NAME``; ``audio_note``: why the
        audio is null when a device was asked for (published in ``state``)."""
        self.config = config
        self.audio = audio
        self.device = device
        self.audio_note = audio_note
        self.policy = policy or load_default()
        self.guard = PhoneGuard(self.policy)
        self.notice = b""  # R-REC-2: played before the agent records (when it records)
        self.notice_source = ""
        first = config.accounts[0]
        self.ua = UserAgent(listen=config.listen, user=first.user, username=first.user,
                            password=first.password or None, codecs=config.codecs,
                            rtp_ports=config.rtp_ports,
                            display_name=first.display_name or None)
        self.ua.on_event = self._on_ua_event
        self.registrations: dict[str, Registration] = {}
        self.calls: dict[str, AgentCall] = {}
        self._by_sip: dict[str, AgentCall] = {}
        self._next_call = 0
        self.seq = 0
        self.muted = False
        self.link: Any = None  # MqttLink when a broker is configured
        self._tokens: dict[str, None] = {}
        self.duplicates = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = asyncio.Event()

    # -- events and state ---------------------------------------------------------------------

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        message = {"version": VERSION, "seq": self.seq, "time": round(time.time(), 3),
                   "type": kind, **fields}
        log.info("event %s", message)
        if self.link is not None:
            self.link.send("event", message, keep_all=kind == "control")
        self.publish_state()
        return message

    def state(self) -> dict[str, Any]:
        current = self.current_call()
        call = None
        if current is not None:
            neg = current.call.negotiated
            call = {"call": current.ref, "account": current.account.name,
                    "direction": current.call.direction, "peer": current.peer,
                    "state": current.call.state.value, "held": current.held,
                    "codec": neg.codec.name if neg is not None else None,
                    "emergency": current.emergency}
        regs = [{"account": name, "aor": reg.aor, "state": reg.state.value,
                 "expires": reg.granted} for name, reg in self.registrations.items()]
        out = {"version": VERSION, "agent_id": self.config.agent_id,
               "time": round(time.time(), 3), "registrations": regs, "call": call,
               "mute": self.muted, "audio": self.audio.describe(), "devices": {
                   "input": self.device.name if self.device is not None else None,
                   "output": self.device.name if self.device is not None else None}}
        if self.audio_note:
            out["audio_note"] = self.audio_note
        return out

    def publish_state(self) -> None:
        if self.link is not None:
            self.link.set_state(self.state())

    def current_call(self) -> AgentCall | None:
        live = [c for c in self.calls.values() if not c.call.ended]
        return live[-1] if live else None

    def calls_up(self) -> int:
        return sum(1 for c in self.calls.values() if not c.call.ended)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.audio.record is not None:
            self.notice, self.notice_source = speak(notice_text(self.policy))
        await self.ua.start()
        self.event("agent", what="started", agent_id=self.config.agent_id,
                   control="mqtt" if self.config.mqtt is not None else "off",
                   audio=self.audio.describe(),
                   **({"audio_note": self.audio_note} if self.audio_note else {}))
        for account in self.config.accounts:
            reg = await self.ua.register(account.registrar, username=account.user,
                                         password=account.password or None,
                                         expires=account.expires, wait=None)
            self.registrations[account.name] = reg
        self.publish_state()

    def on_reconnected(self, connects: int, dropped: int, offline_s: float) -> None:
        self.event("control", what="reconnected" if connects > 1 else "connected",
                   dropped=dropped, offline_s=round(offline_s, 3))

    async def stop(self) -> None:
        self.event("agent", what="stopping")
        for c in list(self.calls.values()):
            if not c.call.ended:
                with contextlib.suppress(Exception):
                    c.call.hangup()
        for c in list(self.calls.values()):
            if not c.call.ended:
                with contextlib.suppress(TimeoutError):
                    await c.call.wait_ended(5.0)
        for reg in self.registrations.values():
            if reg.state is RegState.REGISTERED:
                with contextlib.suppress(Exception):
                    await reg.unregister(3.0)
        for task in list(self._tasks):
            task.cancel()
        await self.ua.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the phone's events -------------------------------------------------------------------

    def _account_of_reg(self, reg: Registration) -> str:
        for name, r in self.registrations.items():
            if r is reg:
                return name
        return self.config.accounts[0].name

    def _on_ua_event(self, ev: UaEvent) -> None:
        match ev:
            case RegistrationChanged(registration=reg, state=state):
                self.event("registration", account=self._account_of_reg(reg), aor=reg.aor,
                           state=state.value, status=reg.status, expires=reg.granted)
            case IncomingCall(call=call):
                self._incoming(call)
            case CallStateChanged(call=call, state=state):
                ac = self._by_sip.get(call.call_id)
                if ac is not None:
                    self._call_state(ac, state)

    def _new_ref(self) -> str:
        self._next_call += 1
        return f"c{self._next_call}"

    def _incoming(self, call: Call) -> None:
        decision = self.guard.on_incoming(calls_up=self.calls_up())
        try:
            peer = str(call.invite.from_.uri)
        except SipError:
            peer = "unknown"
        if not decision.allowed:
            call.reject(486, "Busy Here")
            self._policy_event(decision, target=peer)
            return
        account = self._account_for_call(call)
        ac = AgentCall(self._new_ref(), call, account, peer)
        self.calls[ac.ref] = ac
        self._by_sip[call.call_id] = ac
        self.event("call", call=ac.ref, state="incoming", direction="incoming", peer=peer,
                   account=account.name)

    def _account_for_call(self, call: Call) -> Account:
        user = SipUri.parse(call.invite.uri).user if call.invite.uri.startswith("sip") else None
        for account in self.config.accounts:
            if account.user == user:
                return account
        return self.config.accounts[0]

    def _call_state(self, ac: AgentCall, state: CallState) -> None:
        call = ac.call
        fields: dict[str, Any] = {"call": ac.ref, "direction": call.direction, "peer": ac.peer}
        if state is CallState.ESTABLISHED:
            ac.answered_at = time.monotonic()
            neg = call.negotiated
            fields["codec"] = neg.codec.name if neg is not None else None
            self._spawn(self._start_media(ac))
        if state is CallState.TERMINATED:
            if ac.quality_task is not None:
                ac.quality_task.cancel()
            summary = None
            if ac.audio is not None and ac.answered_at is not None:
                # the whole call: cumulative counters from a meter of its own
                ac.meter = QualityMeter(ac.audio.codec_name)
                summary = self._quality(ac, time.monotonic() - ac.answered_at)
            if ac.audio is not None:
                ac.audio.close()
            fields.update(status=call.status, end_cause=call.end_reason or (
                f"{call.status} {call.reason}".strip() if call.status else "ended"),
                duration_s=round(time.monotonic() - ac.answered_at, 3)
                if ac.answered_at is not None else 0.0,
                recording=str(self.audio.record) if self.audio.record and ac.audio
                and not ac.audio.objected else None)
            if summary is not None:
                fields["quality"] = summary
        self.event("call", state=state.value, **fields)

    async def _start_media(self, ac: AgentCall) -> None:
        call = ac.call
        if call.ended or call.negotiated is None:
            return
        try:
            audio = CallAudio(call, self.audio, on_dtmf=lambda d: self.event(
                "dtmf", call=ac.ref, digit=d), notice=self.notice,
                objection_digit=self.policy.recording.objection_digit,
                on_recording=lambda what: self._recording_event(ac, what), device=self.device)
        except Exception as exc:  # a codec that cannot run here: say so, end the call
            log.error("no media for %s: %s", ac.ref, exc)
            call.hangup()
            return
        audio.muted = self.muted
        ac.audio = audio
        ac.meter = QualityMeter(audio.codec_name)
        await audio.start()
        ac.quality_task = asyncio.create_task(self._quality_loop(ac))

    def _quality(self, ac: AgentCall, interval: float | None = None) -> dict[str, Any]:
        assert ac.audio is not None and ac.meter is not None
        st = ac.audio.session.stats
        sample = ac.meter.sample(interval_s=interval or 0.0, received=st.packets_received,
                                 expected=st.expected, lost=st.lost, jitter_ms=st.jitter_ms,
                                 rtt_ms=st.rtt_ms, remote_fraction_lost=st.remote_fraction_lost)
        return {"codec": ac.audio.codec_name, **sample.as_dict()}

    async def _quality_loop(self, ac: AgentCall) -> None:
        interval = self.config.quality_interval_s
        while not ac.call.ended:
            await asyncio.sleep(interval)
            if ac.call.ended or ac.audio is None:
                return
            self.event("quality", call=ac.ref, **self._quality(ac, interval))

    def _recording_event(self, ac: AgentCall, what: str) -> None:
        rule = "R-REC-2"
        clause = self.policy.rules.get(rule, "")
        if what == "started":
            elapsed = time.monotonic() - ac.answered_at if ac.answered_at is not None else 0.0
            self.event("policy", rule=rule, decision="allowed", call=ac.ref, clause=clause,
                       reason=f"recording notice played ({self.notice_source}), recording",
                       notice=notice_text(self.policy), notice_elapsed_s=round(elapsed, 3))
        else:
            self.event("policy", rule=rule, decision="refused", call=ac.ref, clause=clause,
                       reason="the other party objected: recording stopped and deleted")

    def _policy_event(self, decision: DialDecision, **fields: Any) -> None:
        extra: dict[str, Any] = {}
        if decision.clause:
            extra["clause"] = decision.clause
        if decision.notice:
            extra["notice"] = decision.notice
        self.event("policy", rule=decision.rule,
                   decision="allowed" if decision.allowed else "refused",
                   reason=decision.reason, **extra, **fields)

    # -- commands -----------------------------------------------------------------------------

    async def on_command(self, payload: bytes) -> None:
        """One ``cmd`` message: answered once on ``cmd_resp/<token>``, never a crash."""
        token = token_of(payload)
        if token is not None:
            if token in self._tokens:
                self.duplicates += 1
                log.info("command %s seen before: not answered again", token)
                return
            self._tokens[token] = None
            while len(self._tokens) > SEEN_TOKENS:
                del self._tokens[next(iter(self._tokens))]
        name: str | None = None
        try:
            cmd = parse_command(payload)
            name = cmd.command
            result = await self.execute(cmd)
            message = reply(cmd.token, name, result=result)
        except CommandError as exc:
            if token is None:
                log.warning("command without a usable token refused: %s", exc.message)
                return
            message = reply(token, name, error=exc)
        except Exception as exc:  # a bug of ours: answered as a failure, the agent goes on
            log.exception("command failed")
            if token is None:
                return
            message = reply(token, name, error=CommandError("failed", str(exc) or repr(exc)))
        if self.link is not None:
            self.link.send(f"cmd_resp/{message['token']}", message)

    def _call_for(self, cmd: Command) -> AgentCall:
        ref = cmd.args.get("call")
        if ref is None:
            current = self.current_call()
            if current is None:
                raise CommandError("unknown_call", "no call is up", field="call")
            return current
        ac = self.calls.get(ref)
        if ac is None or ac.call.ended:
            raise CommandError("unknown_call", f"no call {ref} is up", field="call")
        return ac

    def _account(self, name: str | None) -> Account:
        if name is None:
            return self.config.accounts[0]
        for account in self.config.accounts:
            if account.name == name:
                return account
        raise CommandError("invalid", f"account: no account named {name!r}", field="account")

    def _target_uri(self, account: Account, target: str) -> str:
        if target.startswith(("sip:", "sips:")):
            try:
                SipUri.parse(target)
            except SipError as exc:
                raise CommandError("invalid", f"target: {exc}", field="target") from None
            return target
        reg = SipUri.parse(account.registrar)
        port = f":{reg.port}" if reg.port else ""
        transport = reg.params.get("transport")
        params = f";transport={transport}" if transport else ""
        host = f"[{reg.host}]" if ":" in reg.host and not reg.host.startswith("[") else reg.host
        uri = f"{reg.scheme}:{target}@{host}{port}{params}"
        try:
            SipUri.parse(uri)
        except SipError as exc:
            raise CommandError("invalid", f"target: {exc}", field="target") from None
        return uri

    async def execute(self, cmd: Command) -> dict[str, Any]:
        match cmd.command:
            case "status":
                return self.state()
            case "dial":
                return await self._dial(cmd)
            case "mute":
                self.muted = bool(cmd.args["on"])
                for c in self.calls.values():
                    if c.audio is not None:
                        c.audio.muted = self.muted
                self.publish_state()
                return {"mute": self.muted}
        ac = self._call_for(cmd)
        call = ac.call
        match cmd.command:
            case "answer":
                if call.direction != "incoming" or call.state is CallState.ESTABLISHED:
                    raise CommandError("wrong_state", f"{ac.ref} is not an unanswered "
                                       "incoming call", field="call")
                call.answer()
            case "reject":
                if call.direction != "incoming" or call.state is CallState.ESTABLISHED:
                    raise CommandError("wrong_state", f"{ac.ref} is not an unanswered "
                                       "incoming call", field="call")
                status = int(cmd.args.get("status", 486))
                call.reject(status, "Busy Here" if status == 486 else "Declined")
            case "hangup":
                call.hangup()
            case "dtmf":
                if ac.audio is None or call.state is not CallState.ESTABLISHED:
                    raise CommandError("wrong_state", f"{ac.ref} is not established",
                                       field="call")
                if call.negotiated is None or call.negotiated.telephone_event_pt is None:
                    raise CommandError("failed", "the peer did not accept telephone-events")
                ac.audio.queue_digits(cmd.args["digits"])
            case "record":
                audio = ac.audio
                if audio is None or self.audio.record is None:
                    raise CommandError("wrong_state", "nothing to record to: the agent "
                                       "records with --audio file:in.wav,out.wav")
                on = bool(cmd.args["on"])
                if on and audio.objected:
                    clause = self.policy.rules.get("R-REC-2", "")
                    raise CommandError("refused", "the other party objected to the recording "
                                       "of this call", rule="R-REC-2", clause=clause)
                if on and not audio.notice_done:
                    raise CommandError("wrong_state", "the recording notice is still playing: "
                                       "recording starts after it")
                audio.recording = on
                self.event("recording", call=ac.ref, on=on)
                return {"call": ac.ref, "on": on}
            case "hold" | "resume":
                if call.state is not CallState.ESTABLISHED:
                    raise CommandError("wrong_state", f"{ac.ref} is not established",
                                       field="call")
                hold = cmd.command == "hold"
                if ac.held == hold:
                    raise CommandError("wrong_state", f"{ac.ref} is "
                                       f"{'already' if hold else 'not'} on hold", field="call")
                try:
                    ok = await call.reoffer("sendonly" if hold else "sendrecv")
                except UaError as exc:
                    raise CommandError("wrong_state", str(exc), field="call") from None
                if not ok:
                    raise CommandError("failed", f"the peer did not accept the {cmd.command}")
                ac.held = hold
                if ac.audio is not None:
                    ac.audio.update_direction()
                    if hold:
                        ac.audio.session.sending = False
                self.event("call", call=ac.ref, state="held" if hold else "resumed",
                           direction=call.direction, peer=ac.peer,
                           media=call.negotiated.direction if call.negotiated else None)
            case "transfer":
                return await self._transfer(ac, str(cmd.args["target"]))
        return {"call": ac.ref}

    async def _transfer(self, ac: AgentCall, target: str) -> dict[str, Any]:
        """Blind transfer (REFER, RFC 3515 / RFC 5589 §6): answered once the peer accepted the
        REFER; the call is hung up when the peer's NOTIFY reports the new call answered, and
        kept (a ``transfer`` event ``failed``) when it reports a failure or nothing comes."""
        call = ac.call
        if call.state is not CallState.ESTABLISHED:
            raise CommandError("wrong_state", f"{ac.ref} is not established", field="call")
        uri = self._target_uri(ac.account, target)
        try:
            status = await call.refer(uri)
        except UaError as exc:
            raise CommandError("wrong_state", str(exc), field="call") from None
        if not 200 <= status < 300:
            self.event("transfer", call=ac.ref, target=uri, state="failed", status=status,
                       reason=f"the peer answered the REFER {status}: the call stays")
            raise CommandError("failed", f"the peer did not accept the transfer ({status}): "
                               "the call stays")
        self.event("transfer", call=ac.ref, target=uri, state="accepted", status=status)
        self._spawn(self._transfer_outcome(ac, uri, target))
        return {"call": ac.ref, "target": uri, "status": status}

    async def _transfer_outcome(self, ac: AgentCall, uri: str, target: str) -> None:
        call = ac.call
        outcome: int | None = None
        deadline = time.monotonic() + TRANSFER_WAIT_S
        while outcome is None and not call.ended and time.monotonic() < deadline:
            outcome = await call.wait_refer_outcome(1.0)
        if outcome is None:  # the NOTIFY and the end of the call came together
            outcome = next((s for s in call.refer_progress if s >= 200), None)
        if outcome is not None and 200 <= outcome < 300:
            self.event("transfer", call=ac.ref, target=uri, state="completed", status=outcome)
            if not call.ended:
                call.end_reason = f"transferred to {target}"
                call.hangup()
            return
        reason = (f"the new call failed ({outcome})" if outcome is not None else
                  "the call ended before the peer reported the new call" if call.ended else
                  f"no report of the new call within {TRANSFER_WAIT_S:.0f} s")
        self.event("transfer", call=ac.ref, target=uri, state="failed", status=outcome,
                   reason=reason + ("" if call.ended else ": the call stays"))

    async def _dial(self, cmd: Command) -> dict[str, Any]:
        account = self._account(cmd.args.get("account"))
        target = str(cmd.args["target"])
        uri = self._target_uri(account, target)
        user = SipUri.parse(uri).user or target
        decision = self.guard.on_dial(account, user, calls_up=self.calls_up())
        if decision.rule:
            self._policy_event(decision, target=target)
        if not decision.allowed:
            raise CommandError("refused", decision.reason, rule=decision.rule,
                               clause=decision.clause)
        try:
            call = await self.ua.call(uri, from_user=account.user, username=account.user,
                                      password=account.password or None)
        except (SipError, OSError) as exc:
            raise CommandError("failed", f"cannot place the call: {exc}") from None
        ac = AgentCall(self._new_ref(), call, account, uri, emergency=decision.emergency)
        self.calls[ac.ref] = ac
        self._by_sip[call.call_id] = ac
        self.event("call", call=ac.ref, state="calling", direction="outgoing", peer=uri,
                   account=account.name)
        return {"call": ac.ref}
