"""The edge's back-to-back user agent: every call is two dialogs with anchored media.

The caller's INVITE ends here (leg "a", we are its UAS); the edge places a new INVITE to the
callee (leg "b", we are its UAC) with our own SDP offer (OPUS, PCMA, PCMU, telephone-event) on
ports of the configured RTP range, and joins the two legs' media (``softphone.media.call``).
The two legs share nothing on the wire but the caller's identity: own Call-IDs, tags, CSeqs,
SDP. This is what lets the policy guard hear, refuse, announce and record every call.

A callee with several registered devices gets one INVITE per device (parallel forking): the
first 2xx wins, the others are cancelled; a 2xx that arrives after a winner is ACKed and BYEd.

With a trunk (``softphone.edge.trunk``): a local user dialling a number that is not local
gets a B leg to the provider under that user's own upstream identity and credentials (403
if the user has none); an INVITE from the trunk's address for a configured DID rings that
user's devices like a local call (404 for an unknown DID). The trunk's own REGISTER
transactions are handed to it from ``on_event``.

Emergency numbers (R-EMERG, RFC 6442): a code the guard recognises where the caller is (112,
15, 17, 18... for a line in France) is decided before any other routing, even the 404 for a
number that is not local. Routed, the B leg goes to the emergency route (``[emergency] route``
of the edge configuration, else the policy's route for the caller's country) with our SDP offer
and the caller's PIDF-LO in a multipart/mixed body, referenced by ``Geolocation: <cid:...>``
with ``Geolocation-Routing: yes``; the channel limit never blocks it. Refused (service not
activated, no location, ineligible country, mobile number), the caller gets the spoken notice
as early media (183) and then the guard's final status and reason, with a Warning that carries
the notice's text for phones that display it. A gateway that refuses or never answers a routed
call gets the caller the same notice, then its status. Addressing (RFC 6881): the Request-URI
is the RFC 5031 service URN (urn:service:sos.police...), the gateway is reached by a loose
``Route: <route;lr>``, To keeps the dial string (``sip:112@<domain>;user=dialstring``);
``[emergency] request_uri = "route"`` puts the route itself in the Request-URI instead, for a
gateway addressed by its own SIP URI. The ACK and BYE of that dialog go to the gateway's
Contact (or its Record-Route). A phone may dial the service URN itself (INVITE
urn:service:sos.fire): that is the caller's country's code for the service, decided and
refused exactly the same; a service URN outside the sos tree gets 404, another URN 416.

The policy guard (``CallAdmission``) decides every REGISTER binding before it is stored and every
new call before anything is routed, with the offer's m-lines and the caller ID to present. A
refusal goes out with the guard's status and reason phrase, a Warning (399, RFC 3261 §20.43)
carrying the text the person should see, and Retry-After when the guard says when to try
again; the 200 OK of an allowed REGISTER carries the user's warnings the same way (no
emergency calls from this line). An allowed call keeps what the decisions say: m-lines to
refuse answered with port 0 (MRCP next to audio), ``billable`` in its calls.jsonl record, and
a time limit at the answer (trial minutes) after which the edge ends it, BYE on both legs.

Status codes on the wire: 404 unknown number, 480 callee not registered, 486 busy, 487 after
CANCEL, 488 no common codec (with a Warning), 503 no RTP ports (with Retry-After), 401/407 for
digest; an unexpected error in call handling answers 500 and tears the call down, it never
leaves a traceback on the wire or a port allocated.

The class is driven by the SIP core's events (``on_event``, matched on the typed event classes)
on the asyncio loop; it calls the core, then ``flush()`` of the transport layer, and creates
media with ``CallMedia``. Its work is done in rooms, one concern each, composed here:
``registrar``, ``authentication``, ``routing``, ``emergency``, ``calls``, ``dialogs``,
``notices`` (all on ``softphone.edge.room.Room``, the shared state).
"""


from __future__ import annotations

import logging

from softphone.edge.call import Call, CallState
from softphone.edge.dialogs import DialogsRoom
from softphone.edge.notices import NoticesRoom
from softphone.edge.registrar import RegistrarRoom
from softphone.edge.room import ALLOW, SDP
from softphone.edge.routing import RoutingRoom
from softphone.sip.core import Address
from softphone.sip.events import (
    AckNotReceived,
    AckReceived,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailure,
)
from softphone.sip.message import SipRequest
from softphone.sip.transaction import ServerTransaction

