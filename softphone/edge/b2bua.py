"""The edge's back-to-back user agent: every call is two dialogs with anchored media.

The caller's INVITE ends here (leg "a", we are its UAS); the edge places a new INVITE to the
callee (leg "b", we are its UAC) with our own SDP offer (OPUS, PCMA, PCMU, telephone-event) on
ports of the configured RTP range, and joins the two legs' media (``softphone.edge.media``).
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

The policy guard (``CallGuard``) decides every REGISTER binding before it is stored and every
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

The class is driven by the SIP core's events (``on_event``) on the asyncio loop; it calls the
core, then ``flush()`` of the transport layer, and creates media with ``CallMedia``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from softphone.codecs.offer_answer import (
    Negotiated,
    NoCommonCodec,
    OfferAnswerError,
    answer_offer,
    build_offer,
    process_answer,
)
from softphone.codecs.registry import Codec
from softphone.codecs.sdp import SdpError, SessionDescription, parse_sdp
from softphone.edge.calllog import CallLog, CallRecord, LegRecord
from softphone.edge.emergency_lane import EmergencyLane
from softphone.edge.location import (
    DEFAULT_EXPIRES,
    Binding,
    LocationService,
    RegistrationError,
)
from softphone.edge.recordings import RecordingStore
from softphone.edge.security import Security
from softphone.edge.service_urn import (
    ServiceUrn,
    ServiceUrnError,
    dial_string_uri,
    is_urn,
    loose_route,
)
from softphone.edge.trunk import Trunk, TrunkError, is_external_number
from softphone.media.bridge import FrameSource, TickScheduler
from softphone.media.call import CallMedia
from softphone.media.dtmf import DtmfEvent, DtmfKind
from softphone.media.echo import ToneSource
from softphone.media.ports import PortAllocator, PortsExhausted
from softphone.media.session import RtpSession
from softphone.policy.decision import (
    Action,
    Audience,
    Decision,
    LocationPayload,
    RecordingAction,
)
from softphone.policy.facts import MediaLine, Party
from softphone.sip.auth import AuthError, DigestClient
from softphone.sip.core import Address, SipCore, new_call_id, new_tag
from softphone.sip.dialog import Dialog, DialogError, DialogState
from softphone.sip.errors import SipParseError
from softphone.sip.events import (
    AckNotReceived,
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionTimeout,
    TransportFailure,
)
from softphone.sip.message import Headers, SipRequest, SipResponse, make_response
from softphone.sip.multipart import BodyPart, build_multipart, parse_multipart
from softphone.sip.transaction import ClientTransaction, ServerTransaction
from softphone.sip.uri import NameAddr, SipUri

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO"
SDP = "application/sdp"
NOTICE_GUARD_S = 2.0   # the final answer follows a notice even if its end is never reported

# A spoken (or signalled) announcement by its id, at the bridge rate, and how long it lasts in
# seconds; None when the edge has nothing to play for that id.
Prompts = Callable[[str, int], "tuple[FrameSource, float] | None"]


class Authenticator(Protocol):
    """Digest for local users (``softphone.sip.auth.DigestServer`` behind an adapter)."""

    def challenge(self, request: SipRequest, now: float, *, proxy: bool) -> list[tuple[str, str]]:
        ...

    def verify(self, request: SipRequest, now: float, *, proxy: bool) -> str | None:
        ...

    def failure(self, request: SipRequest) -> str | None:
        """Why ``verify`` refused the credentials of ``request``; None when it carried none
        of ours or only a stale nonce (a challenge, not a failure)."""
        ...


class CallGuard(Protocol):
    """What the edge asks the policy guard (``softphone.policy``) at each decision point."""

    def admit(self, call_id: str, caller: str, callee: str, *, inbound_local: bool,
              now: float) -> tuple[int, str] | None:
        """None to let the call proceed, else (status, reason) to refuse it."""
        ...

    def released(self, call_id: str, *, answered: bool, duration: float,
                 now: float) -> list[Decision]:
        """The call is over: the decisions, with what to do with its recordings."""
        ...

    def refused(self, call_id: str, *, now: float) -> list[Decision]:
        """The edge refused an admitted call before placing it: channels back, no count."""
        ...

    def answered(self, call_id: str, now: float) -> list[Decision]:
        """The call is answered: per side, the notices to play first (``Notice``)."""
        ...

    def notice_played(self, guard_call_id: str, notice_id: str, now: float) -> Decision:
        """A notice has been heard in full (a recording may start)."""
        ...

    def dtmf(self, call_id: str, media_leg: str, digit: str, now: float) -> list[Decision]:
        """A key pressed on media leg "a" or "b" (an objection stops the recording)."""
        ...

    def correspondent_leg(self, guard_call_id: str) -> str:
        """The media leg ("a" or "b") where the other party of that side is."""
        ...

    def is_emergency(self, caller: str, dialed: str) -> bool:
        """Whether ``dialed`` is an emergency code for this local caller (no side effect)."""
        ...

    def emergency_code(self, caller: str, dialed: str) -> str | None:
        """The emergency code ``dialed`` (a code or a service URN) stands for, or None."""
        ...

    def admit_decision(self, call_id: str, caller: str, callee: str, *, inbound_local: bool,
                       now: float, media: tuple[MediaLine, ...] = (),
                       presented: str | None = None) -> Decision | None:
        """The guard's decision to act on (refusal or emergency route), None to go ahead."""
        ...

    def admit_decisions(self, call_id: str, caller: str, callee: str, *, inbound_local: bool,
                        now: float, media: tuple[MediaLine, ...] = (),
                        presented: str | None = None,
                        caller_local: bool = True, user_agent: str = "",
                        psap_callback: bool = False) -> list[Decision]:
        """Every decision on a new call, caller's side first, a refusal last; the allowed
        ones say what goes with the call (billable, m-lines to refuse, warnings).
        ``caller_local`` False (from the trunk): From names no local user's call.
        ``user_agent``: the caller's User-Agent (a PBX is refused as at REGISTER)."""
        ...

    def registered(self, user: str, *, device: str, source_ip: str, expires_s: int,
                   user_agent: str, webrtc: bool, now: float) -> Decision | None:
        """A REGISTER binding of a local user: refused, or allowed with warnings."""
        ...


def _no_prompts(announcement: str, rate: int) -> tuple[FrameSource, float] | None:
    return None


@dataclass(frozen=True)
class MediaSettings:
    host: str = "127.0.0.1"
    jitter_min_ms: int = 20
    jitter_max_ms: int = 200
    rtp_timeout: float = 30.0
    bridge_rate: int = 16000     # wideband mixing: OPUS keeps 8 kHz of audio band, G.711 4
    tone_hz: float = 1000.0
    latch: str = "address-only"  # whom RTP may latch to (media.session, RTPbleed)


class CallState(enum.Enum):
    ROUTING = "routing"      # INVITE received, forks out
    EARLY = "early"          # a provisional came back
    ANSWERED = "answered"    # 2xx sent to the caller, waiting for its ACK
    CONFIRMED = "confirmed"
    ENDED = "ended"


@dataclass
class Fork:
    """One INVITE of leg "b" to one registered device."""

    binding_source: Address
    request: SipRequest
    txn: ClientTransaction
    dialog: Dialog | None = None
    final: int = 0
    auth_tries: int = 0


@dataclass
class Call:
    key: str
    caller: str
    callee: str
    a_invite: SipRequest
    a_txn: ServerTransaction
    a_source: Address
    a_tag: str
    media: CallMedia
    a_neg: Negotiated | None  # None until the caller's ACK answers our offer (delayed offer)
    record: CallRecord
    state: CallState = CallState.ROUTING
    a_dialog: Dialog | None = None
    b_call_id: str = ""
    b_tag: str = ""
    b_offer: SessionDescription | None = None
    b_neg: Negotiated | None = None
    forks: list[Fork] = field(default_factory=list)
    winner: Fork | None = None
    ringing_sent: bool = False
    early_sdp_sent: bool = False
    app: str = ""            # "" for a bridged call, "echo" or "tone" for edge applications,
    #                          "notice" for an emergency refusal's early-media notice
    answered_at: float | None = None
    direction: str = "local"  # "local", "outbound" (to the trunk), "inbound" (from the trunk),
    #                           "emergency" (to the emergency route)
    digest: DigestClient | None = None  # outbound: the caller's own upstream credentials
    # R-REC/R-AI-2: notices still to play after the answer, per media leg, in order, as
    # (guard call id, notice id); recordings being written for this call
    notices: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    playing: set[str] = field(default_factory=set)
    recordings: set[str] = field(default_factory=set)
    limit_timer: asyncio.TimerHandle | None = None  # ends the call at max_duration_s (trial)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # for the caller, on 18x/200
    # RFC 3261 §13.2.1 delayed offer: the caller's INVITE had no SDP, our offer goes in the 200
    # OK on leg "a" and its answer comes in the ACK
    a_offer: SessionDescription | None = None
    a_answered: asyncio.Event = field(default_factory=asyncio.Event)  # set at that ACK (or end)


