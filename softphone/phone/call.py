"""Calls: one INVITE dialog per :class:`Call` (RFC 3261 §13-§15), both directions.

:class:`CallEngine` is the INVITE half of the phone: it places calls (our SDP offer,
OPUS-PCMA-PCMU by default, digest retries on 401/407, forked 2xx ACKed and the extra ones
BYEd, §13.2.2.4), takes incoming INVITEs (optionally a 180, then 200 after ``answer_delay``
in auto-answer mode; a late offer answered in the ACK, §13.2.1), answers re-INVITE/UPDATE
offers, CANCEL with 487, and ends calls with BYE. The phone's transport, core and identity
come from the :class:`~softphone.phone.ua.UserAgent` that owns the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from softphone.codecs.offer_answer import (
    Negotiated,
    NoCommonCodec,
    OfferAnswerError,
    answer_offer,
    build_offer,
    process_answer,
)
from softphone.codecs.sdp import SdpError, SessionDescription, parse_sdp
from softphone.media.ports import PortPair
from softphone.phone.account import (
    ALLOW,
    SDP,
    SUPPORTED,
    Credentials,
    UaError,
    request_destination,
    uri_destination,
)
from softphone.phone.events import CallState, CallStateChanged, IncomingCall, TransactionOutcome
from softphone.sip.core import Address, new_call_id, new_tag
from softphone.sip.dialog import Dialog, DialogError, DialogState, ack_and_bye
from softphone.sip.errors import SipError, SipParseError
from softphone.sip.events import ResponseReceived, TransactionTimeout, TransportFailure
from softphone.sip.message import Headers, SipRequest, SipResponse
from softphone.sip.transaction import ClientTransaction, ServerTransaction
from softphone.sip.transport import sip_host
from softphone.sip.uri import NameAddr, SipUri

if TYPE_CHECKING:
    from softphone.phone.ua import UserAgent

log = logging.getLogger(__name__)

class Call:
    """One call leg (our side of one INVITE dialog)."""

    def __init__(self, engine: CallEngine, *, call_id: str, direction: str,
                 invite: SipRequest, local_tag: str) -> None:
        self.engine = engine
        self.call_id = call_id
        self.direction = direction  # "outgoing" | "incoming"
        self.invite = invite
        self.local_tag = local_tag
        self.state = CallState.CALLING
        self.dialog: Dialog | None = None
        self.negotiated: Negotiated | None = None
        self.local_offer: SessionDescription | None = None
        self.remote_offer: SessionDescription | None = None
        self.status: int | None = None      # final status of the INVITE (or of the end)
        self.reason: str = ""
        self.end_reason: str = ""
        self.bye_status: int | None = None  # the final response to our BYE
        self.final_response: SipResponse | None = None  # to our INVITE
        self.peer: Address | None = None    # where an incoming INVITE came from
        self.rtp_port: int | None = None
        self.port_pair: PortPair | None = None  # bound by the phone's media ports
        self.client_txn: ClientTransaction | None = None
        self.server_txn: ServerTransaction | None = None
        self.auth_tries = 0
        self.credentials = Credentials(None, None)
        self._hangup_requested = False
        self._changed = asyncio.Event()
        self._bye_txn: ClientTransaction | None = None
        self._answer_handle: asyncio.TimerHandle | None = None
        # run when the call ends, before its RTP ports go back: media that uses the
        # call's sockets stops reading them first (the fds are never closed under it)
        self.on_end: list[Callable[[Call], None]] = []
        # a blind transfer (RFC 3515): the status lines the peer's NOTIFYs reported
        self.refer_progress: list[int] = []
        self._refer_changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Call {self.direction} {self.call_id} {self.state.value}>"

    @property
    def ended(self) -> bool:
        return self.state is CallState.TERMINATED

    def _set_state(self, state: CallState) -> None:
        if self.state is state or self.state is CallState.TERMINATED:
            return
        self.state = state
        self._changed.set()
        self._changed = asyncio.Event()
        if state is CallState.TERMINATED:
            self.engine._call_ended(self)
        self.engine.ua._emit(CallStateChanged(self, state))

    async def wait_state(self, *states: CallState, timeout: float) -> CallState:
        """Wait until the call is in one of ``states`` (or terminated); return its state."""
        async with asyncio.timeout(timeout):
            while self.state not in states and self.state is not CallState.TERMINATED:
                await self._changed.wait()
        return self.state

    async def wait_answered(self, timeout: float = 32.0) -> bool:
        try:
            state = await self.wait_state(CallState.ESTABLISHED, timeout=timeout)
        except TimeoutError:
            return False
        return state is CallState.ESTABLISHED

    async def wait_ended(self, timeout: float = 32.0) -> None:
        await self.wait_state(CallState.TERMINATED, timeout=timeout)

    # -- control ------------------------------------------------------------------------

    def answer(self) -> None:
        """Accept an incoming call (200 with our SDP answer)."""
        self.engine._answer(self)
        self.engine.ua._flush()

    def reject(self, status: int = 486, reason: str = "Busy Here") -> None:
        self.engine._reject(self, status, reason)
        self.engine.ua._flush()

    def hangup(self) -> None:
        """BYE once established; CANCEL while an outgoing INVITE is pending; 603 to an
        unanswered incoming call."""
        self.engine._hangup(self)

    async def reoffer(self, direction: str = "sendrecv", timeout: float = 10.0) -> bool:
        """A re-INVITE with a new offer on the same port: ``sendonly`` puts the peer on hold,
        ``sendrecv`` resumes (RFC 3264 §8.4). True once a 2xx with a usable answer came."""
        fut = self.engine._reinvite(self, direction)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return False

    async def refer(self, target: str, timeout: float = 10.0) -> int:
        """Blind transfer (RFC 3515, RFC 5589 §6): REFER the peer to ``target``; the final
        status of the REFER (202: accepted), 408 on no answer."""
        fut = self.engine._refer(self, target)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return 408

    async def wait_refer_outcome(self, timeout: float = 10.0) -> int | None:
        """The final status the transfer target gave, from the peer's NOTIFYs (sipfrag,
        RFC 3515 §2.4.5); None if none came in time."""
        try:
            async with asyncio.timeout(timeout):
                while not any(s >= 200 for s in self.refer_progress):
                    await self._refer_changed.wait()
        except TimeoutError:
            return None
        return next(s for s in self.refer_progress if s >= 200)

    def _refer_notified(self, status: int) -> None:
        self.refer_progress.append(status)
        self._refer_changed.set()
        self._refer_changed = asyncio.Event()

    async def hangup_and_wait(self, timeout: float = 10.0) -> None:
        self.hangup()
        await self.wait_ended(timeout)



class CallEngine:
    """The INVITE half of a :class:`~softphone.phone.ua.UserAgent` (see the module docstring)."""

    def __init__(self, ua: UserAgent) -> None:
        self.ua = ua

    def _call_ended(self, call: Call) -> None:
        self.ua.stats["ended"] += 1
        for hook in call.on_end:
            try:
                hook(call)
            except Exception:
                log.exception("end hook of %s failed", call.call_id)
        self.ua.ports.release(call)
        if call._answer_handle is not None:
            call._answer_handle.cancel()
        if call.dialog is not None:
            call.dialog.terminate()
            self.ua.dialogs.remove(call.dialog)
        # Keep the record a little for late retransmissions/lookups, then forget it.
        asyncio.get_running_loop().call_later(
            max(5.0, 64 * self.ua.t1), lambda: self.ua.calls.pop(call.call_id, None)
            if self.ua.calls.get(call.call_id) is call else None)


    def _dialog_dest(self, call: Call, dialog: Dialog) -> Address:
        if dialog.route_set:
            first = NameAddr.parse(dialog.route_set[0])
            dest = uri_destination(first.uri, default_transport=self._call_transport(call))
        else:
            dest = uri_destination(dialog.remote_target,
                                   default_transport=self._call_transport(call))
        peer = call.peer
        if (peer is not None and peer.reliable and dest.transport == peer.transport
                and dest.host == peer.host):
            # Requests towards the caller reuse the connection its INVITE came on: a phone
            # behind NAT, or sipp over TCP, does not listen on its Contact port (RFC 5626).
            return peer
        return dest

    def _call_transport(self, call: Call) -> str:
        if call.peer is not None:
            return call.peer.transport
        if call.client_txn is not None:
            return call.client_txn.peer.transport
        return "udp"


    # -- outgoing calls -------------------------------------------------------------------

    async def call(self, target: str, *, from_user: str | None = None,
                   username: str | None = None, password: str | None = None,
                   extra_headers: Iterable[tuple[str, str]] = ()) -> Call:
        """Send an INVITE with our SDP offer to ``target``; the returned call progresses
        by itself (``await call.wait_answered()``)."""
        self.ua._core()  # started?
        target_uri = SipUri.parse(target)
        dest = self.ua._dest_for(target)
        call_id = new_call_id()
        tag = new_tag()
        h = Headers()
        h.add("From", str(self.ua._from(from_user).with_tag(tag)))
        h.add("To", str(NameAddr(uri=target_uri)))
        h.add("Call-ID", call_id)
        h.add("CSeq", "1 INVITE")
        h.add("Contact", f"<{self.ua.contact_uri(dest.transport, user=from_user)}>")
        if self.ua.outbound_proxy:
            h.add("Route", f"<{self.ua.outbound_proxy};lr>")
        h.add("Allow", ALLOW)
        for name, value in extra_headers:
            h.add(name, value)
        invite = SipRequest("INVITE", str(target_uri), h)
        call = Call(self, call_id=call_id, direction="outgoing", invite=invite, local_tag=tag)
        call.credentials = Credentials(username or self.ua.username or from_user or self.ua.user,
                                       password or self.ua.password)
        port = self.ua.ports.allocate(call)
        assert self.ua.media_host is not None
        offer = build_offer(address=self.ua.media_host, port=port, order=self.ua.codecs,
                            username=self.ua.user)
        call.local_offer = offer
        invite.body = offer.to_bytes()
        invite.headers.add("Content-Type", SDP)
        self.ua.calls[call_id] = call
        self.ua.stats["calls_out"] += 1
        self._send_invite(call, invite, dest)
        return call

    def _send_invite(self, call: Call, invite: SipRequest, dest: Address) -> None:
        txn = self.ua._core().send_request(invite, dest, self.ua._now())
        call.client_txn = txn
        call.invite = txn.request
        self.ua._client[txn] = lambda ev: self._invite_result(call, txn, ev)
        self.ua._flush()

    def _invite_result(self, call: Call, txn: ClientTransaction,
                       event: TransactionOutcome) -> None:
        core = self.ua._core()
        now = self.ua._now()
        if isinstance(event, TransactionTimeout | TransportFailure):
            if call.state in (CallState.CALLING, CallState.RINGING):
                call.status = 408 if isinstance(event, TransactionTimeout) else 503
                call.end_reason = "timeout" if call.status == 408 else "transport failure"
                call._set_state(CallState.TERMINATED)
            return
        if not isinstance(event, ResponseReceived):
            return
        resp = event.response
        request = txn.request
        status = resp.status
        if status < 200:
            upd = self.ua.dialogs.uac_response(request, resp)
            if upd.dialog is not None and call.dialog is None:
                call.dialog = upd.dialog
            if status in (180, 183) or upd.dialog is not None:
                call._set_state(CallState.RINGING)
            return
        if status < 300:
            contact = self.ua.contact_uri(txn.peer.transport)
            upd = self.ua.dialogs.uac_response(request, resp, local_contact=f"<{contact}>")
            if upd.redundant_fork or call.ended or (call.state is CallState.ESTABLISHED
                                                    and upd.dialog is not call.dialog):
                if upd.dialog is not None and upd.dialog is not call.dialog:
                    self.ua.dialogs.remove(upd.dialog)
                ack, bye = ack_and_bye(request, resp, local_contact=f"<{contact}>")
                dest = request_destination(bye, txn.peer.transport)
                core.send_ack_2xx(ack, dest, now)
                core.send_request(bye, dest, now)
                self.ua._flush()
                return
            dialog = upd.dialog
            if dialog is None:
                return
            call.dialog = dialog
            ack = dialog.create_ack(request.cseq.number)
            core.send_ack_2xx(ack, self._dialog_dest(call, dialog), now)
            call.status = status
            call.reason = resp.reason
            call.final_response = resp
            try:
                if call.local_offer is None:
                    raise OfferAnswerError("no offer")
                call.negotiated = process_answer(call.local_offer, parse_sdp(resp.body))
            except (SdpError, OfferAnswerError) as exc:
                # §13.2.2.4 / RFC 3264: an unusable answer -> ACK, then end the session.
                log.warning("unusable SDP answer on %s: %s", call.call_id, exc)
                call.end_reason = f"bad answer: {exc}"
                self._send_bye(call, reason='SIP;cause=488;text="Bad SDP answer"')
                self.ua._flush()
                return
            call._set_state(CallState.ESTABLISHED)
            if call._hangup_requested:
                self._send_bye(call)
            self.ua._flush()
            return
        if status in (401, 407) and call.auth_tries < 2 and call.credentials.usable:
            call.auth_tries += 1
            try:
                invite = call.credentials.client().authorize(request, resp)
            except SipError as exc:
                log.warning("cannot answer the challenge: %s", exc)
            else:
                self._send_invite(call, invite, txn.peer)
                return
        self.ua.dialogs.uac_response(request, resp)
        call.status = status
        call.reason = resp.reason
        call.final_response = resp
        call.end_reason = f"{status} {resp.reason}"
        call._set_state(CallState.TERMINATED)

    def _send_bye(self, call: Call, reason: str | None = None) -> None:
        dialog = call.dialog
        if dialog is None or dialog.state is DialogState.TERMINATED:
            call._set_state(CallState.TERMINATED)
            return
        extra = [("Reason", reason)] if reason else []
        bye = dialog.create_request("BYE", extra=extra)
        txn = self.ua._core().send_request(bye, self._dialog_dest(call, dialog), self.ua._now())
        call._bye_txn = txn

        def done(ev: TransactionOutcome) -> None:
            if isinstance(ev, ResponseReceived):
                if ev.response.status < 200:
                    return
                call.bye_status = ev.response.status
            elif isinstance(ev, TransactionTimeout | TransportFailure):
                call.bye_status = 408 if isinstance(ev, TransactionTimeout) else 503
            else:
                return
            if call.end_reason == "":
                call.end_reason = "local hangup"
            call._set_state(CallState.TERMINATED)

        self.ua._client[txn] = done

    def _reinvite(self, call: Call, direction: str) -> asyncio.Future[bool]:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        dialog = call.dialog
        if call.state is not CallState.ESTABLISHED or dialog is None or call.rtp_port is None:
            raise UaError(f"no established call to re-offer on ({call.state.value})")
        previous = call.negotiated.local_sdp if call.negotiated is not None else call.local_offer
        assert self.ua.media_host is not None
        offer = build_offer(address=self.ua.media_host, port=call.rtp_port, order=self.ua.codecs,
                            direction=direction, username=self.ua.user,
                            session_id=previous.origin.session_id if previous else None,
                            session_version=previous.origin.session_version + 1
                            if previous else None)
        contact = self.ua.contact_uri(self._call_transport(call))
        request = dialog.create_request("INVITE", body=offer.to_bytes(), content_type=SDP,
                                        extra=[("Contact", f"<{contact}>"), ("Allow", ALLOW)])
        dest = self._dialog_dest(call, dialog)
        core = self.ua._core()
        txn = core.send_request(request, dest, self.ua._now())

        def done(ev: TransactionOutcome) -> None:
            if fut.done():
                return
            if not isinstance(ev, ResponseReceived):
                fut.set_result(False)
                return
            resp = ev.response
            if resp.status < 200:
                return
            dialog.receive_response(txn.request, resp)
            if resp.status >= 300:
                fut.set_result(False)
                return
            core.send_ack_2xx(dialog.create_ack(txn.request.cseq.number), dest, self.ua._now())
            self.ua._flush()
            try:
                call.negotiated = process_answer(offer, parse_sdp(resp.body))
            except (SdpError, OfferAnswerError) as exc:
                log.warning("unusable answer to our re-INVITE on %s: %s", call.call_id, exc)
                fut.set_result(False)
                return
            call.local_offer = offer
            fut.set_result(True)

        self.ua._client[txn] = done
        self.ua._flush()
        return fut

    def _refer(self, call: Call, target: str) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        dialog = call.dialog
        if call.state is not CallState.ESTABLISHED or dialog is None:
            raise UaError(f"no established call to transfer ({call.state.value})")
        refer_to = NameAddr(uri=SipUri.parse(target))
        contact = self.ua.contact_uri(self._call_transport(call))
        request = dialog.create_request("REFER", extra=[
            ("Refer-To", str(refer_to)), ("Referred-By", f"<{self.ua._from().uri}>"),
            ("Contact", f"<{contact}>"), ("Allow", ALLOW)])
        txn = self.ua._core().send_request(request, self._dialog_dest(call, dialog),
                                           self.ua._now())

        def done(ev: TransactionOutcome) -> None:
            if fut.done():
                return
            if isinstance(ev, ResponseReceived):
                if ev.response.status >= 200:
                    fut.set_result(ev.response.status)
            else:
                fut.set_result(408 if isinstance(ev, TransactionTimeout) else 503)

        self.ua._client[txn] = done
        self.ua._flush()
        return fut

    def _notify(self, call: Call, req: SipRequest, txn: ServerTransaction) -> None:
        """A NOTIFY of the implicit refer subscription (RFC 3515 §2.4.4): 200, and the
        sipfrag's status line kept on the call; any other event package: 489."""
        event = (req.headers.get("event") or "").split(";", 1)[0].strip().lower()
        if event != "refer":
            self.ua._respond(txn, 489, "Bad Event")
            return
        self.ua._respond(txn, 200, "OK")
        line = req.body.decode("utf-8", "replace").strip().splitlines()
        parts = line[0].split() if line else []
        if len(parts) >= 2 and parts[0].upper() == "SIP/2.0" and parts[1].isdigit():
            call._refer_notified(int(parts[1]))

    def _hangup(self, call: Call) -> None:
        if call.ended:
            return
        core = self.ua._core()
        call._hangup_requested = True
        if call.state is CallState.ESTABLISHED:
            self._send_bye(call)
        elif call.direction == "outgoing":
            txn = call.client_txn
            if txn is not None:
                try:
                    core.cancel(txn, self.ua._now())  # held by the core until a 1xx (§9.1)
                except SipError:
                    pass  # a final response already came: its handler decides
                if call.state is CallState.CALLING:
                    # Nothing heard yet: the CANCEL waits for a 1xx that may never come, so
                    # the call ends for the owner now; a late 2xx is ACKed and BYEd.
                    call.status = 487
                    call.end_reason = "cancelled before any response"
                    call._set_state(CallState.TERMINATED)
        else:
            self._reject(call, 603, "Decline")
        self.ua._flush()


    def _in_dialog(self, req: SipRequest, txn: ServerTransaction, source: Address) -> None:
        dialog = self.ua.dialogs.for_request(req)
        call = self.ua.calls.get(req.call_id)
        if dialog is None or call is None:
            self.ua._respond(txn, 481, "Call/Transaction Does Not Exist")
            return
        try:
            dialog.receive_request(req)
        except DialogError as exc:
            self.ua._respond(txn, exc.status, exc.reason)
            return
        method = req.method
        if method == "BYE":
            self.ua._respond(txn, 200, "OK")
            call.end_reason = "remote hangup"
            call._set_state(CallState.TERMINATED)
        elif method in ("INVITE", "UPDATE"):
            self._reoffer(call, dialog, req, txn)
        elif method == "INFO":
            self.ua._respond(txn, 200, "OK")
        elif method == "NOTIFY":
            self._notify(call, req, txn)
        else:
            self.ua._respond(txn, 405, "Method Not Allowed", extra=[("Allow", ALLOW)])

    def _reoffer(self, call: Call, dialog: Dialog, req: SipRequest,
                 txn: ServerTransaction) -> None:
        """A re-INVITE/UPDATE: answer the new offer on the same port (hold, resume...)."""
        contact = self.ua.contact_uri(self._call_transport(call))
        if not req.body:
            self.ua._respond(txn, 200, "OK", extra=[("Contact", f"<{contact}>")])
            return
        try:
            offer = parse_sdp(req.body)
            assert self.ua.media_host is not None and call.rtp_port is not None
            previous = call.negotiated.local_sdp if call.negotiated is not None else None
            neg = answer_offer(offer, address=self.ua.media_host, port=call.rtp_port,
                               order=self.ua.codecs, previous=previous)
        except NoCommonCodec as exc:
            self.ua._respond(txn, 488, "Not Acceptable Here", extra=[("Warning", exc.warning)])
            return
        except (SdpError, OfferAnswerError) as exc:
            self.ua._respond(txn, 488, "Not Acceptable Here",
                          extra=[("Warning", f'399 {self.ua.domain} "{exc}"')])
            return
        call.negotiated = neg
        resp = self.ua._respond(txn, 200, "OK", body=neg.sdp, content_type=SDP,
                             extra=[("Contact", f"<{contact}>"), ("Allow", ALLOW)])
        dialog.response_sent(req, resp)

    def _incoming_invite(self, req: SipRequest, txn: ServerTransaction, source: Address) -> None:
        self.ua.stats["calls_in"] += 1
        existing = self.ua.calls.get(req.call_id)
        if existing is not None and not existing.ended:
            # A new INVITE (other branch) for a call we already handle: a loop or a merge.
            self.ua._respond(txn, 482, "Loop Detected")
            return
        call = Call(self, call_id=req.call_id, direction="incoming", invite=req,
                    local_tag=new_tag())
        call.server_txn = txn
        call.peer = source
        self.ua.calls[req.call_id] = call
        try:
            port = self.ua.ports.allocate(call)
        except Exception as exc:  # PortsExhausted: 503 + Retry-After, never a crash
            log.warning("no RTP port for %s: %s", req.call_id, exc)
            self.ua._respond(txn, 503, "Service Unavailable", to_tag=call.local_tag,
                          extra=[("Retry-After", "5")])
            call.status = 503
            call._set_state(CallState.TERMINATED)
            return
        if req.body and (req.content_type or SDP) == SDP:
            try:
                offer = parse_sdp(req.body)
                call.remote_offer = offer
                assert self.ua.media_host is not None
                call.negotiated = answer_offer(offer, address=self.ua.media_host, port=port,
                                               order=self.ua.codecs, username=self.ua.user)
            except NoCommonCodec as exc:
                self.ua.stats["rejected_488"] += 1
                self.ua._respond(txn, 488, "Not Acceptable Here", to_tag=call.local_tag,
                              extra=[("Warning", exc.warning)])
                call.status = 488
                call.end_reason = "no common codec"
                call._set_state(CallState.TERMINATED)
                return
            except (SdpError, OfferAnswerError) as exc:
                self.ua.stats["rejected_488"] += 1
                self.ua._respond(txn, 488, "Not Acceptable Here", to_tag=call.local_tag,
                              extra=[("Warning", f'399 {sip_host(self.ua.domain or "")} '
                                                 f'"Bad SDP: {str(exc)[:80]}"')])
                call.status = 488
                call._set_state(CallState.TERMINATED)
                return
        else:
            # Late offer (§13.2.1): we offer in the 200, the answer comes in the ACK.
            assert self.ua.media_host is not None
            call.local_offer = build_offer(address=self.ua.media_host, port=port,
                                           order=self.ua.codecs, username=self.ua.user)
        self.ua._emit(IncomingCall(call))
        if self.ua.ring:
            self._ringing(call)
        if self.ua.auto_answer:
            if self.ua.answer_delay > 0:
                call._answer_handle = asyncio.get_running_loop().call_later(
                    self.ua.answer_delay, self._answer_later, call)
            else:
                self._answer(call)

    def _answer_later(self, call: Call) -> None:
        call._answer_handle = None
        if call.state in (CallState.CALLING, CallState.RINGING):
            self._answer(call)
            self.ua._flush()

    def _ringing(self, call: Call) -> None:
        txn = call.server_txn
        if txn is None or txn.final_sent:
            return
        contact = self.ua.contact_uri(self._call_transport(call))
        resp = self.ua._respond(txn, 180, "Ringing", to_tag=call.local_tag,
                             extra=[("Contact", f"<{contact}>")])
        with contextlib.suppress(DialogError, SipParseError):
            dialog = Dialog.from_uas(call.invite, resp)
            call.dialog = dialog
            self.ua.dialogs.add(dialog)
        call._set_state(CallState.RINGING)

    def _answer(self, call: Call) -> None:
        txn = call.server_txn
        if txn is None or txn.final_sent or call.ended:
            return
        body = call.negotiated.sdp if call.negotiated is not None else (
            call.local_offer.to_bytes() if call.local_offer is not None else b"")
        contact = self.ua.contact_uri(self._call_transport(call))
        resp = self.ua._respond(txn, 200, "OK", to_tag=call.local_tag, body=body,
                             content_type=SDP if body else None,
                             extra=[("Contact", f"<{contact}>"), ("Allow", ALLOW),
                                    ("Supported", SUPPORTED)])
        if call.dialog is None:
            dialog = Dialog.from_uas(call.invite, resp)
            call.dialog = dialog
            self.ua.dialogs.add(dialog)
        else:
            call.dialog.response_sent(call.invite, resp)
        call.status = 200
        self.ua.stats["answered"] += 1
        call._set_state(CallState.ESTABLISHED)
        if call._hangup_requested:
            self._send_bye(call)

    def _reject(self, call: Call, status: int, reason: str) -> None:
        txn = call.server_txn
        if txn is not None and not txn.final_sent:
            self.ua._respond(txn, status, reason, to_tag=call.local_tag)
        call.status = status
        call.end_reason = f"rejected {status}"
        call._set_state(CallState.TERMINATED)

    def _on_ack(self, ack: SipRequest) -> None:
        call = self.ua.calls.get(ack.call_id)
        if call is None or call.direction != "incoming":
            return
        if call.negotiated is None and call.local_offer is not None and ack.body:
            try:
                call.negotiated = process_answer(call.local_offer, parse_sdp(ack.body))
            except (SdpError, OfferAnswerError) as exc:
                call.end_reason = f"bad answer in ACK: {exc}"
                self._send_bye(call)
                self.ua._flush()

    def _on_cancel(self, cancel: SipRequest, invite_txn: ServerTransaction) -> None:
        call = self.ua.calls.get(cancel.call_id)
        if not invite_txn.final_sent:
            self.ua._core().respond(invite_txn, 487, "Request Terminated", self.ua._now(),
                                 to_tag=call.local_tag if call is not None else new_tag())
        if call is not None:
            call.status = 487
            call.end_reason = "cancelled"
            call._set_state(CallState.TERMINATED)

