"""Who a new INVITE reaches: the edge's own numbers (echo 600, tone 601), a local user's
devices, another user's DID, the trunk (outbound, and inbound by DID), a PSAP call-back from the
emergency gateway; emergency codes are handed to ``softphone.edge.emergency`` before anything
else. The guard decides every call before it is placed (``admit_decisions``)."""

from __future__ import annotations

import functools
import logging
from dataclasses import replace

from softphone.codecs.offer_answer import Negotiated
from softphone.codecs.sdp import SdpError, SessionDescription, parse_sdp
from softphone.edge.authentication import AuthenticationRoom
from softphone.edge.bindings import (
    Binding,
)
from softphone.edge.emergency import EmergencyRoom
from softphone.edge.legs import app_leg
from softphone.edge.room import SDP
from softphone.edge.service_urn import (
    ServiceUrnError,
    dialled,
    is_urn,
)
from softphone.edge.trunk import TrunkError, is_external_number
from softphone.media.call import CallMedia
from softphone.policy.decision import (
    Decision,
)
from softphone.policy.facts import MediaLine
from softphone.sip.auth import DigestClient
from softphone.sip.core import Address
from softphone.sip.errors import SipParseError
from softphone.sip.message import SipRequest
from softphone.sip.multipart import BodyPart, parse_multipart
from softphone.sip.transaction import ServerTransaction

log = logging.getLogger(__name__)



class RoutingRoom(EmergencyRoom, AuthenticationRoom):
    """A new INVITE: decided by the guard, then routed."""

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
            target = dialled(req.uri)
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
            psap_callback = self.callbacks.due(target)
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
                req.call_id, caller, target, inbound_local=direction == "local",
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
                self._release_guard(req.call_id)
                self._respond(txn, 480, "Temporarily Unavailable")
                return
        if is_app and self._app_calls_full(txn, caller):
            return
        self._anchor(req, txn, offer, legs=("a",) if is_app else ("a", "b"),
                     release=not is_app, user=target if direction == "inbound" else caller,
                     then=functools.partial(self._place, req, txn, source, caller, target,
                                            direction, digest, allowed, bindings, is_app))

    def _place(self, req: SipRequest, txn: ServerTransaction, source: Address, caller: str,
               target: str, direction: str, digest: DigestClient | None,
               allowed: list[Decision], bindings: list[Binding], is_app: bool,
               media: CallMedia, a_neg: Negotiated | None) -> None:
        """The call, its media anchored: the app answers, or leg b is placed."""
        call = self._open_call(
            req, txn, source, caller, target, media, a_neg, direction=direction, digest=digest,
            warnings=self._warning_headers(d for d in allowed if d.call_id is not None
                                           and d.call_id.endswith("/caller")),
            billable=any(d.billable for d in allowed),
            policy=(w.rule_id for d in allowed for w in d.warnings))
        if is_app:
            call.app = "echo" if target == self.echo_ext else "tone"
            call.apps["b"] = app_leg(call.app, tone_hz=self.media_settings.tone_hz,
                                     rate=self.media_settings.bridge_rate)
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

    def _presented(self, caller: str, from_trunk: bool) -> str | None:
        """The caller ID the other end will see: a local user's own number (its DID) when it
        has one; None lets the guard take the user's first number, or its name."""
        if from_trunk or self.trunk is None:
            return None
        account = self.trunk.account_for(caller)
        return account.did if account is not None and account.did else None


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



def _external_caller(req: SipRequest) -> str:
    """The calling number the provider gave in From (``anonymous`` when withheld)."""
    try:
        user = req.from_.uri.user or ""
    except SipParseError:
        user = ""
    return user or "anonymous"
