"""A call's life: its media anchored (``CallMedia``, ports of leg "a" and "b"), leg b placed
(parallel forking to every device, the trunk with the caller's credentials), the answers of leg
b (provisional, early media, the first 2xx wins, late 2xx ACKed and BYEd), the delayed offer,
the guard's time limit, and the one way every call ends (``_end``: ports back, guard released,
recordings closed, one line in calls.jsonl)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from softphone.codecs.offer_answer import (
    Negotiated,
    NoCommonCodec,
    OfferAnswerError,
    answer_offer,
    build_offer,
    process_answer,
)
from softphone.codecs.sdp import SdpError, SessionDescription, parse_sdp
from softphone.edge.bindings import (
    Binding,
)
from softphone.edge.browser import WEB_FORK_LEG, BrowserLegs, is_browser, is_browser_offer
from softphone.edge.call import Call, CallState
from softphone.edge.calllog import CallRecord, LegRecord
from softphone.edge.registrar import binding_destination
from softphone.edge.room import ALLOW, SDP, Room, quoted
from softphone.edge.sip_leg import CalleeLeg, CallerLeg, Fork
from softphone.media.call import CallMedia
from softphone.media.ports import PortsExhausted
from softphone.media.session import RtpSession
from softphone.policy.decision import (
    Decision,
)
from softphone.sip.auth import AuthError, DigestClient
from softphone.sip.core import Address, new_call_id, new_tag
from softphone.sip.dialog import Dialog, DialogError, DialogState
from softphone.sip.errors import SipParseError
from softphone.sip.message import Headers, SipRequest, SipResponse
from softphone.sip.transaction import ClientTransaction, ServerTransaction, Transaction
from softphone.sip.uri import SipUri

log = logging.getLogger(__name__)



class CallsRoom(Room):
    """Placing, answering and ending calls."""

    def _new_media(self, key: str, *, user: str = "", emergency: bool = False) -> CallMedia:
        ms = self.media_settings
        return CallMedia(key, self.allocator, self.scheduler, bridge_rate=ms.bridge_rate,
                         jitter_min_ms=ms.jitter_min_ms, jitter_max_ms=ms.jitter_max_ms,
                         rtp_timeout=ms.rtp_timeout,
                         on_timeout=functools.partial(self._media_timeout, key),
                         on_dtmf=functools.partial(self._media_dtmf, key),
                         user=user, emergency=emergency, latch=ms.latch)

    @functools.cached_property
    def browsers(self) -> BrowserLegs:
        """Offer/answer of the browser legs (aiortc): ``softphone.edge.browser``."""
        return BrowserLegs(self)

    def _anchor(self, req: SipRequest, txn: ServerTransaction,
                offer: SessionDescription | None, *, legs: tuple[str, ...],
                release: bool, then: Callable[[CallMedia, Negotiated | None], None],
                user: str = "", emergency: bool = False) -> None:
        """The call's media with ``legs`` reserved and our answer to the caller's offer (None
        for an INVITE without one: ``_our_offer`` goes in the 200 OK), given to ``then`` (at
        once, or once aiortc answered a browser's offer); nothing when the caller was refused
        (503 no ports, 488 no codec), its guard channel given back if ``release``.
        The ports count against ``user``'s share (none for ``emergency``, which may take the
        range's emergency share); leg a's RTP may latch to the address the INVITE came from."""
        ms = self.media_settings
        media = self._new_media(req.call_id, user=user, emergency=emergency)
        media.allow_sources("a", (txn.peer.host,))
        status, reason, extra = 0, "", []
        try:
            pair_a = media.reserve("a")
            for leg in legs[1:]:
                media.reserve(leg)
            browser = offer is not None and is_browser_offer(offer)
            a_neg = None if offer is None or browser else \
                answer_offer(offer, address=ms.host, port=pair_a.rtp, order=self.codecs)
        except PortsExhausted:
            status, reason = 503, "Service Unavailable: no media ports"
            extra = [("Retry-After", str(self.retry_after))]
        except NoCommonCodec as exc:
            status, reason, extra = 488, "Not Acceptable Here", [("Warning", exc.warning)]
        except OfferAnswerError as exc:
            status, reason = 488, "Not Acceptable Here"
            extra = [("Warning", f'399 {self.domain} "{exc}"')]
        else:
            if browser:
                assert offer is not None
                self.browsers.answer(media, txn, offer, release=release, then=then)
            else:
                then(media, a_neg)
            return
        media.close()
        if release:
            self._release_guard(req.call_id)
        self._respond(txn, status, reason, extra=extra)

    def _open_call(self, req: SipRequest, txn: ServerTransaction, source: Address,
                   caller: str, callee: str, media: CallMedia, a_neg: Negotiated | None, *,
                   direction: str, digest: DigestClient | None = None, app: str = "",
                   warnings: Iterable[tuple[str, str]] = (), billable: bool = False,
                   policy: Iterable[str] = ()) -> Call:
        """The one place a call is made, its media anchored: its record for the call log,
        our offer on leg "a" when the caller sent none, and the live calls' table."""
        record = CallRecord(call_id=req.call_id, started=time.time(), caller=caller,
                            callee=callee, billable=billable, policy=sorted(set(policy)))
        a = CallerLeg(self, media, req, txn, source, new_tag(), a_neg,
                      self._our_offer(media, a_neg))
        call = Call(key=req.call_id, caller=caller, callee=callee, a=a,
                    b=CalleeLeg(self, media, digest), media=media, record=record,
                    direction=direction, app=app, warnings=list(warnings))
        self.calls[call.key] = call
        self.stats["calls"] += 1
        return call

    async def _start_app(self, call: Call) -> None:
        """600 returns what it hears (audio-level, through the jitter buffer); 601 plays a tone.
        With a delayed offer this runs at the caller's ACK, which carries the answer."""
        if call.a.neg is None:
            await call.a.answered.wait()
            if call.a.neg is None or call.state is CallState.ENDED:
                return
        await call.media.attach("a", call.a.neg)
        if call.state is CallState.ENDED:
            return
        call.media.connect()  # one leg: always the bridge
        for leg in call.apps.values():  # the app leg (routing) joins the caller's bridge leg
            leg.answer()
            leg.attach(call.media, "a")

    async def _connect(self, call: Call, b_neg: Negotiated) -> None:
        media = call.media
        media.allow_sources("b", self._b_sources(call))
        if call.a.neg is None:
            # delayed offer: leg "b" now, leg "a" when the caller's ACK brings the answer
            await media.attach("b", b_neg)
            await call.a.answered.wait()
            if call.a.neg is None or call.state is CallState.ENDED or media.closed:
                return
        await media.attach("a", call.a.neg)
        await media.attach("b", b_neg)
        if call.state is not CallState.ENDED and not media.closed:
            media.connect()
            self._play_notices(call)

    def _our_offer(self, media: CallMedia, a_neg: Negotiated | None) -> SessionDescription | None:
        """Our offer on leg "a" when the caller sent none (RFC 3261 §13.2.1: it goes in the
        200 OK, the answer comes back in the ACK); None when we answer the caller's offer."""
        if a_neg is not None:
            return None
        return build_offer(address=self.media_settings.host, port=media.pairs["a"].rtp,
                           order=self.codecs)

    @staticmethod
    def _a_sdp(call: Call) -> bytes:
        """The SDP for the caller: our answer, or our offer when its INVITE had none."""
        if call.a.neg is not None:
            return call.a.neg.sdp
        assert call.a.offer is not None
        return call.a.offer.to_bytes()

    def _on_ack_answer(self, call: Call, ack: SipRequest) -> None:
        """The caller's ACK answers the offer of our 200 OK: leg "a" media starts now. An
        ACK with no usable answer ends the call (RFC 3261 §13.2.1: the UAS sends BYE)."""
        assert call.a.offer is not None
        try:
            if not ack.body or ack.content_type != SDP:
                raise OfferAnswerError("the ACK carries no SDP answer to our offer")
            call.a.neg = process_answer(call.a.offer, parse_sdp(ack.body))
        except (SdpError, OfferAnswerError) as exc:
            log.warning("call %s: delayed offer not answered: %s", call.key, exc)
            self._end(call, "bad-ack-sdp", bye_a=True, bye_b=True)
            return
        call.a.answered.set()  # _connect / _start_app, waiting since the 200 OK, go on

    def _b_sources(self, call: Call) -> set[str]:
        """Where leg b's signalling comes from: the device that answered (before the answer,
        every device rung), as addressed and as it registered from; its RTP may latch there."""
        dests = {f.binding_source for f in call.b.rung()}
        hosts = {d.host for d in dests}
        if call.direction in ("local", "inbound"):
            for b in self.location.lookup(call.callee, self.clock()):
                if binding_destination(b) in dests:
                    hosts.add(b.source[1])
                    if b.path:  # behind a front proxy: the phone's media is at its Contact
                        with contextlib.suppress(SipParseError):
                            hosts.add(SipUri.parse(b.contact).host_no_brackets)
        return hosts

    def _prepare_b(self, call: Call) -> bytes:
        """Leg b's SDP offer (on its reserved pair), Call-ID and tag; returns the body."""
        pair_b = call.media.reserve("b")
        call.b.offer = build_offer(address=self.media_settings.host, port=pair_b.rtp,
                                   order=self.codecs)
        call.b.call_id = new_call_id(self.domain)
        call.b.tag = new_tag()
        self._by_b[call.b.call_id] = call
        return call.b.offer.to_bytes()

    def _send_b_invite(self, call: Call, ruri: str, dest: Address, from_value: str,
                       to_value: str, body: bytes, *, content_type: str = SDP,
                       extra: Iterable[tuple[str, str]] = (),
                       offer: SessionDescription | None = None, leg: str = "b") -> None:
        h = Headers()
        h.add("Max-Forwards", "70")
        h.add("From", from_value)
        h.add("To", to_value)
        h.add("Call-ID", call.b.call_id)
        h.add("CSeq", "1 INVITE")
        h.add("Contact", self._contact(dest.transport, call.b.call_id))
        h.add("Allow", ALLOW)
        h.add("User-Agent", self.user_agent)
        for name, value in extra:
            h.add(name, value)
        h.add("Content-Type", content_type)
        req = SipRequest("INVITE", ruri, h, body)
        txn = self.core.send_request(req, dest, self.clock())
        call.b.forks.append(Fork(binding_source=dest, request=req, txn=txn, offer=offer, leg=leg))

    def _fork(self, call: Call, bindings: list[Binding]) -> None:
        """Leg b to every device of the callee: desk phones with our SDP offer now, browsers
        with aiortc's once made (its own port beside desk phones: leg "w")."""
        body = self._prepare_b(call)
        display = self._caller_display(call)
        from_uri = f"sip:{call.caller}@{self.domain}"
        from_value = (f'"{display}" ' if display else "") + f"<{from_uri}>;tag={call.b.tag}"
        web = [b for b in bindings if is_browser(b)]
        for b in bindings:
            if b not in web:
                self._send_b_invite(call, b.contact, binding_destination(b), from_value,
                                    f"<sip:{call.callee}@{self.domain}>", body,
                                    extra=[("Route", hop) for hop in b.path])
        if web:
            call.b.ringing_browsers = True
            self._spawn(self.browsers.ring(call, web, from_value,
                                           WEB_FORK_LEG if len(web) < len(bindings) else "b"),
                        call)

    def _caller_display(self, call: Call) -> str:
        """The display name of our INVITE's From: a local caller's name from the user table
        (what its phone claims is not checked, unless ``trust_display_name``); a caller from
        the trunk keeps what the provider sent. Quoted-string safe."""
        if self.trust_display_name or call.direction == "inbound":
            try:
                claimed = call.a.invite.from_.display or ""
            except SipParseError:
                claimed = ""
            return quoted(claimed)
        return quoted(self.display_names.get(call.caller, ""))

    def _fork_trunk(self, call: Call) -> None:
        """One INVITE to the provider, as the caller's own upstream account."""
        assert self.trunk is not None
        body = self._prepare_b(call)
        ruri, from_uri, to_uri = self.trunk.outbound_uris(call.caller, call.callee)
        self._send_b_invite(call, ruri, self.trunk.address, f"<{from_uri}>;tag={call.b.tag}",
                            f"<{to_uri}>", body)

    def _answer_a(self, call: Call) -> None:
        resp = self._respond(call.a.txn, 200, "OK", to_tag=call.a.tag, body=self._a_sdp(call),
                             contact=True, extra=[("Allow", ALLOW), *call.warnings])
        try:
            call.a.dialog = Dialog.from_uas(call.a.invite, resp)
        except DialogError as exc:
            log.warning("caller dialog not created: %s", exc)
        call.state = CallState.ANSWERED
        call.a.answer()
        call.answered_at = self.clock()
        call.record.answered = time.time()
        self.stats["answered"] += 1
        if self.guard is not None and not call.app:
            self._on_answered(call, self.guard.answered(call.key))

    def _apply_answer_limits(self, call: Call, decisions: Iterable[Decision]) -> None:
        """The guard's time limit for an answered call (``max_duration_s``: the trial minutes
        left, R-LIMIT-7): when it is up the edge ends the call, BYE on both legs."""
        limits = [d.max_duration_s for d in decisions if d.max_duration_s is not None]
        if not limits or call.state is CallState.ENDED:
            return
        seconds = max(0, min(limits))
        log.info("%s: the guard allows %d s of conversation", call.key, seconds)
        call.limit_timer = self._call_later(
            seconds, functools.partial(self._time_up, call.key, seconds))

    def _time_up(self, key: str, seconds: int) -> None:
        call = self.calls.get(key)
        if call is None or call.state not in (CallState.ANSWERED, CallState.CONFIRMED):
            return
        log.info("%s: %d s allowed by the guard are up: ending the call", key, seconds)
        self._end(call, "time-limit", bye_a=True, bye_b=True)
        self.flush()

    def _fork_of(self, call: Call, txn: ClientTransaction) -> Fork | None:
        for f in call.b.forks:
            if f.txn is txn:
                return f
        return None

    def _on_response(self, resp: SipResponse, txn: ClientTransaction) -> None:
        if txn.request.method == "BYE" and resp.status >= 200:
            self._on_bye_response(resp, txn)
            return
        call = self._by_b.get(resp.call_id)
        if call is None or txn.request.method != "INVITE":
            return  # BYE/CANCEL answers: nothing to do
        fork = self._fork_of(call, txn)
        if fork is None:
            return
        status = resp.status
        if status in (401, 407) and call.b.digest is not None:
            if self._authorize_fork(call, fork, resp):
                return
        if status < 200:
            self._on_provisional(call, fork, resp)
        elif status < 300:
            self._on_b_answer(call, fork, resp)
        else:
            fork.final = status
            self._on_fork_failed(call, fork, status, resp.reason)

    def _authorize_fork(self, call: Call, fork: Fork, resp: SipResponse) -> bool:
        """Answer the provider's challenge with the caller's own credentials (once per
        challenge kind); False when it cannot be answered and the fork fails."""
        if fork.auth_tries >= 2 or call.state not in (CallState.ROUTING, CallState.EARLY) \
                or call.b.digest is None:
            return False
        try:
            retry = call.b.digest.authorize(fork.request, resp)
        except AuthError as exc:
            log.warning("call %s: upstream challenge not answered: %s", call.key, exc)
            return False
        fork.auth_tries += 1
        fork.request = retry
        fork.txn = self.core.send_request(retry, fork.binding_source, self.clock())
        return True

    def _b_negotiate(self, call: Call, fork: Fork, resp: SipResponse) -> Negotiated | None:
        if fork.offer is not None and resp.body:
            return self.browsers.negotiated(fork, resp.body)
        if not resp.body or call.b.offer is None:
            return None
        try:
            return process_answer(call.b.offer, parse_sdp(resp.body))
        except (SdpError, OfferAnswerError) as exc:
            log.warning("bad SDP answer from callee on %s: %s", call.key, exc)
            return None

    def _on_provisional(self, call: Call, fork: Fork, resp: SipResponse) -> None:
        if call.state not in (CallState.ROUTING, CallState.EARLY) or resp.status == 100:
            return
        if resp.to.tag and fork.dialog is None:
            try:
                fork.dialog = Dialog.from_uac(fork.request, resp)
            except DialogError:
                pass
        call.state = CallState.EARLY
        # a browser's early answer waits for its 200 (its port may still be leg "w")
        neg = self._b_negotiate(call, fork, resp) if fork.offer is None else None
        if neg is not None and not call.early_sdp_sent and call.a.neg is not None:
            # early media (183): anchor it and give the caller our answer now
            call.b.neg = neg
            call.early_sdp_sent = True
            self._respond(call.a.txn, 183, "Session Progress", to_tag=call.a.tag,
                          body=self._a_sdp(call), contact=True, extra=call.warnings)
            self._spawn(self._connect(call, neg), call)
        elif not call.ringing_sent and not call.early_sdp_sent:
            call.ringing_sent = True
            self._respond(call.a.txn, 180, "Ringing", to_tag=call.a.tag, contact=True,
                          extra=call.warnings)

    def _on_b_answer(self, call: Call, fork: Fork, resp: SipResponse) -> None:
        now = self.clock()
        try:
            dialog = Dialog.from_uac(fork.request, resp)
        except DialogError as exc:
            log.warning("2xx without a usable dialog on %s: %s", call.key, exc)
            return
        if call.direction == "emergency":  # the gateway's Contact, no longer the route
            fork.binding_source = self._emergency_next_hop(dialog, fork.binding_source)
        ack = dialog.create_ack()
        # §13.2.2.4: the ACK of a 2xx carries the INVITE's credentials (§22)
        for name in ("Authorization", "Proxy-Authorization"):
            for value in fork.request.headers.get_all(name):
                ack.headers.add(name, value)
        self.core.send_ack_2xx(ack, fork.binding_source, now)
        if call.b.winner is not None and call.b.winner is not fork or call.state is CallState.ENDED:
            # a second device answered too late (§13.2.2.4): ACK and BYE it
            bye = dialog.create_request("BYE")
            self.core.send_request(bye, fork.binding_source, now)
            return
        call.b.winner = fork
        fork.dialog = dialog
        fork.final = resp.status
        call.b.stop_ringing()
        if fork.offer is not None or WEB_FORK_LEG in call.media.pairs:
            self.browsers.won(call, fork)
        neg = self._b_negotiate(call, fork, resp) or call.b.neg
        if neg is None:
            self._end(call, "bad-answer-sdp", bye_b=True, status=502,
                      reason="Bad Gateway: the callee's SDP is unusable")
            return
        changed = call.b.neg is None or call.b.neg.codec != neg.codec
        call.b.neg = neg
        call.b.answer()
        self._answer_a(call)
        if changed or not call.early_sdp_sent:
            self._spawn(self._connect(call, neg), call)

    def cancel_fork(self, fork: Fork, now: float) -> None:
        fork.final = -1
        try:
            self.core.cancel(fork.txn, now)
        except Exception as exc:  # already terminated: nothing to cancel
            log.debug("cancel skipped: %s", exc)

    def _on_fork_failed(self, call: Call, fork: Fork, status: int, reason: str) -> None:
        if call.state not in (CallState.ROUTING, CallState.EARLY):
            return
        if any(f.final == 0 for f in call.b.forks) or call.b.ringing_browsers:
            return  # other devices still ringing (or browsers about to)
        best = min((f.final for f in call.b.forks if f.final > 0), default=status)
        if best in (401, 407) and call.direction == "outbound":
            best, reason = 403, "Forbidden: the provider refused the upstream credentials"
        elif best in (401, 407):
            best, reason = 500, "Server Internal Error"
        elif best == 408:
            best, reason = 480, "Temporarily Unavailable"
        if call.direction == "emergency":
            self._emergency_failed(call, best, reason or "Call Failed")
            return
        self._respond(call.a.txn, best, reason or "Call Failed", to_tag=call.a.tag)
        self._end(call, f"callee-{best}", status=best)

    def _on_bye_response(self, resp: SipResponse, txn: ClientTransaction) -> None:
        """A provider may challenge our BYE: answer once with the caller's own account."""
        digest = self._bye_auth.pop(txn, None)
        if digest is None or resp.status not in (401, 407):
            return
        try:
            retry = DigestClient(digest.username, digest.password).authorize(txn.request, resp)
        except AuthError as exc:
            log.warning("BYE to the provider not authorised: %s", exc)
            return
        self.core.send_request(retry, txn.peer, self.clock())

    def _on_txn_failure(self, txn: Transaction) -> None:
        if not isinstance(txn, ClientTransaction):
            return
        self._bye_auth.pop(txn, None)
        req = txn.request
        if req.method != "INVITE":
            return
        call = self._by_b.get(req.call_id)
        if call is None:
            return
        fork = self._fork_of(call, txn)
        if fork is None or fork.final != 0:
            return
        fork.final = 408
        self._on_fork_failed(call, fork, 408, "Request Timeout")

    def _media_timeout(self, key: str, media: CallMedia, leg: str) -> None:
        call = self.calls.get(key)
        if call is not None:
            self._end(call, f"rtp-timeout:{leg}", bye_a=True, bye_b=True)
            self.flush()
        else:
            media.close()

    def send_in_dialog(self, request: SipRequest, dest: Address) -> None:
        """A request a leg made in its dialog (INFO); its answer is not awaited."""
        self.core.send_request(request, dest, self.clock())

    def send_bye(self, dialog: Dialog | None, dest: Address,
                  digest: DigestClient | None = None) -> None:
        if dialog is None or dialog.state is DialogState.TERMINATED:
            return
        try:
            bye = dialog.create_request("BYE")
        except DialogError:
            return
        txn = self.core.send_request(bye, dest, self.clock())
        if digest is not None:
            self._bye_auth[txn] = digest
        dialog.terminate()

    def _end(self, call: Call, cause: str, *, bye_a: bool = False, bye_b: bool = False,
             status: int = 0, reason: str = "", extra: Iterable[tuple[str, str]] = ()) -> None:
        if call.state is CallState.ENDED:
            return
        now = self.clock()
        answered = call.state in (CallState.ANSWERED, CallState.CONFIRMED)
        if not answered and status and call.state in (CallState.ROUTING, CallState.EARLY) \
                and not call.a.txn.terminated and cause not in ("cancelled",) \
                and not cause.startswith("callee-"):
            self._respond(call.a.txn, status, reason or "Call Failed", to_tag=call.a.tag,
                          extra=extra)
        elif not answered and (bye_a or cause.startswith("rtp-timeout") or cause == "media-error"):
            if not call.a.txn.terminated:
                self._respond(call.a.txn, 500, "Server Internal Error", to_tag=call.a.tag)
        call.state = CallState.ENDED
        for app in call.apps.values():
            app.hang_up(cause)
        if call.limit_timer is not None:
            call.limit_timer.cancel()
        # the edge BYEs the parties still in the call; the one that hung up has left
        if bye_a and answered:
            call.a.hang_up(cause)
        else:
            call.a.left()
        if bye_b:
            call.b.hang_up(cause)
        else:
            call.b.left()
        self.calls.pop(call.key, None)
        if call.b.call_id:
            self._by_b.pop(call.b.call_id, None)
        if call.direction == "emergency" and not call.app:
            self.callbacks.mark(call.caller)  # the call-back window runs from the end too
        token = self._contact_users.pop(call.key, None)
        self._contact_users.pop(call.b.call_id, None)
        if token is not None and self.emergency_lane is not None:
            self.emergency_lane.release(token)
        duration = (now - call.answered_at) if call.answered_at is not None else 0.0
        if self.guard is not None and not call.app:
            self._apply_recording(call, self.guard.released(call.key, answered=answered,
                                                            duration=duration))
        if self.recordings is not None:
            for rid in sorted(call.recordings):  # whatever the guard said, the file is closed
                self.recordings.stop(rid)
            call.recordings.clear()
        if not answered:
            self.stats["failed"] += 1
        rec = call.record
        rec.ended = time.time()
        rec.end_cause = cause
        rec.status = status or (200 if answered else 0)
        rec.legs = self._leg_records(call)
        rec.transcoded = call.media.bridge is not None and not call.app
        call.media.close()
        self.call_log.write(rec)

    def _leg_records(self, call: Call) -> list[LegRecord]:
        out: list[LegRecord] = []
        for name, pair in call.media.pairs.items():
            neg = call.leg(name).neg
            sess = call.media.sessions.get(name)
            out.append(LegRecord(
                role="caller" if name == "a" else "callee",
                user=call.caller if name == "a" else call.callee,
                transport=call.leg(name).transport(),
                codec=neg.codec.name if neg else "", local_rtp=pair.rtp,
                remote_rtp=f"{neg.remote_address}:{neg.remote_port}" if neg else "",
                packets_in=sess.packets_received if sess else 0,
                packets_out=sess.packets_sent if sess else 0,
                lost=sess.reception.lost if sess else 0,
                jitter_ms=round(sess.reception.jitter_ms, 2) if sess else 0.0,
                rtt_ms=round(sess.rtt * 1000, 1) if sess and sess.rtt is not None else None,
                **_guard_counts(sess)))
        return out

    async def close(self) -> None:
        """End every call (BYE both legs) and release every port."""
        for call in list(self.calls.values()):
            self._end(call, "shutdown", bye_a=True, bye_b=True)
        self.flush()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _guard_counts(sess: RtpSession | None) -> dict[str, Any]:
    """What a leg's source guard did, for its call-log line (``LegRecord``)."""
    if sess is None:
        return {}
    latched = sess.stats.latched
    return {"latched": f"{latched[0]}:{latched[1]}" if latched else "",
            "foreign": sess.foreign_source, "source_switches": sess.source_switches,
            "flushed": sess.flushed}