class B2BUA:
    def __init__(self, *, core: SipCore, flush: Callable[[], None], location: LocationService,
                 allocator: PortAllocator, media_settings: MediaSettings,
                 codecs: Iterable[Codec], users: Callable[[str], bool], domain: str,
                 echo_ext: str = "600", tone_ext: str = "601", retry_after: int = 5,
                 auth: Authenticator | None = None, guard: CallGuard | None = None,
                 call_log: CallLog | None = None,
                 scheduler: TickScheduler | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 emergency_request_uri: str = "service-urn",
                 user_agent: str = "softphone-edge", trunk: Trunk | None = None,
                 emergency_route: str = "", prompts: Prompts = _no_prompts,
                 recordings: RecordingStore | None = None,
                 emergency_lane: EmergencyLane | None = None,
                 emergency_callback_s: float = 3600.0, app_calls_per_user: int = 1,
                 security: Security | None = None) -> None:
        self.core = core
        self.flush = flush
        self.location = location
        self.allocator = allocator
        self.media_settings = media_settings
        self.codecs = tuple(codecs)
        self.is_user = users
        self.domain = domain
        self.echo_ext = echo_ext
        self.tone_ext = tone_ext
        self.app_calls_per_user = app_calls_per_user  # simultaneous calls to 600/601 per user
        self.retry_after = retry_after
        self.auth = auth
        self.guard = guard
        self.call_log = call_log or CallLog(None)
        self.scheduler = scheduler or TickScheduler()
        self.clock = clock
        self.user_agent = user_agent
        self.trunk = trunk
        self.emergency_route = emergency_route
        self.emergency_request_uri = emergency_request_uri  # "service-urn" or "route"
        self.prompts = prompts
        self.recordings = recordings
        # the flood guard's emergency lane: our Contact in an emergency call's two dialogs
        # carries a token of it, so that their in-dialog requests are never dropped
        self.emergency_lane = emergency_lane
        self.security = security  # R-ACCT-5: security log and lock-out of failed auth
        self._contact_users: dict[str, str] = {}  # Call-ID (either leg) -> our Contact's user
        # PSAP call-back: a call from the emergency gateway to a user within this many seconds
        # of their last emergency call is never refused by the account's policy
        self.emergency_callback_s = emergency_callback_s
        self._last_emergency: dict[str, float] = {}  # user -> clock() of their last one
        # in-dialog requests from another address than the dialog peer's need its credentials
        self.dialog_peer_check = True
        # the caller's name the callee sees: the edge's user table (extension -> name), or the
        # phone's own From display name when the configuration trusts it
        self.display_names: dict[str, str] = {}
        self.trust_display_name = False
        self.calls: dict[str, Call] = {}          # by the caller's Call-ID
        self._by_b: dict[str, Call] = {}          # by leg b's Call-ID
        # BYEs to the provider, with the caller's upstream credentials should it challenge
        self._bye_auth: dict[ClientTransaction, DigestClient] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.draining = False  # SIGTERM (edge.lifecycle.drain): new calls get 503
        self.stats: dict[str, int] = {"calls": 0, "answered": 0, "failed": 0,
                                      "emergency_routed": 0, "emergency_refused": 0,
                                      "emergency_failed": 0}

    # ------------------------------------------------------------------ helpers

    @property
    def live_calls(self) -> int:
        return len(self.calls)

    def _contact(self, transport: str, call_id: str = "") -> str:
        local = self.core.local.get(transport) or next(iter(self.core.local.values()))
        suffix = "" if transport == "udp" else f";transport={transport}"
        user = self._contact_users.get(call_id, "edge")
        return f"<sip:{user}@{local.host}:{local.port}{suffix}>"

    def _respond(self, txn: ServerTransaction, status: int, reason: str, *,
                 to_tag: str | None = None, body: bytes = b"", extra: Iterable[tuple[str, str]] = (),
                 contact: bool = False) -> SipResponse:
        now = self.clock()
        hdrs = list(extra)
        if contact:
            hdrs.append(("Contact", self._contact(txn.peer.transport, txn.request.call_id)))
        if status == 405:
            hdrs.append(("Allow", ALLOW))
        resp = make_response(txn.request, status, reason, to_tag=to_tag, body=body,
                             content_type=SDP if body else None, extra=hdrs)
        resp.headers.add("Server", self.user_agent)
        self.core.send_response(txn, resp, now)
        return resp

    def _spawn(self, coro: Awaitable[Any], call: Call | None) -> None:
        async def runner() -> None:
            try:
                await coro
            except Exception as exc:
                if call is not None and _ended_under(call, exc):
                    return
                log.exception("media task failed")
                if call is not None:
                    self._end(call, "media-error", bye_a=True, bye_b=True)
                    self.flush()

        task = asyncio.get_running_loop().create_task(runner())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ dispatch

    def on_event(self, ev: Any) -> None:
        try:
            self._dispatch(ev)
        except Exception:
            log.exception("edge failed on %r", ev)
            txn = getattr(ev, "transaction", None)
            if isinstance(ev, RequestReceived) and ev.request.method != "ACK":
                try:
                    self._respond(ev.transaction, 500, "Server Internal Error")
                except Exception:
                    log.exception("could not answer 500")
            call = self._call_for_event(ev)
            if call is not None:
                self._end(call, "internal-error", bye_a=True, bye_b=True)
            del txn
        self.flush()

    def _call_for_event(self, ev: Any) -> Call | None:
        msg = getattr(ev, "request", None) or getattr(ev, "response", None)
        if msg is None:
            txn = getattr(ev, "transaction", None)
            msg = getattr(txn, "request", None)
        if msg is None:
            return None
        cid = msg.call_id
        return self.calls.get(cid) or self._by_b.get(cid)

    def _dispatch(self, ev: Any) -> None:
        if isinstance(ev, RequestReceived):
            self._on_request(ev.request, ev.transaction, ev.source)
        elif isinstance(ev, ResponseReceived):
            if self.trunk is not None and self.trunk.on_response(ev.response, ev.transaction):
                return
            self._on_response(ev.response, ev.transaction)
        elif isinstance(ev, AckReceived):
            call = self.calls.get(ev.request.call_id)
            if call is not None and call.state is CallState.ANSWERED:
                call.state = CallState.CONFIRMED
                if call.a_neg is None and call.a_offer is not None:
                    self._on_ack_answer(call, ev.request)
        elif isinstance(ev, CancelReceived):
            call = self.calls.get(ev.request.call_id)
            if call is not None and call.state in (CallState.ROUTING, CallState.EARLY):
                self._respond(call.a_txn, 487, "Request Terminated", to_tag=call.a_tag)
                self._end(call, "cancelled", status=487)
        elif isinstance(ev, TransactionTimeout | TransportFailure):
            reason = "timeout" if isinstance(ev, TransactionTimeout) else \
                f"unreachable: {getattr(ev, 'reason', '')}"
            if self.trunk is not None and self.trunk.on_failure(ev.transaction, reason):
                return
            self._on_txn_failure(ev.transaction)
        elif isinstance(ev, AckNotReceived):
            call = self.calls.get(ev.transaction.request.call_id)
            if call is not None:
                self._end(call, "no-ack", bye_a=True, bye_b=True)

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
        elif m in ("UPDATE", "INFO"):
            if self._in_dialog(req, txn, source) is not None:
                self._on_info(req, txn)
        else:
            self._respond(txn, 405, "Method Not Allowed")

    # ------------------------------------------------------------------ registrar

    def _on_register(self, req: SipRequest, txn: ServerTransaction, source: Address) -> None:
        now = self.clock()
        try:
            aor_uri = req.to.uri
        except SipParseError as exc:
            self._respond(txn, 400, exc.reason)
            return
        user = aor_uri.user or ""
        if self.auth is None and not self.is_user(user):
            self._respond(txn, 404, "Not Found")
            return
        if self.auth is not None:
            # an unknown user is challenged like a known one, and a wrong password gets the
            # same new challenge for both (Asterisk's alwaysauthreject): no user enumeration
            who = self.auth.verify(req, now, proxy=False)
            if who is None:
                self._auth_failed(req, source, user, self.auth.failure(req))
                self._respond(txn, 401, "Unauthorized",
                              extra=self.auth.challenge(req, now, proxy=False))
                return
            if who != user:
                self._auth_failed(req, source, user, f"credentials of another user ({who})")
                self._respond(txn, 403, "Forbidden: credentials of another user")
                return
            self._auth_succeeded(source, user)
        try:
            path = registered_path(req)
        except SipParseError as exc:
            self._respond(txn, 400, exc.reason)
            return
        contacts_raw = req.headers.values("contact")
        expires_hdr = req.headers.get("expires")
        default_exp = int(expires_hdr) if expires_hdr and expires_hdr.strip().isdigit() else None
        src = (source.transport, source.host, source.port, source.conn_id)
        warnings: list[tuple[str, str]] = []
        try:
            if contacts_raw == ["*"]:
                if default_exp != 0:
                    self._respond(txn, 400, "Contact * needs Expires: 0")
                    return
                gone = [(b.contact, 0) for b in self.location.lookup(user, now)]
                if self._registration_refused(req, txn, source, user, gone, warnings):
                    return
                self.location.unregister_all(user, call_id=req.call_id, cseq=req.cseq.number)
                bindings: list[Binding] = []
            else:
                contacts: list[tuple[str, int | None]] = []
                for na in req.contacts:
                    exp = na.params.get("expires")
                    contacts.append((str(na.uri), int(exp) if exp and exp.isdigit() else None))
                asked = [(c, e if e is not None else default_exp if default_exp is not None
                          else DEFAULT_EXPIRES) for c, e in contacts]
                if self._registration_refused(req, txn, source, user, asked, warnings):
                    return
                if contacts:
                    bindings = self.location.register(
                        user, contacts, default_expires=default_exp, source=src,
                        call_id=req.call_id, cseq=req.cseq.number, now=now,
                        device_class="webrtc" if source.transport in ("ws", "wss") else "sip",
                        user_agent=req.headers.get("user-agent") or "",
                        path=path)
                else:
                    bindings = self.location.lookup(user, now)
        except RegistrationError as err:
            extra = [("Min-Expires", str(err.min_expires))] if err.min_expires else []
            self._respond(txn, err.status, err.reason, extra=extra)
            return
        except (SipParseError, ValueError) as exc:
            self._respond(txn, 400, f"Bad Contact: {exc}")
            return
        extra = [("Contact", f"<{b.contact}>;expires={b.remaining(now)}") for b in bindings]
        extra += path_echo(req)
        self._respond(txn, 200, "OK", extra=extra + warnings)

    def _registration_refused(self, req: SipRequest, txn: ServerTransaction, source: Address,
                              user: str, contacts: list[tuple[str, int]],
                              warnings: list[tuple[str, str]]) -> bool:
        """The guard on each binding of a REGISTER (R-ACCT-1/2, R-LIMIT-7, R-LIFE-5,
        R-EMERG-6), before anything is stored. A refusal is answered here (True) and no
        binding is kept; what the user must be told is added to ``warnings`` as RFC 3261
        §20.43 Warning headers (399: miscellaneous, with our domain) for the 200 OK."""
        if self.guard is None:
            return False
        agent = req.headers.get("user-agent") or ""
        for contact, expires in contacts:
            d = self.guard.registered(user, device=contact, source_ip=source.host,
                                      expires_s=expires, user_agent=agent,
                                      webrtc=source.transport in ("ws", "wss"), now=self.clock())
            if d is None:
                continue
            if not d.allowed:
                log.warning("REGISTER of %s from %s refused: %s %s (%s)", user, source.host,
                            d.sip_status, d.reason_phrase, d.rule_id)
                self._refuse(txn, d, 403, "Forbidden")
                return True
            warnings += [h for h in self._warning_headers([d]) if h not in warnings]
        return False

    def _warning_headers(self, decisions: Iterable[Decision]) -> list[tuple[str, str]]:
        """What our user must be told about what goes ahead (a charged call, special rates,
        contacts left, no emergency service), as RFC 3261 §20.43 Warnings (399: other)."""
        out: list[tuple[str, str]] = []
        for d in decisions:
            for w in d.warnings:
                header = ("Warning", f'399 {self.domain} "{_quoted(w.message)}"')
                if w.audience is Audience.USER and header not in out:
                    out.append(header)
        return out

    # ------------------------------------------------------------------ new calls

    def _identify_caller(self, req: SipRequest, txn: ServerTransaction,
                         source: Address) -> str | None:
        """The calling local user, or None when a challenge (or refusal) was sent."""
        user = req.from_.uri.user or ""
        if self.auth is None:
            if not self.is_user(user):
                self._respond(txn, 403, "Forbidden: unknown caller")
                return None
            return user
        who = self.auth.verify(req, self.clock(), proxy=True)
        if who is None:
            self._auth_failed(req, source, user, self.auth.failure(req))
            self._respond(txn, 407, "Proxy Authentication Required",
                          extra=self.auth.challenge(req, self.clock(), proxy=True))
            return None
        self._auth_succeeded(source, who)
        return who

    # ------------------------------------------------------------------ security (R-ACCT-5)

    def _auth_failed(self, req: SipRequest, source: Address, user: str,
                     reason: str | None) -> None:
        """Credentials refused (wrong, replayed, another user's): one line in the security
        log, counted towards the lock-out. ``reason`` None: the request carried none of
        ours (the first challenge), which is no failure."""
        if self.security is None or reason is None:
            return
        for lock in self.security.auth_failed(source.host, source.port, user, req.method,
                                              reason):
            log.warning("%s %s locked out after %d authentication failures", lock.kind,
                        lock.key, lock.failures)

    def _auth_succeeded(self, source: Address, user: str) -> None:
        if self.security is not None:
            self.security.succeeded(source.host, user)

    def _locked_out(self, req: SipRequest, txn: ServerTransaction, source: Address) -> bool:
        """A new request from a locked-out address, or claiming a locked-out user, is a 403
        before anything else is done with it; an emergency call always goes on (R-EMERG),
        and so do requests within a call already up (its BYE) and ACK/CANCEL."""
        assert self.security is not None
        if req.method in ("ACK", "CANCEL") or req.to.tag:
            return False
        try:
            user = (req.to if req.method == "REGISTER" else req.from_).uri.user or ""
        except SipParseError:
            user = ""
        why = self.security.locked(source.host, user)
        if why is None:
            return False
        if req.method == "INVITE" and self.guard is not None:
            try:
                if self.guard.is_emergency(user, _dialled(req.uri)):
                    return False
            except (ServiceUrnError, SipParseError):
                pass
        self.security.refused += 1
        self._respond(txn, 403, f"Forbidden: {why}")
        return True

    def _presented(self, caller: str, from_trunk: bool) -> str | None:
        """The caller ID the other end will see: a local user's own number (its DID) when it
        has one; None lets the guard take the user's first number, or its name."""
        if from_trunk or self.trunk is None:
            return None
        account = self.trunk.account_for(caller)
        return account.did if account is not None and account.did else None

    def _refuse(self, txn: ServerTransaction, d: Decision, status: int, reason: str) -> None:
        """A guard's refusal on the wire: its status and reason phrase, the reason a person
        sees in a Warning (399, RFC 3261 §20.43), and Retry-After when it says when to try
        again (RFC 3261 §20.33)."""
        extra: list[tuple[str, str]] = []
        if d.user_message:
            extra.append(("Warning", f'399 {self.domain} "{_quoted(d.user_message)}"'))
        if d.retry_after_s is not None:
            extra.append(("Retry-After", str(max(0, d.retry_after_s))))
        self._respond(txn, d.sip_status or status, d.reason_phrase or reason, extra=extra)

    def _on_invite(self, req: SipRequest, txn: ServerTransaction, source: Address) -> None:
        if req.call_id in self.calls:  # a second INVITE of a call we are setting up (forked)
            self._respond(txn, 482, "Loop Detected")
            return
        from_trunk = self.trunk is not None and self.trunk.is_from_trunk(source)
        from_gateway = not from_trunk and self._from_emergency_gateway(source)
        if from_trunk or from_gateway:
            # the provider and the emergency gateway do not authenticate to us: their
            # address is their credential
            caller = _external_caller(req)
        else:
            found = self._identify_caller(req, txn, source)
            if found is None:
                return
            caller = found
        try:
            target = _dialled(req.uri)
        except (ServiceUrnError, SipParseError) as exc:
            self._respond(txn, exc.status, exc.reason)
            return
        try:
            offer, by_value = invite_body(req)
        except SipParseError as exc:
            extra = [("Accept", ACCEPT)] if exc.status == 415 else []
            self._respond(txn, exc.status, exc.reason, extra=extra)
            return
        now = self.clock()
        if is_urn(target) and (from_trunk or self.guard is None
                               or not self.guard.is_emergency(caller, target)):
            # RFC 5031: of the services, only the emergency ones (sos) are offered here
            self._respond(txn, 404, f"Not Found: no {target} service here")
            return
        if not from_trunk and not from_gateway and self.guard is not None and target not in (
                self.echo_ext, self.tone_ext) and self.guard.is_emergency(caller, target):
            # R-EMERG: before the DID map, the 404 and the trunk; nothing else may stop it
            self._on_emergency(req, txn, source, caller, target, offer, now, by_value)
            return
        if self.draining:  # the edge is stopping: another edge (or a retry later) takes it
            self._respond(txn, 503, "Service Unavailable: shutting down",
                          extra=[("Retry-After", str(self.retry_after))])
            return
        direction = "local"
        digest: DigestClient | None = None
        if from_trunk:
            assert self.trunk is not None
            local = self.trunk.did_target(req)
            if local is None:
                self._respond(txn, 404, "Not Found: no such number here")
                return
            target, direction = local, "inbound"
        psap_callback = False
        if from_gateway:
            local = target if self.is_user(target) else \
                self.trunk.ext_for_did(target) if self.trunk is not None else None
            if local is None or not self.is_user(local):
                self._respond(txn, 404, "Not Found: no such number here")
                return
            target, direction = local, "inbound"
            psap_callback = self._callback_due(target, now)
        is_app = direction == "local" and target in (self.echo_ext, self.tone_ext)
        if direction == "local" and not is_app and not self.is_user(target) \
                and self.trunk is not None:
            # another user's DID dialled from inside: a local call, no trip to the provider
            target = self.trunk.ext_for_did(target) or target
        if direction == "local" and not is_app and not self.is_user(target):
            if self.trunk is None or not is_external_number(target):
                self._respond(txn, 404, "Not Found")
                return
            try:
                digest = self.trunk.call_digest(caller)
            except TrunkError:
                self._respond(txn, 403, f"Forbidden: user {caller} has no upstream account")
                return
            direction = "outbound"
        allowed: list[Decision] = []
        if self.guard is not None and not is_app:
            allowed = self.guard.admit_decisions(
                req.call_id, caller, target, inbound_local=direction == "local", now=now,
                media=media_lines(offer),
                presented=self._presented(caller, from_trunk or from_gateway),
                caller_local=not (from_trunk or from_gateway),  # where it came from decides
                user_agent=req.headers.get("user-agent") or "", psap_callback=psap_callback)
            refusal = next((d for d in allowed if not d.allowed), None)
            if refusal is not None:
                self._refuse(txn, refusal, 403 if refusal is allowed[0] else 486,
                             "Forbidden" if refusal is allowed[0] else "Busy Here")
                return
            offer = stripped(offer, {i for d in allowed for i in d.strip_media})
        bindings: list[Binding] = []
        if direction in ("local", "inbound") and not is_app:
            bindings = [b for b in self.location.lookup(target, now)]
            if not bindings:
                self._release_guard(req.call_id, now)
                self._respond(txn, 480, "Temporarily Unavailable")
                return
        if is_app and self._app_calls_full(txn, caller):
            return
        key = req.call_id
        made = self._anchor(req, txn, offer, now, legs=("a",) if is_app else ("a", "b"),
                            release=not is_app,
                            user=target if direction == "inbound" else caller)
        if made is None:
            return
        media, a_neg = made
        record = CallRecord(call_id=key, started=time.time(), caller=caller, callee=target,
                            billable=any(d.billable for d in allowed),
                            policy=sorted({w.rule_id for d in allowed for w in d.warnings}))
        call = Call(key=key, caller=caller, callee=target, a_invite=req, a_txn=txn,
                    a_source=source, a_tag=new_tag(), media=media, a_neg=a_neg, record=record,
                    direction=direction, digest=digest, a_offer=self._our_offer(media, a_neg),
                    warnings=self._warning_headers(
                        d for d in allowed if d.call_id is not None
                        and d.call_id.endswith("/caller")))
        self.calls[key] = call
        self.stats["calls"] += 1
        if is_app:
            call.app = "echo" if target == self.echo_ext else "tone"
            self._answer_a(call)
            self._spawn(self._start_app(call), call)
            return
        if direction == "outbound":
            self._fork_trunk(call)
        else:
            self._fork(call, bindings)

    def _app_calls_full(self, txn: ServerTransaction, caller: str) -> bool:
        """``caller`` already holds ``app_calls_per_user`` calls to 600/601: answered 403
        here (calls to the edge's own numbers are not seen by the guard's channel count, and
        each holds an RTP pair)."""
        held = sum(1 for c in self.calls.values()
                   if c.caller == caller and c.app in ("echo", "tone"))
        if held < self.app_calls_per_user:
            return False
        log.info("call of %s to a test number refused: %d already up", caller, held)
        text = "You are already in a call to a test number. Hang up that call first."
        self._respond(txn, 403, "Forbidden: already in a call to a test number",
                      extra=[("Warning", f'399 {self.domain} "{text}"')])
        return True

    def _new_media(self, key: str, *, user: str = "", emergency: bool = False) -> CallMedia:
        ms = self.media_settings
        return CallMedia(key, self.allocator, self.scheduler, bridge_rate=ms.bridge_rate,
                         jitter_min_ms=ms.jitter_min_ms, jitter_max_ms=ms.jitter_max_ms,
                         rtp_timeout=ms.rtp_timeout,
                         on_timeout=functools.partial(self._media_timeout, key),
                         on_dtmf=functools.partial(self._media_dtmf, key),
                         user=user, emergency=emergency, latch=ms.latch)

    def _anchor(self, req: SipRequest, txn: ServerTransaction,
                offer: SessionDescription | None, now: float, *, legs: tuple[str, ...],
                release: bool, user: str = "", emergency: bool = False,
                ) -> tuple[CallMedia, Negotiated | None] | None:
        """The call's media with ``legs`` reserved and our answer to the caller's offer (None
        for an INVITE without one: ``_our_offer`` goes in the 200 OK); None when the caller
        was refused (503 no ports, 488 no codec), its guard channel given back if ``release``.
        The ports count against ``user``'s share (none for ``emergency``, which may take the
        range's emergency share); leg a's RTP may latch to the address the INVITE came from."""
        ms = self.media_settings
        media = self._new_media(req.call_id, user=user, emergency=emergency)
        media.allow_sources("a", (txn.peer.host,))
        status, reason, extra = 0, "", []
        try:
            pair_a = media.reserve("a")
            a_neg = None if offer is None else \
                answer_offer(offer, address=ms.host, port=pair_a.rtp, order=self.codecs)
            for leg in legs[1:]:
                media.reserve(leg)
            return media, a_neg
        except PortsExhausted:
            status, reason = 503, "Service Unavailable: no media ports"
            extra = [("Retry-After", str(self.retry_after))]
        except NoCommonCodec as exc:
            status, reason, extra = 488, "Not Acceptable Here", [("Warning", exc.warning)]
        except OfferAnswerError as exc:
            status, reason = 488, "Not Acceptable Here"
            extra = [("Warning", f'399 {self.domain} "{exc}"')]
        media.close()
        if release:
            self._release_guard(req.call_id, now)
        self._respond(txn, status, reason, extra=extra)
        return None

    # ------------------------------------------------------------------ emergency (R-EMERG)

    def _on_emergency(self, req: SipRequest, txn: ServerTransaction, source: Address,
                      caller: str, dialed: str, offer: SessionDescription | None, now: float,
                      by_value: tuple[BodyPart, ...] = ()) -> None:
        assert self.guard is not None
        # a dialled service URN is decided as the caller's country's code for that service,
        # "0112" (outside-line prefix) and "+112" as 112
        code = self.guard.emergency_code(caller, dialed) or dialed
        d = self.guard.admit_decision(req.call_id, caller, code, inbound_local=False, now=now)
        if d is not None and d.action is Action.ROUTE_EMERGENCY:
            self._route_emergency(req, txn, source, caller, dialed, offer, now, d, by_value)
            return
        status = d.sip_status if d is not None and d.sip_status else 403
        reason = d.reason_phrase if d is not None and d.reason_phrase else \
            "Emergency Calls Not Available From This Line"
        text = (d.user_message if d is not None else None) or reason
        self.stats["emergency_refused"] += 1
        log.warning("emergency call %s from %s to %s refused: %s (%s)", req.call_id, caller,
                    dialed, d.rule_id if d is not None else "no decision", reason)
        announcement = (d.announcement if d is not None else None) or "emergency-unavailable"
        self._play_then_refuse(req, txn, source, caller, dialed, offer, now, announcement,
                               status, reason, text)

    def _from_emergency_gateway(self, source: Address) -> bool:
        """Whether a request comes from the configured emergency gateway: its address, and on
        UDP its port too (a phone on the gateway's host is not the gateway)."""
        dest = self._emergency_destination(self.emergency_route) if self.emergency_route \
            else None
        if dest is None or dest.host != source.host:
            return False
        return source.transport != "udp" or dest.port == source.port

    def _callback_due(self, user: str, now: float) -> bool:
        """Within the call-back window after ``user``'s last emergency call."""
        last = self._last_emergency.get(user)
        return last is not None and now - last <= self.emergency_callback_s

    def _emergency_destination(self, route: str) -> Address | None:
        """Where the emergency INVITE goes: the route's own host when it is an address, else
        the trunk (a provider's emergency route is a name its proxy resolves)."""
        try:
            uri = SipUri.parse(route)
        except SipParseError:
            return None
        transport = (uri.params.get("transport") or "udp").lower()
        try:
            ipaddress.ip_address(uri.host_no_brackets)
        except ValueError:
            return self.trunk.address if self.trunk is not None else None
        default = 5061 if uri.scheme == "sips" else 5060
        return Address(transport, uri.host_no_brackets, uri.port or default)

    def _route_emergency(self, req: SipRequest, txn: ServerTransaction, source: Address,
                         caller: str, dialed: str, offer: SessionDescription | None, now: float,
                         d: Decision, by_value: tuple[BodyPart, ...] = ()) -> None:
        route = self.emergency_route or d.route or ""
        dest = self._emergency_destination(route) if route else None
        if dest is None or d.location is None:
            # nothing to send it to: say so plainly rather than ring nowhere
            log.error("emergency call %s from %s: no usable route (%r)", req.call_id, caller,
                      route)
            self._release_guard(req.call_id, now)
            self._respond(txn, 503, "Service Unavailable: no emergency route",
                          extra=[("Warning", f'399 {self.domain} "The emergency route is '
                                  'not reachable. Call from a mobile phone or a landline."')])
            return
        made = self._anchor(req, txn, offer, now, legs=("a", "b"), release=True, user=caller,
                            emergency=True)
        if made is None:
            return
        media, a_neg = made
        key = req.call_id
        record = CallRecord(call_id=key, started=time.time(), caller=caller, callee=dialed)
        call = Call(key=key, caller=caller, callee=dialed, a_invite=req, a_txn=txn,
                    a_source=source, a_tag=new_tag(), media=media, a_neg=a_neg, record=record,
                    direction="emergency", a_offer=self._our_offer(media, a_neg),
                    warnings=self._warning_headers([d]))
        self.calls[key] = call
        self.stats["calls"] += 1
        self.stats["emergency_routed"] += 1
        self._last_emergency[caller] = now
        log.info("emergency call %s from %s to %s (%s) routed to %s", key, caller, dialed,
                 d.service_urn or "", route)
        sdp = self._prepare_b(call)
        if self.emergency_lane is not None:
            token = self.emergency_lane.new_token()
            self._contact_users[key] = self._contact_users[call.b_call_id] = token
        boundary = f"loc-{call.b_tag}"
        body, geolocation = emergency_body(boundary, sdp, d.location, by_value)
        shown = d.present_as or caller
        ruri, to_value, routes = self._emergency_addresses(route, dialed, d)
        self._send_b_invite(
            call, ruri, dest, f"<sip:{shown}@{self.domain}>;tag={call.b_tag}",
            to_value, body, content_type=f"multipart/mixed;boundary={boundary}",
            extra=[*routes, ("Geolocation", geolocation),
                   ("Geolocation-Routing", d.location.geolocation_routing),
                   ("Priority", "emergency"),
                   ("Accept", "application/sdp, application/pidf+xml")])

    def _emergency_addresses(self, route: str, dialed: str,
                             d: Decision) -> tuple[str, str, list[tuple[str, str]]]:
        """Request-URI, To and Route headers of the emergency INVITE.

        ``service-urn`` (RFC 6881, NG112, NENA i3): the Request-URI is the service URN, the
        one the phone dialled or else the guard's for the digits (``urn:service:sos.fire``);
        the gateway is reached by ``Route: <route;lr>`` (loose routing, RFC 3261 §16.12); To
        keeps the dial string (``dial_string_uri``). ``route``: today's addressing for a
        gateway that wants its own URI as Request-URI, To ``sip:<digits>@<domain>``.
        """
        if self.emergency_request_uri == "route":
            return route, f"<{dialed}>" if is_urn(dialed) else \
                f"<sip:{dialed}@{self.domain}>", []
        urn = dialed if is_urn(dialed) else d.service_urn or "urn:service:sos"
        return urn, dial_string_uri(dialed, self.domain), [("Route", loose_route(route))]

    def _emergency_next_hop(self, dialog: Dialog, fallback: Address) -> Address:
        """Where the emergency dialog's ACK and BYE go (RFC 3261 §12.2.1.1, §8.1.2): the
        first Record-Route of the gateway's 2xx, else its Contact, the dialog's remote target;
        the Route of the INVITE is not part of the dialog. ``fallback`` (the route's address)
        when that hop is not an address, as behind a provider's proxy."""
        hop = dialog.route_set[0] if dialog.route_set else f"<{dialog.remote_target}>"
        try:
            uri = NameAddr.parse(hop).uri
            ipaddress.ip_address(uri.host_no_brackets)
        except (SipParseError, ValueError):
            return fallback
        if not uri.is_sip:
            return fallback
        transport = (uri.params.get("transport") or fallback.transport).lower()
        port = uri.port or (5061 if uri.scheme == "sips" or transport == "tls" else 5060)
        if (transport, uri.host_no_brackets, port) == \
                (fallback.transport, fallback.host, fallback.port):
            return fallback  # the same peer: keep its connection
        return Address(transport, uri.host_no_brackets, port)

    def _play_then_refuse(self, req: SipRequest, txn: ServerTransaction, source: Address,
                          caller: str, dialed: str, offer: SessionDescription | None,
                          now: float, announcement: str, status: int, reason: str,
                          text: str) -> None:
        """The notice as early media (183 with our answer), then the final refusal; just the
        refusal when there is nothing to play, no port to play it from, or no offer to
        answer in a 183 (an INVITE without SDP: early media would need reliable 18x)."""
        warning = [("Warning", f'399 {self.domain} "{_quoted(text)}"')]
        prompt = self._prompt(announcement) if offer is not None else None
        made = None
        if prompt is not None and offer is not None:
            made = self._anchor_quietly(req, offer, user=caller, source=source.host)
        if prompt is None or made is None:
            self._respond(txn, status, reason, extra=warning)
            return
        media, a_neg = made
        key = req.call_id
        record = CallRecord(call_id=key, started=time.time(), caller=caller, callee=dialed)
        call = Call(key=key, caller=caller, callee=dialed, a_invite=req, a_txn=txn,
                    a_source=source, a_tag=new_tag(), media=media, a_neg=a_neg, record=record,
                    direction="emergency", app="notice")
        self.calls[key] = call
        self.stats["calls"] += 1
        self._notice_then_final(call, prompt, announcement, status, reason, warning)

    def _prompt(self, announcement: str) -> tuple[FrameSource, float] | None:
        try:
            return self.prompts(announcement, self.media_settings.bridge_rate)
        except Exception:  # the final answer itself must still reach the caller
            log.exception("notice %s could not be prepared", announcement)
            return None

    def _notice_then_final(self, call: Call, prompt: tuple[FrameSource, float],
                           announcement: str, status: int, reason: str,
                           warning: list[tuple[str, str]]) -> None:
        """Play ``prompt`` to the caller as early media (leg "a" only), then answer it with
        the final ``status``; a CANCEL meanwhile ends it with 487 instead."""
        call.state = CallState.EARLY
        if not call.early_sdp_sent:
            call.early_sdp_sent = True
            self._respond(call.a_txn, 183, "Session Progress", to_tag=call.a_tag,
                          body=self._a_sdp(call), contact=True)
        source_, seconds = prompt

        def finish() -> None:
            if call.state is CallState.EARLY:
                self._end(call, f"notice:{announcement}", status=status, reason=reason,
                          extra=warning)
                self.flush()

        async def play() -> None:
            if call.a_neg is None:  # nothing to play on before the ACK's answer
                await asyncio.sleep(NOTICE_GUARD_S)
                finish()
                return
            await call.media.attach("a", call.a_neg)
            if call.state is CallState.ENDED:
                return
            call.media.connect()
            # the source ends inside the media tick: answer from the loop, not from there
            loop = asyncio.get_running_loop()

            def ended(media: CallMedia, leg: str) -> None:
                loop.call_soon(finish)

            call.media.inject("a", source_, ended)
            await asyncio.sleep(seconds + NOTICE_GUARD_S)
            finish()

        self._spawn(play(), call)

    def _anchor_quietly(self, req: SipRequest, offer: SessionDescription, *, user: str = "",
                        source: str = "") -> tuple[CallMedia, Negotiated] | None:
        """Leg "a" media for a notice, or None (no port, no codec): the refusal goes on alone.
        Not an emergency call's share: a refused caller's notices count against ``user``."""
        ms = self.media_settings
        media = self._new_media(req.call_id, user=user)
        media.allow_sources("a", (source,))
        try:
            pair = media.reserve("a")
            return media, answer_offer(offer, address=ms.host, port=pair.rtp, order=self.codecs)
        except (PortsExhausted, OfferAnswerError) as exc:
            log.warning("notice not played on %s: %s", req.call_id, exc)
            media.close()
            return None

    async def _start_app(self, call: Call) -> None:
        """600 returns what it hears (audio-level, through the jitter buffer); 601 plays a tone.
        With a delayed offer this runs at the caller's ACK, which carries the answer."""
        if call.a_neg is None:
            await call.a_answered.wait()
            if call.a_neg is None or call.state is CallState.ENDED:
                return
        await call.media.attach("a", call.a_neg)
        if call.state is CallState.ENDED:
            return
        call.media.connect()  # one leg: always the bridge
        if call.app == "echo":
            call.media.bridge_legs["a"].echo = True
        else:
            call.media.inject("a", ToneSource(self.media_settings.tone_hz,
                                              self.media_settings.bridge_rate))

    async def _connect(self, call: Call, b_neg: Negotiated) -> None:
        media = call.media
        media.allow_sources("b", self._b_sources(call))
        if call.a_neg is None:
            # delayed offer: leg "b" now, leg "a" when the caller's ACK brings the answer
            await media.attach("b", b_neg)
            await call.a_answered.wait()
            if call.a_neg is None or call.state is CallState.ENDED or media.closed:
                return
        await media.attach("a", call.a_neg)
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
        if call.a_neg is not None:
            return call.a_neg.sdp
        assert call.a_offer is not None
        return call.a_offer.to_bytes()

    def _on_ack_answer(self, call: Call, ack: SipRequest) -> None:
        """The caller's ACK answers the offer of our 200 OK: leg "a" media starts now. An
        ACK with no usable answer ends the call (RFC 3261 §13.2.1: the UAS sends BYE)."""
        assert call.a_offer is not None
        try:
            if not ack.body or ack.content_type != SDP:
                raise OfferAnswerError("the ACK carries no SDP answer to our offer")
            call.a_neg = process_answer(call.a_offer, parse_sdp(ack.body))
        except (SdpError, OfferAnswerError) as exc:
            log.warning("call %s: delayed offer not answered: %s", call.key, exc)
            self._end(call, "bad-ack-sdp", bye_a=True, bye_b=True)
            return
        call.a_answered.set()  # _connect / _start_app, waiting since the 200 OK, go on

    def _b_sources(self, call: Call) -> set[str]:
        """Where leg b's signalling comes from: the device that answered (before the answer,
        every device rung), as addressed and as it registered from; its RTP may latch there."""
        forks = [call.winner] if call.winner is not None else call.forks
        dests = {f.binding_source for f in forks}
        hosts = {d.host for d in dests}
        if call.direction in ("local", "inbound"):
            for b in self.location.lookup(call.callee, self.clock()):
                if binding_destination(b) in dests:
                    hosts.add(b.source[1])
                    if b.path:  # behind a front proxy: the phone's media is at its Contact
                        with contextlib.suppress(SipParseError):
                            hosts.add(SipUri.parse(b.contact).host_no_brackets)
        return hosts

    def _release_guard(self, call_id: str, now: float) -> None:
        """An admitted call refused here (488, 503, 480) was never placed: not a short call."""
        if self.guard is not None:
            self.guard.refused(call_id, now=now)

    def _prepare_b(self, call: Call) -> bytes:
        """Leg b's SDP offer (on its reserved pair), Call-ID and tag; returns the body."""
        pair_b = call.media.reserve("b")
        call.b_offer = build_offer(address=self.media_settings.host, port=pair_b.rtp,
                                   order=self.codecs)
        call.b_call_id = new_call_id(self.domain)
        call.b_tag = new_tag()
        self._by_b[call.b_call_id] = call
        return call.b_offer.to_bytes()

    def _send_b_invite(self, call: Call, ruri: str, dest: Address, from_value: str,
                       to_value: str, body: bytes, *, content_type: str = SDP,
                       extra: Iterable[tuple[str, str]] = ()) -> None:
        h = Headers()
        h.add("Max-Forwards", "70")
        h.add("From", from_value)
        h.add("To", to_value)
        h.add("Call-ID", call.b_call_id)
        h.add("CSeq", "1 INVITE")
        h.add("Contact", self._contact(dest.transport, call.b_call_id))
        h.add("Allow", ALLOW)
        h.add("User-Agent", self.user_agent)
        for name, value in extra:
            h.add(name, value)
        h.add("Content-Type", content_type)
        req = SipRequest("INVITE", ruri, h, body)
        txn = self.core.send_request(req, dest, self.clock())
        call.forks.append(Fork(binding_source=dest, request=req, txn=txn))

    def _fork(self, call: Call, bindings: list[Binding]) -> None:
        body = self._prepare_b(call)
        display = self._caller_display(call)
        from_uri = f"sip:{call.caller}@{self.domain}"
        from_value = (f'"{display}" ' if display else "") + f"<{from_uri}>;tag={call.b_tag}"
        for b in bindings:
            self._send_b_invite(call, b.contact, binding_destination(b), from_value,
                                f"<sip:{call.callee}@{self.domain}>", body,
                                extra=[("Route", hop) for hop in b.path])

    def _caller_display(self, call: Call) -> str:
        """The display name of our INVITE's From: a local caller's name from the user table
        (what its phone claims is not checked, unless ``trust_display_name``); a caller from
        the trunk keeps what the provider sent. Quoted-string safe."""
        if self.trust_display_name or call.direction == "inbound":
            try:
                claimed = call.a_invite.from_.display or ""
            except SipParseError:
                claimed = ""
            return _quoted(claimed)
        return _quoted(self.display_names.get(call.caller, ""))

    def _fork_trunk(self, call: Call) -> None:
        """One INVITE to the provider, as the caller's own upstream account."""
        assert self.trunk is not None
        body = self._prepare_b(call)
        ruri, from_uri, to_uri = self.trunk.outbound_uris(call.caller, call.callee)
        self._send_b_invite(call, ruri, self.trunk.address, f"<{from_uri}>;tag={call.b_tag}",
                            f"<{to_uri}>", body)

    def _answer_a(self, call: Call) -> None:
        resp = self._respond(call.a_txn, 200, "OK", to_tag=call.a_tag, body=self._a_sdp(call),
                             contact=True, extra=[("Allow", ALLOW), *call.warnings])
        try:
            call.a_dialog = Dialog.from_uas(call.a_invite, resp)
        except DialogError as exc:
            log.warning("caller dialog not created: %s", exc)
        call.state = CallState.ANSWERED
        call.answered_at = self.clock()
        call.record.answered = time.time()
        self.stats["answered"] += 1
        if self.guard is not None and not call.app:
            self._on_answered(call, self.guard.answered(call.key, call.answered_at))

    def _apply_answer_limits(self, call: Call, decisions: Iterable[Decision]) -> None:
        """The guard's time limit for an answered call (``max_duration_s``: the trial minutes
        left, R-LIMIT-7): when it is up the edge ends the call, BYE on both legs."""
        limits = [d.max_duration_s for d in decisions if d.max_duration_s is not None]
        if not limits or call.state is CallState.ENDED:
            return
        seconds = max(0, min(limits))
        log.info("%s: the guard allows %d s of conversation", call.key, seconds)
        call.limit_timer = asyncio.get_running_loop().call_later(
            seconds, self._time_up, call.key, seconds)

    def _time_up(self, key: str, seconds: int) -> None:
        call = self.calls.get(key)
        if call is None or call.state not in (CallState.ANSWERED, CallState.CONFIRMED):
            return
        log.info("%s: %d s allowed by the guard are up: ending the call", key, seconds)
        self._end(call, "time-limit", bye_a=True, bye_b=True)
        self.flush()

    # ------------------------------------------------------------------ responses (leg b)

    def _fork_of(self, call: Call, txn: ClientTransaction) -> Fork | None:
        for f in call.forks:
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
        if status in (401, 407) and call.digest is not None:
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
                or call.digest is None:
            return False
        try:
            retry = call.digest.authorize(fork.request, resp)
        except AuthError as exc:
            log.warning("call %s: upstream challenge not answered: %s", call.key, exc)
            return False
        fork.auth_tries += 1
        fork.request = retry
        fork.txn = self.core.send_request(retry, fork.binding_source, self.clock())
        return True

    def _b_negotiate(self, call: Call, resp: SipResponse) -> Negotiated | None:
        if not resp.body or call.b_offer is None:
            return None
        try:
            return process_answer(call.b_offer, parse_sdp(resp.body))
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
        neg = self._b_negotiate(call, resp)
        if neg is not None and not call.early_sdp_sent and call.a_neg is not None:
            # early media (183): anchor it and give the caller our answer now
            call.b_neg = neg
            call.early_sdp_sent = True
            self._respond(call.a_txn, 183, "Session Progress", to_tag=call.a_tag,
                          body=self._a_sdp(call), contact=True, extra=call.warnings)
            self._spawn(self._connect(call, neg), call)
        elif not call.ringing_sent and not call.early_sdp_sent:
            call.ringing_sent = True
            self._respond(call.a_txn, 180, "Ringing", to_tag=call.a_tag, contact=True,
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
        if call.winner is not None and call.winner is not fork or call.state is CallState.ENDED:
            # a second device answered too late (§13.2.2.4): ACK and BYE it
            bye = dialog.create_request("BYE")
            self.core.send_request(bye, fork.binding_source, now)
            return
        call.winner = fork
        fork.dialog = dialog
        fork.final = resp.status
        for other in call.forks:
            if other is not fork and other.final == 0:
                self._cancel_fork(other, now)
        neg = self._b_negotiate(call, resp) or call.b_neg
        if neg is None:
            self._end(call, "bad-answer-sdp", bye_b=True, status=502,
                      reason="Bad Gateway: the callee's SDP is unusable")
            return
        changed = call.b_neg is None or call.b_neg.codec != neg.codec
        call.b_neg = neg
        self._answer_a(call)
        if changed or not call.early_sdp_sent:
            self._spawn(self._connect(call, neg), call)

    def _cancel_fork(self, fork: Fork, now: float) -> None:
        fork.final = -1
        try:
            self.core.cancel(fork.txn, now)
        except Exception as exc:  # already terminated: nothing to cancel
            log.debug("cancel skipped: %s", exc)

    def _on_fork_failed(self, call: Call, fork: Fork, status: int, reason: str) -> None:
        if call.state not in (CallState.ROUTING, CallState.EARLY):
            return
        if any(f.final == 0 for f in call.forks):
            return  # other devices still ringing
        best = min((f.final for f in call.forks if f.final > 0), default=status)
        if best in (401, 407) and call.direction == "outbound":
            best, reason = 403, "Forbidden: the provider refused the upstream credentials"
        elif best in (401, 407):
            best, reason = 500, "Server Internal Error"
        elif best == 408:
            best, reason = 480, "Temporarily Unavailable"
        if call.direction == "emergency":
            self._emergency_failed(call, best, reason or "Call Failed")
            return
        self._respond(call.a_txn, best, reason or "Call Failed", to_tag=call.a_tag)
        self._end(call, f"callee-{best}", status=best)

    def _emergency_failed(self, call: Call, status: int, reason: str) -> None:
        """The emergency gateway refused or never answered: the caller is told, as when the
        service is not available, to call from a mobile phone or a landline."""
        self.stats["emergency_failed"] += 1
        log.error("emergency call %s from %s to %s failed at the gateway: %d %s", call.key,
                  call.caller, call.callee, status, reason)
        text = "The emergency call could not be connected. Hang up and call from a mobile " \
               "phone or a landline."
        warning = [("Warning", f'399 {self.domain} "{text}"')]
        prompt = self._prompt("emergency-unavailable")
        if prompt is None:
            self._respond(call.a_txn, status, reason, to_tag=call.a_tag, extra=warning)
            self._end(call, f"callee-{status}", status=status)
            return
        self._notice_then_final(call, prompt, "emergency-unavailable", status, reason, warning)

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

    def _on_txn_failure(self, txn: Any) -> None:
        self._bye_auth.pop(txn, None)
        req = getattr(txn, "request", None)
        if req is None or req.method != "INVITE":
            return
        call = self._by_b.get(req.call_id)
        if call is None:
            return
        fork = self._fork_of(call, txn)
        if fork is None or fork.final != 0:
            return
        fork.final = 408
        self._on_fork_failed(call, fork, 408, "Request Timeout")

    # ------------------------------------------------------------------ in-dialog

    def _in_dialog(self, req: SipRequest, txn: ServerTransaction,
                   source: Address) -> tuple[Call, str, str] | None:
        """The call and leg ("a" or "b") a request inside a dialog belongs to (RFC 3261
        §12.2.2: Call-ID, From tag and To tag all match), and how its sender was recognised
        ("address", or "digest" when it authenticated as the dialog's peer from elsewhere).
        None when it was answered here: 481 for no such dialog, 407/403 for a sender that is
        not the dialog's peer (``dialog_peer_check``)."""
        found = match_dialog(self.calls.get(req.call_id), self._by_b.get(req.call_id), req)
        if found is None:
            self._respond(txn, 481, "Call/Transaction Does Not Exist")
            return None
        call, leg = found
        peer_hosts, peer_user = dialog_peer(call, leg)
        if not self.dialog_peer_check or same_host(source.host, peer_hosts):
            return call, leg, "address"
        # the right Call-ID and tags from another address: only the peer's credentials do
        who = self.auth.verify(req, self.clock(), proxy=True) if self.auth is not None else None
        if peer_user and who == peer_user:
            log.warning("%s: %s on leg %s from %s authenticated as %s, not from its address",
                        call.key, req.method, leg, source.host, who)
            return call, leg, "digest"
        log.warning("%s: %s on leg %s from %s refused: not the dialog's peer (%s)", call.key,
                    req.method, leg, source.host, ", ".join(sorted(peer_hosts)))
        if self.auth is not None and peer_user and who is None:
            self._respond(txn, 407, "Proxy Authentication Required",
                          extra=self.auth.challenge(req, self.clock(), proxy=True))
        else:
            self._respond(txn, 403, "Forbidden: not the peer of this dialog")
        return None

    def _on_bye(self, req: SipRequest, txn: ServerTransaction, source: Address) -> None:
        found = self._in_dialog(req, txn, source)
        if found is None:
            return
        call, leg, how = found
        call.record.ended_by = {
            "party": "caller" if leg == "a" else "callee",
            "user": call.caller if leg == "a" else call.callee,
            "source": f"{source.transport}:{source.host}:{source.port}",
            "verified": how}
        self._respond(txn, 200, "OK")
        if leg == "a":
            self._end(call, "caller-bye", bye_b=True)
        else:
            self._end(call, "callee-bye", bye_a=True)

    def _on_reinvite(self, req: SipRequest, txn: ServerTransaction) -> None:
        # the dialog (Call-ID and both tags) and its peer are checked first (_in_dialog)
        call = self.calls.get(req.call_id)
        leg = "a"
        if call is None:
            call = self._by_b.get(req.call_id)
            leg = "b"
        if call is None or call.state is CallState.ENDED:
            self._respond(txn, 481, "Call/Transaction Does Not Exist")
            return
        current = call.a_neg if leg == "a" else call.b_neg
        pair = call.media.pairs.get(leg)
        if current is None or pair is None:
            self._respond(txn, 491, "Request Pending")
            return
        tag = call.a_tag if leg == "a" else call.b_tag
        if not req.body:
            self._respond(txn, 200, "OK", to_tag=tag, body=current.sdp, contact=True)
            return
        try:
            offer = parse_sdp(req.body)
            # keep the codec in use first so a hold does not force a transcoder change
            order = (current.codec, *[c for c in self.codecs if c.name != current.codec.name])
            neg = answer_offer(offer, address=self.media_settings.host, port=pair.rtp,
                               order=order, previous=current.local_sdp)
        except SdpError as exc:
            self._respond(txn, 400, f"Bad SDP: {exc}")
            return
        except NoCommonCodec as exc:
            self._respond(txn, 488, "Not Acceptable Here", extra=[("Warning", exc.warning)])
            return
        except OfferAnswerError as exc:
            self._respond(txn, 488, "Not Acceptable Here",
                          extra=[("Warning", f'399 {self.domain} "{exc}"')])
            return
        if leg == "a":
            call.a_neg = neg
        else:
            call.b_neg = neg
        self._respond(txn, 200, "OK", to_tag=tag, body=neg.sdp, contact=True)
        if leg in call.media.sessions:
            call.media.update(leg, neg)

    # ------------------------------------------------------------------ notices, recording

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
            decision = self.guard.notice_played(guard_id, notice_id, self.clock())
            self._apply_recording(call, [decision])
            self._next_notice(call, leg)
        except Exception:
            log.exception("%s: after notice %s", call.key, notice_id)
            self._end(call, "internal-error", bye_a=True, bye_b=True)
        self.flush()

    def _apply_recording(self, call: Call, decisions: Iterable[Decision]) -> None:
        """Carry out the guard's recording commands for this call."""
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
        key from the correspondent stops and deletes the recording)."""
        if event.kind is DtmfKind.END:
            self._on_digit(self.calls.get(key), leg, event.digit)

    def _on_digit(self, call: Call | None, leg: str, digit: str) -> None:
        if call is None or call.app or self.guard is None or call.state is CallState.ENDED:
            return
        self._apply_recording(call, self.guard.dtmf(call.key, leg, digit, self.clock()))

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
        if req.method == "INFO" and (req.content_type or "").lower() == "application/dtmf-relay":
            for line in req.body.decode("utf-8", "replace").splitlines():
                name, _, value = line.partition("=")
                if name.strip().lower() == "signal" and len(value.strip()) == 1:
                    self._on_digit(call, leg, value.strip().upper())

    # ------------------------------------------------------------------ teardown

    def _media_timeout(self, key: str, media: CallMedia, leg: str) -> None:
        call = self.calls.get(key)
        if call is not None:
            self._end(call, f"rtp-timeout:{leg}", bye_a=True, bye_b=True)
            self.flush()
        else:
            media.close()

    def _send_bye(self, dialog: Dialog | None, dest: Address,
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
                and not call.a_txn.terminated and cause not in ("cancelled",) \
                and not cause.startswith("callee-"):
            self._respond(call.a_txn, status, reason or "Call Failed", to_tag=call.a_tag,
                          extra=extra)
        elif not answered and (bye_a or cause.startswith("rtp-timeout") or cause == "media-error"):
            if not call.a_txn.terminated:
                self._respond(call.a_txn, 500, "Server Internal Error", to_tag=call.a_tag)
        call.state = CallState.ENDED
        call.a_answered.set()  # wakes a task still waiting for a delayed offer's answer
        if call.limit_timer is not None:
            call.limit_timer.cancel()
        if bye_a and answered:
            self._send_bye(call.a_dialog, call.a_source)
        for fork in call.forks:
            if fork is call.winner and fork.dialog is not None:
                if bye_b:
                    self._send_bye(fork.dialog, fork.binding_source, call.digest)
            elif fork.final == 0:
                self._cancel_fork(fork, now)
        self.calls.pop(call.key, None)
        if call.b_call_id:
            self._by_b.pop(call.b_call_id, None)
        if call.direction == "emergency" and not call.app:
            self._last_emergency[call.caller] = now  # the call-back window runs from the end
        token = self._contact_users.pop(call.key, None)
        self._contact_users.pop(call.b_call_id, None)
        if token is not None and self.emergency_lane is not None:
            self.emergency_lane.release(token)
        duration = (now - call.answered_at) if call.answered_at is not None else 0.0
        if self.guard is not None and not call.app:
            self._apply_recording(call, self.guard.released(call.key, answered=answered,
                                                            duration=duration, now=now))
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
            neg = call.a_neg if name == "a" else call.b_neg
            sess = call.media.sessions.get(name)
            out.append(LegRecord(
                role="caller" if name == "a" else "callee",
                user=call.caller if name == "a" else call.callee,
                transport=(call.a_source.transport if name == "a" else
                           call.winner.binding_source.transport if call.winner else ""),
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


def _ended_under(call: Call, exc: Exception) -> bool:
    """A media task that failed because its call ended meanwhile (a BYE or CANCEL between the
    answer and the media's start: ``CallMedia.attach`` on a closed call): a normal race, which
    leaves nothing to clean up and is not an error."""
    if call.state is CallState.ENDED and call.media.closed:
        log.debug("%s: media task stopped, the call has ended (%s)", call.key, exc)
        return True
    return False


def media_lines(offer: SessionDescription | None) -> tuple[MediaLine, ...]:
    """The offer's m-lines as the guard sees them (R-TECH-9 looks for MRCP in them); none
    for an INVITE without an offer (ours, in the 200 OK, is audio only)."""
    if offer is None:
        return ()
    return tuple(MediaLine(m.media, m.proto, tuple(m.formats)) for m in offer.media)


def stripped(offer: SessionDescription | None, indexes: set[int]) -> SessionDescription | None:
    """The offer with the m-lines the guard refuses (``Decision.strip_media``) set to port
    0: answer_offer then answers each with port 0 (RFC 3264 §6), keeping their place."""
    if not indexes or offer is None:
        return offer
    media = [replace(m, port=0) if i in indexes else m for i, m in enumerate(offer.media)]
    return replace(offer, media=media)


def _quoted(text: str) -> str:
    """Text for a quoted-string (RFC 3261 §25.1): no quotes, backslashes or line breaks."""
    return " ".join(text.replace("\\", "").replace('"', "'").split())


def multipart_mixed(boundary: str, sdp: bytes, location: LocationPayload) -> bytes:
    """An emergency INVITE's body (RFC 6442 §4.1, RFC 5621): our SDP offer, then the PIDF-LO
    with the Content-ID that the Geolocation header names."""
    return emergency_body(boundary, sdp, location)[0]


def emergency_body(boundary: str, sdp: bytes, location: LocationPayload,
                   by_value: Iterable[BodyPart] = ()) -> tuple[bytes, str]:
    """The emergency INVITE's multipart/mixed body and its Geolocation header value: our
    SDP offer, the line's recorded location (the civic address the terms require, R-EMERG-3)
    first, then the location the phone itself sent by value, if any (RFC 6442 §4.1 allows
    several; the PSAP weighs them, and the phone's may be more precise than the declared
    address, e.g. a floor or a GPS fix). A phone part whose Content-ID is ours is dropped."""
    ours = BodyPart((("Content-Type", location.content_type),
                     ("Content-ID", location.content_id)), location.body.encode())
    parts = [BodyPart((("Content-Type", SDP),), sdp), ours]
    geolocation = [location.geolocation]
    for p in by_value:
        cid = p.content_id
        if cid is None or cid == ours.content_id:
            continue
        parts.append(BodyPart(tuple((k, v) for k, v in p.headers
                                    if k.lower() in ("content-type", "content-id")), p.body))
        geolocation.append(f"<cid:{cid}>")
    return build_multipart(boundary, parts), ", ".join(geolocation)


LOCATION_TYPES = ("application/pidf+xml",)
ACCEPT = "application/sdp, multipart/mixed"


def invite_body(req: SipRequest) -> tuple[SessionDescription | None,
                                          tuple[BodyPart, ...]]:
    """The caller's SDP offer (None when the INVITE has no body: a delayed offer, RFC 3261
    §13.2.1) and the location parts it sent by value (RFC 6442 §4.1: multipart/mixed with
    the SDP and a PIDF-LO referenced by ``Geolocation: <cid:...>``). Raises SipParseError:
    400 for a broken body, 415 for a body that has neither (the caller gets Accept)."""
    if not req.body:
        return None, ()
    media_type = req.content_type or ""
    if media_type == SDP:
        sdp_bytes: bytes | None = req.body
        located: tuple[BodyPart, ...] = ()
    elif media_type == "multipart/mixed":
        parts = parse_multipart(req.headers.get("content-type") or "", req.body)
        sdps = [p for p in parts if p.media_type == SDP]
        if len(sdps) > 1:
            raise SipParseError("Bad Multipart Body: more than one SDP part")
        sdp_bytes = sdps[0].body if sdps else None
        located = tuple(p for p in parts if p.media_type in LOCATION_TYPES
                        and p.content_id is not None)
    else:
        raise SipParseError(f"Unsupported Media Type: {media_type or 'none'}", status=415)
    if sdp_bytes is None:
        return None, located
    try:
        return parse_sdp(sdp_bytes), located
    except SdpError as exc:
        raise SipParseError(f"Bad SDP: {exc}") from exc


def _dialled(ruri: str) -> str:
    """What a local caller dialled: a service URN (RFC 5031, checked, in lower case), also
    from a phone that can only send SIP URIs and escapes it into the user part
    (``sip:urn%3Aservice%3Asos@edge``); else the user part of the SIP or tel Request-URI (a
    dial string keeps its RFC 4967 phone-context). Raises ServiceUrnError or SipParseError."""
    if is_urn(ruri):
        return str(ServiceUrn.parse(ruri))
    user = SipUri.parse(ruri).user or ""
    return str(ServiceUrn.parse(user)) if is_urn(user) else user


def _external_caller(req: SipRequest) -> str:
    """The calling number the provider gave in From (``anonymous`` when withheld)."""
    try:
        user = req.from_.uri.user or ""
    except SipParseError:
        user = ""
    return user or "anonymous"


def registered_path(req: SipRequest) -> tuple[str, ...]:
    """The REGISTER's Path values (RFC 3327), first hop first; SipParseError("Bad Path: ...")
    when one is not a SIP URI in angle brackets, so that nothing is stored."""
    values = tuple(req.headers.values("path"))
    for value in values:
        try:
            hop = NameAddr.parse(value)
        except SipParseError as exc:
            raise SipParseError(f"Bad Path: {exc.reason}") from None
        if hop.uri.scheme not in ("sip", "sips"):
            raise SipParseError(f"Bad Path: {hop.uri.scheme} URI")
    return values


def path_echo(req: SipRequest) -> list[tuple[str, str]]:
    """RFC 3327 §5.3: the 200 OK of a REGISTER carries the Path values stored, when the
    phone said it supports Path."""
    supported = {t.strip().lower() for t in req.headers.values("supported")}
    return [("Path", v) for v in req.headers.values("path")] if "path" in supported else []


def _path_hop(b: Binding) -> Address | None:
    """The first Path hop of a binding (RFC 3327 §5.3), None when it has no usable one."""
    try:
        uri = NameAddr.parse(b.path[0]).uri
    except (SipParseError, IndexError):
        return None
    transport = (uri.params.get("transport") or "udp").lower()
    port = uri.port or (5061 if uri.scheme == "sips" else 5060)
    src_transport, host, src_port, conn_id = b.source
    if transport != "udp" and (transport, uri.host_no_brackets, port) == (
            src_transport, host, src_port):
        return Address(transport, host, port, conn_id)  # the proxy's connection
    return Address(transport, uri.host_no_brackets, port)


def match_dialog(a_call: Call | None, b_call: Call | None,
                 req: SipRequest) -> tuple[Call, str] | None:
    """The live call and leg a request belongs to by RFC 3261 §12.2.2: its Call-ID found
    the call (``a_call`` by the caller's Call-ID, ``b_call`` by leg b's), and its From tag
    is the peer's tag and its To tag ours on that leg. A request with made-up tags, or one
    for a call that has ended, belongs to none (481)."""
    try:
        from_tag, to_tag = req.from_.tag, req.to.tag
    except SipParseError:
        return None
    if not from_tag or not to_tag:
        return None
    if a_call is not None and a_call.state is not CallState.ENDED \
            and to_tag == a_call.a_tag and from_tag == a_call.a_invite.from_.tag:
        return a_call, "a"
    if b_call is not None and b_call.state is not CallState.ENDED and to_tag == b_call.b_tag:
        forks = [b_call.winner] if b_call.winner is not None else b_call.forks
        if any(f.dialog is not None and f.dialog.remote_tag == from_tag for f in forks):
            return b_call, "b"
    return None


def dialog_peer(call: Call, leg: str) -> tuple[set[str], str]:
    """Who may send requests in that leg's dialog: the peer's addresses (the caller's source;
    the callee's device, as forked to and as it answered), and the local user it is, to
    authenticate as from elsewhere ("" for the trunk and the emergency gateway)."""
    if leg == "a":
        user = call.caller if call.direction in ("local", "outbound", "emergency") else ""
        return {call.a_source.host}, user
    forks = [call.winner] if call.winner is not None else call.forks
    hosts = {f.binding_source.host for f in forks}
    for f in forks:
        if f.dialog is not None:  # the Contact it answered with (a device may send from it)
            try:
                hosts.add(SipUri.parse(f.dialog.remote_target).host_no_brackets)
            except SipParseError:
                pass
    user = call.callee if call.direction in ("local", "inbound") and not call.app else ""
    return hosts, user


def same_host(host: str, hosts: set[str]) -> bool:
    """``host`` is one of ``hosts``, IP addresses compared as addresses (IPv6 spellings).
    Ports are not compared: a TCP phone reconnects from a new one, a NAT may rebind."""
    def norm(h: str) -> str:
        try:
            return str(ipaddress.ip_address(h.strip("[]")))
        except ValueError:
            return h.strip("[]").lower()
    return norm(host) in {norm(h) for h in hosts}


def binding_destination(b: Binding) -> Address:
    """Where requests for a registered device go.

    A binding registered through a proxy that added Path (RFC 3327): its first hop, the
    INVITE carrying the Path values as Route headers.

    Over UDP, the registered Contact (RFC 3261 §10: it may name another host or port than
    the REGISTER came from, as third-party registrations do). Over TCP, TLS and WebSocket,
    the connection the device registered on: a browser's contact host is a placeholder
    (RFC 7118 §5) and a phone behind NAT keeps that connection open for us.
    """
    hop = _path_hop(b) if b.path else None
    if hop is not None:
        return hop
    transport, host, port, conn_id = b.source
    if transport == "udp":
        try:
            uri = SipUri.parse(b.contact)
        except SipParseError:
            return Address(transport, host, port, conn_id)
        wanted = (uri.params.get("transport") or "udp").lower()
        if wanted == "udp":
            default = 5061 if uri.scheme == "sips" else 5060
            return Address("udp", uri.host_no_brackets, uri.port or default)
    return Address(transport, host, port, conn_id)
