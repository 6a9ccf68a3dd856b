"""The desktop app's phone, without Qt: one account, one call at a time, on asyncio.

It composes what the project already has: the user agent (:class:`~softphone.phone.UserAgent`:
registration, calls, hold by re-offer, end hooks), the call's audio on the call's own RTP pair
(:class:`~softphone.agent.audio.CallAudio`: null or WAV in/out, mute, RFC 4733 DTMF, the
recording notice of R-REC-2), the guard's one-phone share (:class:`~softphone.agent.guard.
PhoneGuard`: R-CALLS-1 and the emergency rules of R-EMERG-1) and the quality meter with its
MOS (:mod:`softphone.agent.quality`). With an input and an output sound device chosen
(``input_device``, ``output_device``) the next call's audio goes through them (the agent's
:class:`~softphone.agent.device.DeviceAudio`), otherwise through the ``--audio`` setting; the
devices' levels are read by :meth:`DesktopPhone.levels`. The window (:mod:`softphone.desktop.window`) reads its
state and is told of every change through ``on_change``; nothing here blocks.

A refusal is told in words: the guard's reason for what the phone refuses itself, otherwise
the Warning text the server sent with its final response (RFC 3261 §20.43, ``399 host
"text"``), else the status line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from softphone.agent.audio import AudioSpec, CallAudio
from softphone.agent.config import Account
from softphone.agent.device import DeviceInfo
from softphone.agent.guard import DialDecision, PhoneGuard
from softphone.agent.notice import notice_text, speak
from softphone.agent.quality import QualityMeter
from softphone.desktop.numbers import NumberError, dialable
from softphone.desktop.store import AccountSettings, DesktopStore
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
from softphone.policy.config import PolicyConfig, load_default
from softphone.sip.errors import SipError
from softphone.sip.message import SipResponse
from softphone.sip.registration import RegState
from softphone.sip.transport import ListenSpec
from softphone.sip.uri import SipUri

log = logging.getLogger(__name__)

EMERGENCY_UNAVAILABLE = ("emergency calls are not available on this line: use a mobile or a "
                         "landline")
_WARNING = re.compile(r'^\s*\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"')


def warning_texts(response: SipResponse | None) -> list[str]:
    """The texts of a response's Warning headers (RFC 3261 §20.43)."""
    if response is None:
        return []
    out = []
    for value in response.headers.values("warning"):
        m = _WARNING.match(value)
        if m:
            out.append(m.group(1).replace('\\"', '"').replace("\\\\", "\\"))
    return out


def refusal_words(status: int | None, reason: str, response: SipResponse | None) -> str:
    """What a person reads when a call did not go through."""
    texts = warning_texts(response)
    if texts:
        return " ".join(texts)
    if status == 486:
        return "The person you are calling is busy."
    if status == 404:
        return "There is no such number."
    if status == 480:
        return "The person you are calling is not available."
    if status in (401, 403, 407):
        return f"The server refused the call ({status} {reason})."
    if status == 408:
        return "The server did not answer."
    return f"The call failed ({status} {reason})." if status else "The call failed."


@dataclass
class CurrentCall:
    call: Call
    peer: str
    display: str = ""
    started: float = field(default_factory=time.time)
    emergency: bool = False
    held: bool = False
    audio: CallAudio | None = None
    meter: QualityMeter | None = None
    answered_at: float | None = None
    mos: float | None = None
    recording: bool = False
    recording_note: str = ""
    transfer_note: str = ""


