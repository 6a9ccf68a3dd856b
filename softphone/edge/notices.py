"""After the answer: the notices the guard wants heard first (R-REC-2, R-AI-2), each injected
on the media leg of whom it is for; the recording commands (``softphone.edge.recordings``); keys
pressed (RFC 4733 or SIP INFO dtmf-relay) reported to the guard (the objection key)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable

from softphone.edge.call import Call, CallState
from softphone.edge.calls import CallsRoom
from softphone.edge.sip_leg import DTMF_RELAY
from softphone.media.call import CallMedia
from softphone.media.dtmf import DtmfEvent, DtmfKind
from softphone.policy.decision import (
    Decision,
    RecordingAction,
)
from softphone.policy.facts import Party
from softphone.sip.message import SipRequest
from softphone.sip.transaction import ServerTransaction

log = logging.getLogger(__name__)

DTMF_KEYS = "0123456789*#ABCD"
# the recording state told to web phones in a SIP INFO (softphone/webphone/phone.js reads it)
RECORDING_STATE_TYPE = "application/vnd.softphone.recording"



class NoticesRoom(CallsRoom):
    """Notices, recording commands, DTMF to the guard."""

    def _on_answered(self, call: Call, decisions: list[Decision]) -> None:
        """Queue the notices the guard wants heard first (R-REC-2 recording notice with the
        right to object, R-AI-2 disclosure), each on the media leg of whom it is for."""
        self._apply_answer_limits(call, decisions)
        assert self.guard is not None
        for d in decisions:
            if d.call_id is None:
                continue
            other = self.guard.correspondent_leg(d.call_id)
            for n in d.notices:
                leg = other if n.to is Party.CORRESPONDENT else ("a" if other == "b" else "b")
                call.notices.setdefault(leg, []).append((d.call_id, n.notice_id))
        self._play_notices(call)

    def _play_notices(self, call: Call) -> None:
        """Start the queued notices once both legs' media runs (now, or at the end of
        ``_connect``); one at a time per leg."""
        media = call.media
        if call.state not in (CallState.ANSWERED, CallState.CONFIRMED) or not call.notices \
                or media.closed or len(media.sessions) < 2 \
                or not (media.relaying or media.bridge is not None):
            return
        for leg in list(call.notices):
            if leg not in call.playing:
                self._next_notice(call, leg)

    def _next_notice(self, call: Call, leg: str) -> None:
        queue = call.notices.get(leg)
        while queue:
            guard_id, notice_id = queue.pop(0)
            prompt = self._prompt(notice_id)
            if prompt is None:
                # what the notice guards (a recording) then never starts: the guard keeps it
                # pending until the notice is reported played
                log.warning("%s: notice %s cannot be played; what it announces will not start",
                            call.key, notice_id)
                continue
            call.playing.add(leg)
            call.media.inject(leg, prompt[0], functools.partial(
                self._notice_ended, asyncio.get_running_loop(), call, guard_id, notice_id))
            return
        call.notices.pop(leg, None)

    def _notice_ended(self, loop: asyncio.AbstractEventLoop, call: Call, guard_id: str,
                      notice_id: str, media: CallMedia, leg: str) -> None:
        # from inside the media tick: act from the loop, not from there
        loop.call_soon(self._notice_finished, call, leg, guard_id, notice_id)

    def _notice_finished(self, call: Call, leg: str, guard_id: str, notice_id: str) -> None:
        call.playing.discard(leg)
        if call.state is CallState.ENDED or self.guard is None:
            return
        try:
            decision = self.guard.notice_played(guard_id, notice_id)
            self._apply_recording(call, [decision])
            self._next_notice(call, leg)
        except Exception:
            log.exception("%s: after notice %s", call.key, notice_id)
            self._end(call, "internal-error", bye_a=True, bye_b=True)
        self.flush()

    def _apply_recording(self, call: Call, decisions: Iterable[Decision]) -> None:
        """Carry out the guard's recording commands for this call; the web phones in it are
        told when its recording starts or stops (``_tell_recording``)."""
        decisions = list(decisions)
        was_recorded = bool(call.recordings)
        store = self.recordings
        for d in decisions:
            for cmd in d.recording:
                rid = cmd.recording_id
                if store is None:
                    log.warning("%s: recording %s: %s, but the edge has no recordings folder",
                                call.key, rid, cmd.action.value)
                elif cmd.action is RecordingAction.START:
                    if call.state is not CallState.ENDED and not call.media.closed:
                        store.start(rid, self.media_settings.bridge_rate)
                        call.recordings.add(rid)
                elif cmd.action is RecordingAction.STOP:
                    store.stop(rid)
                    call.recordings.discard(rid)
                else:  # STOP_AND_DELETE (objection) or DELETE
                    store.delete(rid)
                    call.recordings.discard(rid)
                    log.info("%s: recording %s deleted (%s)", call.key, rid, d.rule_id)
        self._refresh_recorder(call)
        if bool(call.recordings) != was_recorded:
            objected = any(c.action is RecordingAction.STOP_AND_DELETE
                           for d in decisions for c in d.recording)
            self._tell_recording(call, bool(call.recordings), objected)

    def _tell_recording(self, call: Call, on: bool, objected: bool) -> None:
        """A SIP INFO (``application/vnd.softphone.recording``: ``state=on`` or ``state=off``,
        ``reason=objection`` when a key stopped it) on each leg of the call that is a web
        phone (registered over WebSocket), which shows REC while it is on. Desk phones hear
        the notice and are not sent an INFO they have no use for; the answer is not awaited."""
        body = f"state={'on' if on else 'off'}\r\n"
        if objected and not on:
            body += "reason=objection\r\n"
        for leg in (call.a, call.b):
            if leg.kind == "browser":
                leg.info(RECORDING_STATE_TYPE, body.encode())

    def _refresh_recorder(self, call: Call) -> None:
        media = call.media
        if media.closed or self.recordings is None:
            return
        writers = [self.recordings.active[r].write for r in sorted(call.recordings)
                   if r in self.recordings.active]
        if not writers:
            if media.recorder is not None:
                media.set_recorder(None)
        elif len(writers) == 1:
            media.set_recorder(writers[0])
        else:
            def fan_out(pcm: bytes) -> None:
                for write in writers:
                    write(pcm)

            media.set_recorder(fan_out)

    def _media_dtmf(self, key: str, media: CallMedia, leg: str, event: DtmfEvent) -> None:
        """An RFC 4733 digit on a leg: the guard hears every completed key (the objection
        key from the correspondent stops and deletes the recording), and a browser on the
        other leg gets it as SIP INFO (RFC 4733 goes on by itself between desk phones)."""
        if event.kind is not DtmfKind.END:
            return
        call = self.calls.get(key)
        if call is not None and call.state is not CallState.ENDED and leg in ("a", "b"):
            other = call.leg("b" if leg == "a" else "a")
            if other.kind == "browser" and event.digit in DTMF_KEYS:
                other.send_dtmf(event.digit)
        self._on_digit(call, leg, event.digit)
        if call is not None:
            self.flush()  # not a SIP event: what it sent (an INFO) leaves now

    def _on_digit(self, call: Call | None, leg: str, digit: str) -> None:
        if call is None or call.app or self.guard is None or call.state is CallState.ENDED:
            return
        self._apply_recording(call, self.guard.dtmf(call.key, leg, digit))

    def _on_info(self, req: SipRequest, txn: ServerTransaction) -> None:
        """SIP INFO in a call: 200; an application/dtmf-relay body (``Signal=9``) is a key
        press like an RFC 4733 one."""
        call = self.calls.get(req.call_id)
        leg = "a"
        if call is None:
            call, leg = self._by_b.get(req.call_id), "b"
        if call is None:
            self._respond(txn, 481, "Call/Transaction Does Not Exist")
            return
        self._respond(txn, 200, "OK")
        if req.method == "INFO" and (req.content_type or "").lower() == DTMF_RELAY:
            for line in req.body.decode("utf-8", "replace").splitlines():
                name, _, value = line.partition("=")
                if name.strip().lower() == "signal" and len(value.strip()) == 1:
                    digit = value.strip().upper()
                    if digit in DTMF_KEYS:
                        self._relay_digit(call, leg, digit)
                    self._on_digit(call, leg, digit)

    def _relay_digit(self, call: Call, leg: str, digit: str) -> None:
        """A key pressed as SIP INFO (a browser's) goes on as RFC 4733 to the other party
        when it negotiated telephone-event (desk phones, IVRs on the trunk)."""
        call.leg("b" if leg == "a" else "a").send_dtmf(digit)