log = logging.getLogger(__name__)



class B2BUA(RegistrarRoom, RoutingRoom, NoticesRoom, DialogsRoom):
    """The rooms composed; the SIP core's events dispatched to them."""

    @property
    def live_calls(self) -> int:
        return len(self.calls)

    def on_event(self, ev: Event) -> None:
        try:
            self._dispatch(ev)
        except Exception:
            log.exception("edge failed on %r", ev)
            if isinstance(ev, RequestReceived) and ev.request.method != "ACK":
                try:
                    self._respond(ev.transaction, 500, "Server Internal Error")
                except Exception:
                    log.exception("could not answer 500")
            call = self._call_for_event(ev)
            if call is not None:
                self._end(call, "internal-error", bye_a=True, bye_b=True)
        self.flush()

    def _call_for_event(self, ev: Event) -> Call | None:
        match ev:
            case RequestReceived(request=msg) | AckReceived(request=msg) \
                    | CancelReceived(request=msg):
                cid = msg.call_id
            case ResponseReceived(response=resp):
                cid = resp.call_id
            case _:
                cid = ev.transaction.request.call_id
        return self.calls.get(cid) or self._by_b.get(cid)

    def _dispatch(self, ev: Event) -> None:
        match ev:
            case RequestReceived(request=req, transaction=txn, source=source):
                self._on_request(req, txn, source)
            case ResponseReceived(response=resp, transaction=ctxn):
                if self.trunk is not None and self.trunk.on_response(resp, ctxn):
                    return
                self._on_response(resp, ctxn)
            case AckReceived(request=ack):
                call = self.calls.get(ack.call_id)
                if call is not None and call.state is CallState.ANSWERED:
                    call.state = CallState.CONFIRMED
                    if call.a.neg is None and call.a.offer is not None:
                        self._on_ack_answer(call, ack)
            case CancelReceived(request=cancel):
                call = self.calls.get(cancel.call_id)
                if call is not None and call.state in (CallState.ROUTING, CallState.EARLY):
                    self._respond(call.a.txn, 487, "Request Terminated", to_tag=call.a.tag)
                    self._end(call, "cancelled", status=487)
                elif call is None:  # a browser's INVITE still being answered by aiortc
                    self.browsers.cancel(cancel.call_id)
            case TransactionTimeout(transaction=t) | TransportFailure(transaction=t):
                reason = "timeout" if isinstance(ev, TransactionTimeout) else \
                    f"unreachable: {ev.reason}"
                if self.trunk is not None and self.trunk.on_failure(t, reason):
                    return
                self._on_txn_failure(t)
            case AckNotReceived(transaction=stxn):
                call = self.calls.get(stxn.request.call_id)
                if call is not None:
                    self._end(call, "no-ack", bye_a=True, bye_b=True)
            case TransactionTerminated():
                pass

    def _on_request(self, req: SipRequest, txn: ServerTransaction, source: Address) -> None:
        if self.security is not None and self._locked_out(req, txn, source):
            return
        m = req.method
        if m == "REGISTER":
            self._on_register(req, txn, source)
        elif m == "OPTIONS":
            self._respond(txn, 200, "OK", extra=[("Allow", ALLOW), ("Accept", SDP)])
        elif m == "INVITE":
            if req.to.tag:
                if self._in_dialog(req, txn, source) is not None:
                    self._on_reinvite(req, txn)
            else:
                self._on_invite(req, txn, source)
        elif m == "BYE":
            self._on_bye(req, txn, source)
        elif m == "UPDATE" and req.body:
            # an offer (RFC 3311): answered in the 200 as a re-INVITE's would be
            if self._in_dialog(req, txn, source) is not None:
                self._on_reinvite(req, txn)
        elif m in ("UPDATE", "INFO"):
            if self._in_dialog(req, txn, source) is not None:
                self._on_info(req, txn)
        else:  # REFER among them: the edge does not transfer calls
            self._respond(txn, 405, "Method Not Allowed")