class DesktopPhone:
    """See the module docstring. ``on_change(what)`` is called after every change."""

    def __init__(self, store: DesktopStore, account: AccountSettings, password: str, *,
                 audio: AudioSpec, listen: list[ListenSpec] | None = None,
                 rtp_ports: tuple[int, int] = (20000, 22000),
                 policy: PolicyConfig | None = None, quality_interval_s: float = 2.0) -> None:
        self.store = store
        self.account = account
        self.password = password
        self.audio = audio
        self.listen = listen
        self.rtp_ports = rtp_ports
        self.policy = policy or load_default()
        self.guard = PhoneGuard(self.policy)
        self.quality_interval_s = quality_interval_s
        self.ua: UserAgent | None = None
        self.registration: Registration | None = None
        self.reg_text = "not registered"
        self.reg_warnings: list[str] = []
        self.current: CurrentCall | None = None
        self.refusal = ""          # the last refusal in words (cleared by the next call)
        self.muted = False
        self.notice = b""
        self.notice_source = ""
        self.on_change: Callable[[str], None] = lambda _what: None
        self.on_incoming: Callable[[CurrentCall], None] = lambda _c: None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.input_device: DeviceInfo | None = None   # both set: device audio for the next call
        self.output_device: DeviceInfo | None = None

    # -- the guard's view of the line ------------------------------------------------------------

    @property
    def guard_account(self) -> Account:
        a = self.account
        return Account(name="desktop", registrar=a.registrar() if a.configured else "sip:x",
                       user=a.user or "desktop", emergency=a.emergency, country=a.country,
                       outside_line_prefix=a.outside_line_prefix)

    def emergency_banner(self) -> tuple[bool, str]:
        """(available, the words of the banner) for this line."""
        a = self.account
        if a.emergency and a.location:
            return True, f"Emergency calls available. Recorded location: {a.location}"
        if a.emergency:
            return False, (EMERGENCY_UNAVAILABLE[0].upper() + EMERGENCY_UNAVAILABLE[1:]
                           + " (no location is recorded for this line).")
        return False, EMERGENCY_UNAVAILABLE[0].upper() + EMERGENCY_UNAVAILABLE[1:] + "."

    def recording_notice(self) -> str:
        return notice_text(self.policy)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the SIP transport and register (if an account is set); never raises for a
        server that is not there: the state says what is missing."""
        if self.audio.record is not None:
            loop = asyncio.get_running_loop()
            self.notice, self.notice_source = await loop.run_in_executor(
                None, speak, notice_text(self.policy))
        a = self.account
        if not a.configured:
            self.reg_text = "no account: open Account… to set the server, user and password"
            self.on_change("registration")
            return
        transport = a.transport
        listen = self.listen or [ListenSpec(transport, "127.0.0.1" if a.server.startswith(
            ("127.", "localhost")) else "0.0.0.0", 0)]
        self.ua = UserAgent(listen=listen, user=a.user, username=a.user,
                            password=self.password or None, rtp_ports=self.rtp_ports,
                            display_name=a.display_name or None, ring=True)  # 180 at once
        self.ua.on_event = self._on_ua_event
        try:
            await self.ua.start()
        except (OSError, SipError) as exc:
            self.reg_text = f"cannot open the SIP transport: {exc}"
            self.ua = None
            self.on_change("registration")
            return
        self.register()

    def register(self) -> None:
        if self.ua is None:
            return
        try:
            self._spawn(self._register())
        except SipError as exc:
            self.reg_text = f"bad server: {exc}"
            self.on_change("registration")

    async def _register(self) -> None:
        assert self.ua is not None
        self.reg_text = f"registering at {self.account.server}…"
        self.on_change("registration")
        try:
            self.registration = await self.ua.register(
                self.account.registrar(), username=self.account.user,
                password=self.password or None, expires=300, wait=None)
        except (SipError, OSError) as exc:
            self.reg_text = f"cannot register: {exc}"
            self.on_change("registration")

    async def stop(self) -> None:
        cur = self.current
        if cur is not None and not cur.call.ended:
            with contextlib.suppress(Exception):
                cur.call.hangup()
                await cur.call.wait_ended(3.0)
        reg = self.registration
        if reg is not None and reg.state is RegState.REGISTERED:
            with contextlib.suppress(Exception):
                await reg.unregister(2.0)
        for task in list(self._tasks):
            task.cancel()
        if self.ua is not None:
            await self.ua.close()
            self.ua = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- events from the UA ----------------------------------------------------------------------

    def _on_ua_event(self, ev: UaEvent) -> None:
        match ev:
            case RegistrationChanged(registration=reg, state=state):
                self._registration_changed(reg, state)
            case IncomingCall(call=call):
                self._incoming(call)
            case CallStateChanged(call=call, state=state):
                cur = self.current
                if cur is not None and cur.call is call:
                    self._call_state(cur, state)

    def _registration_changed(self, reg: Registration, state: RegState) -> None:
        if state is RegState.REGISTERED:
            self.reg_text = f"registered as {self.account.user} at {self.account.server}"
            self.reg_warnings = warning_texts(reg.last_response)
        elif state in (RegState.FAILED, RegState.RETRYING):
            why = reg.machine.last_reason or "no answer"
            status = reg.status
            hint = {401: "wrong user or password", 403: "wrong user or password",
                    408: "the server does not answer", 503: "the server cannot be reached"}
            self.reg_text = (f"not registered: {status or ''} {why}"
                             f"{' (' + hint[status] + ')' if status in hint else ''}").strip()
        else:
            self.reg_text = state.value
        self.on_change("registration")

    def _incoming(self, call: Call) -> None:
        decision = self.guard.on_incoming(calls_up=self.calls_up())
        try:
            caller = call.invite.from_
            peer = caller.uri.user or str(caller.uri)  # what calling back dials
            display = f"{caller.display} ({peer})" if caller.display else peer
        except SipError:
            peer = display = "unknown"
        if not decision.allowed:  # R-CALLS-1: one call at a time
            call.reject(486, "Busy Here")
            self._log(peer, "incoming", "rejected", decision.reason, 0.0, None, time.time())
            self.on_change("history")
            return
        self.current = CurrentCall(call, peer, display=display)
        self.on_incoming(self.current)
        self.on_change("call")

    def _call_state(self, cur: CurrentCall, state: CallState) -> None:
        if state is CallState.ESTABLISHED:
            cur.answered_at = time.monotonic()
            self._spawn(self._start_media(cur))
        elif state is CallState.TERMINATED:
            self._ended(cur)
        self.on_change("call")

    def _ended(self, cur: CurrentCall) -> None:
        call = cur.call
        if cur.audio is not None and cur.meter is not None and cur.answered_at is not None:
            cur.meter = QualityMeter(cur.audio.codec_name)  # the whole call
            cur.mos = self._sample(cur, time.monotonic() - cur.answered_at)
        if cur.audio is not None:
            cur.audio.close()
        duration = time.monotonic() - cur.answered_at if cur.answered_at is not None else 0.0
        if cur.answered_at is not None:
            outcome, reason = "answered", call.end_reason or "ended"
        elif call.direction == "incoming":
            outcome = "rejected" if (call.status or 0) >= 400 and call.status != 487 \
                else "missed"
            reason = call.end_reason or "not answered"
        elif call.status == 487:
            outcome, reason = "cancelled", "cancelled"
        else:
            outcome = "refused"
            reason = refusal_words(call.status, call.reason, call.final_response)
            self.refusal = reason
        self._log(cur.peer, call.direction, outcome, reason, duration, cur.mos, cur.started)
        if self.current is cur:
            self.current = None
        self.on_change("history")

    def _log(self, peer: str, direction: str, outcome: str, reason: str, duration: float,
             mos: float | None, started: float) -> None:
        self.store.add_call(started=started, direction=direction, peer=peer, outcome=outcome,
                            reason=reason, duration_s=round(duration, 3),
                            mos=None if mos is None else round(mos, 2))

    async def _start_media(self, cur: CurrentCall) -> None:
        call = cur.call
        if call.ended or call.negotiated is None:
            return
        try:
            dev_in, dev_out = self.input_device, self.output_device
            both = dev_in is not None and dev_out is not None
            audio = CallAudio(call, self.audio, notice=self.notice,
                              objection_digit=self.policy.recording.objection_digit,
                              on_recording=lambda what: self._recording(cur, what),
                              device=dev_in if both else None,
                              output_device=dev_out if both else None)
        except Exception as exc:  # a codec that cannot run here: say so, end the call
            log.error("no media for the call: %s", exc)
            self.refusal = f"no audio for this call: {exc}"
            call.hangup()
            return
        audio.muted = self.muted
        cur.audio = audio
        cur.meter = QualityMeter(audio.codec_name)
        await audio.start()
        self.on_change("call")
        while not call.ended:
            await asyncio.sleep(self.quality_interval_s)
            if call.ended:
                return
            cur.mos = self._sample(cur, self.quality_interval_s)
            self.on_change("quality")

    def _sample(self, cur: CurrentCall, interval: float) -> float:
        assert cur.audio is not None and cur.meter is not None
        st = cur.audio.session.stats
        return cur.meter.sample(interval_s=interval, received=st.packets_received,
                                expected=st.expected, lost=st.lost, jitter_ms=st.jitter_ms,
                                rtt_ms=st.rtt_ms,
                                remote_fraction_lost=st.remote_fraction_lost).mos

    def _recording(self, cur: CurrentCall, what: str) -> None:
        if what == "started":
            cur.recording = True
            cur.recording_note = (f"Recording: the other party was told "
                                  f"({self.notice_source}) and may object.")
        else:
            cur.recording = False
            cur.recording_note = "The other party objected: recording stopped and deleted."
        self.on_change("recording")

    # -- what the window asks --------------------------------------------------------------------

    def levels(self) -> tuple[float, float]:
        """(input, output) RMS of the blocks the call's sound device last moved (0..1); zeros
        without a device. Computed in the device's thread: reading them costs nothing."""
        cur = self.current
        dev = cur.audio.device if cur is not None and cur.audio is not None else None
        return (dev.in_level, dev.out_level) if dev is not None else (0.0, 0.0)

    def calls_up(self) -> int:
        cur = self.current
        return 1 if cur is not None and not cur.call.ended else 0

    def target_uri(self, number: str) -> str:
        if number.startswith(("sip:", "sips:")):
            return number
        a = self.account
        scheme = "sips" if a.transport == "tls" else "sip"
        params = ";transport=tcp" if a.transport == "tcp" else ""
        user = number.replace("#", "%23")
        return str(SipUri.parse(f"{scheme}:{user}@{a.server.strip()}{params}"))

    def decide(self, text: str) -> tuple[str, DialDecision]:
        """(the cleaned number, the guard's decision); NumberError for text that is not one."""
        number = dialable(text)
        user = number
        if number.startswith(("sip:", "sips:")):
            user = SipUri.parse(number).user or number
        return number, self.guard.on_dial(self.guard_account, user, calls_up=self.calls_up())

    async def dial(self, text: str) -> str:
        """Place a call; the words of a refusal ("" when the call was placed)."""
        self.refusal = ""
        try:
            number, decision = self.decide(text)
        except (NumberError, SipError) as exc:
            self.refusal = f"Not a number: {exc}"
            self.on_change("refused")
            return self.refusal
        if not decision.allowed:
            if decision.emergency:
                self.refusal = (EMERGENCY_UNAVAILABLE[0].upper() + EMERGENCY_UNAVAILABLE[1:]
                                + f". ({decision.rule}: {decision.reason})")
            else:
                self.refusal = f"{decision.reason} ({decision.rule})"
            self._log(number, "outgoing", "refused", self.refusal, 0.0, None, time.time())
            self.on_change("refused")
            return self.refusal
        if self.ua is None:
            self.refusal = "Not connected: " + self.reg_text
            self.on_change("refused")
            return self.refusal
        try:
            call = await self.ua.call(self.target_uri(number), username=self.account.user,
                                      password=self.password or None)
        except (SipError, OSError) as exc:
            self.refusal = f"Cannot place the call: {exc}"
            self.on_change("refused")
            return self.refusal
        self.current = CurrentCall(call, number, emergency=decision.emergency)
        self.on_change("call")
        return ""

    def answer(self) -> None:
        cur = self.current
        if cur is not None and cur.call.direction == "incoming" and not cur.call.ended \
                and cur.call.state is not CallState.ESTABLISHED:
            cur.call.answer()

    def reject(self) -> None:
        cur = self.current
        if cur is not None and cur.call.direction == "incoming" and not cur.call.ended \
                and cur.call.state is not CallState.ESTABLISHED:
            cur.call.reject(486, "Busy Here")

    def hangup(self) -> None:
        cur = self.current
        if cur is not None and not cur.call.ended:
            cur.call.hangup()

    def set_mute(self, on: bool) -> None:
        self.muted = on
        cur = self.current
        if cur is not None and cur.audio is not None:
            cur.audio.muted = on
        self.on_change("call")

    async def set_hold(self, on: bool) -> bool:
        cur = self.current
        if cur is None or cur.call.state is not CallState.ESTABLISHED or cur.held == on:
            return False
        ok = await cur.call.reoffer("sendonly" if on else "sendrecv")
        if ok:
            cur.held = on
            if cur.audio is not None:
                cur.audio.update_direction()
                if on:
                    cur.audio.session.sending = False
        self.on_change("call")
        return ok

    async def transfer(self, text: str, timeout: float = 10.0) -> bool:
        """Blind transfer of the call to ``text`` (REFER, RFC 3515 / RFC 5589 §6): once the
        peer reports the new call answered (its NOTIFY), we hang up; otherwise the call stays
        and ``refusal`` says why."""
        cur = self.current
        if cur is None or cur.call.state is not CallState.ESTABLISHED:
            self.refusal = "No call to transfer."
            self.on_change("refused")
            return False
        try:
            number = dialable(text)
            target = self.target_uri(number)
        except (NumberError, SipError) as exc:
            self.refusal = f"Not a number to transfer to: {exc}"
            self.on_change("refused")
            return False
        cur.transfer_note = f"transferring to {number}…"
        self.on_change("call")
        status = await cur.call.refer(target, timeout)
        outcome = await cur.call.wait_refer_outcome(timeout) if 200 <= status < 300 else None
        cur.transfer_note = ""
        if outcome is None or not 200 <= outcome < 300:
            why = f"{status}" if not 200 <= status < 300 else (
                f"{outcome}" if outcome is not None else "no report from the other party")
            self.refusal = f"The transfer to {number} did not go through ({why}): the call " \
                           "is still yours."
            self.on_change("refused")
            return False
        cur.call.end_reason = f"transferred to {number}"
        cur.call.hangup()
        return True

    def dtmf(self, digits: str) -> bool:
        cur = self.current
        if cur is None or cur.audio is None or cur.call.state is not CallState.ESTABLISHED:
            return False
        neg = cur.call.negotiated
        if neg is None or neg.telephone_event_pt is None:
            return False
        cur.audio.queue_digits(digits)
        return True
