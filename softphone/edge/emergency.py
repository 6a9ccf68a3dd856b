"""Emergency calls (R-EMERG, RFC 6442, RFC 6881): the guard's decision, the route to the
emergency gateway with the caller's PIDF-LO (multipart/mixed, ``Geolocation``), the gateway's
addresses, the PSAP call-back window, and for a refused or failed call the spoken notice as
early media, then the refusal."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections.abc import Callable, Iterable

from softphone.codecs.offer_answer import (
    Negotiated,
    OfferAnswerError,
    answer_offer,
)
from softphone.codecs.sdp import SessionDescription
from softphone.edge.browser import is_browser_offer
from softphone.edge.call import Call, CallState
from softphone.edge.calls import CallsRoom
from softphone.edge.room import NOTICE_GUARD_S, SDP, quoted
from softphone.edge.service_urn import (
    dial_string_uri,
    is_urn,
    loose_route,
)
from softphone.media.bridge import FrameSource
from softphone.media.call import CallMedia
from softphone.media.ports import PortsExhausted
from softphone.policy.decision import (
    Action,
    Decision,
    LocationPayload,
)
from softphone.sip.core import Address
from softphone.sip.dialog import Dialog
from softphone.sip.errors import SipParseError
from softphone.sip.message import SipRequest
from softphone.sip.multipart import BodyPart, build_multipart
from softphone.sip.transaction import ServerTransaction
from softphone.sip.uri import NameAddr, SipUri

log = logging.getLogger(__name__)



class EmergencyRoom(CallsRoom):
    """Emergency routing, location conveyance, the notice then refusal."""

    def _on_emergency(self, req: SipRequest, txn: ServerTransaction, source: Address,
                      caller: str, dialed: str, offer: SessionDescription | None, now: float,
                      by_value: tuple[BodyPart, ...] = ()) -> None:
        assert self.guard is not None
        # a dialled service URN is decided as the caller's country's code for that service,
        # "0112" (outside-line prefix) and "+112" as 112
        code = self.guard.emergency_code(caller, dialed) or dialed
        d = self.guard.admit_decision(req.call_id, caller, code, inbound_local=False)
        if d is not None and d.action is Action.ROUTE_EMERGENCY:
            self._route_emergency(req, txn, source, caller, dialed, offer, d, by_value)
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
                         caller: str, dialed: str, offer: SessionDescription | None,
                         d: Decision, by_value: tuple[BodyPart, ...] = ()) -> None:
        route = self.emergency_route or d.route or ""
        dest = self._emergency_destination(route) if route else None
        if dest is None or d.location is None:
            # nothing to send it to: say so plainly rather than ring nowhere
            log.error("emergency call %s from %s: no usable route (%r)", req.call_id, caller,
                      route)
            self._release_guard(req.call_id)
            self._respond(txn, 503, "Service Unavailable: no emergency route",
                          extra=[("Warning", f'399 {self.domain} "The emergency route is '
                                  'not reachable. Call from a mobile phone or a landline."')])
            return
        self._anchor(req, txn, offer, legs=("a", "b"), release=True, user=caller,
                     emergency=True, then=functools.partial(
                         self._place_emergency, req, txn, source, caller, dialed, d,
                         route, dest, by_value))

    def _place_emergency(self, req: SipRequest, txn: ServerTransaction, source: Address,
                         caller: str, dialed: str, d: Decision, route: str,
                         dest: Address, by_value: tuple[BodyPart, ...], media: CallMedia,
                         a_neg: Negotiated | None) -> None:
        """The emergency call, its media anchored: the INVITE to the emergency route, with
        the location."""
        assert d.location is not None  # checked by _route_emergency
        call = self._open_call(req, txn, source, caller, dialed, media, a_neg,
                               direction="emergency", warnings=self._warning_headers([d]))
        key = call.key
        self.stats["emergency_routed"] += 1
        self.callbacks.mark(caller)
        log.info("emergency call %s from %s to %s (%s) routed to %s", key, caller, dialed,
                 d.service_urn or "", route)
        sdp = self._prepare_b(call)
        if self.emergency_lane is not None:
            token = self.emergency_lane.new_token()
            self._contact_users[key] = self._contact_users[call.b.call_id] = token
        boundary = f"loc-{call.b.tag}"
        body, geolocation = emergency_body(boundary, sdp, d.location, by_value)
        shown = d.present_as or caller
        ruri, to_value, routes = self._emergency_addresses(route, dialed, d)
        self._send_b_invite(
            call, ruri, dest, f"<sip:{shown}@{self.domain}>;tag={call.b.tag}",
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
        warning = [("Warning", f'399 {self.domain} "{quoted(text)}"')]
        prompt = self._prompt(announcement) if offer is not None else None
        if prompt is None or offer is None:
            self._respond(txn, status, reason, extra=warning)
            return

        def refuse(_why: str = "") -> None:
            self._respond(txn, status, reason, extra=warning)

        def play(media: CallMedia, a_neg: Negotiated | None) -> None:
            assert prompt is not None
            self._notice_call(req, txn, source, caller, dialed, media, a_neg, prompt,
                              announcement, status, reason, warning)

        self._anchor_quietly(req, txn, offer, user=caller, source=source.host, then=play,
                             refused=refuse)

    def _notice_call(self, req: SipRequest, txn: ServerTransaction, source: Address,
                     caller: str, dialed: str, media: CallMedia, a_neg: Negotiated | None,
                     prompt: tuple[FrameSource, float], announcement: str, status: int,
                     reason: str, warning: list[tuple[str, str]]) -> None:
        call = self._open_call(req, txn, source, caller, dialed, media, a_neg,
                               direction="emergency", app="notice")
        self._notice_then_final(call, prompt, announcement, status, reason, warning)

    def _notice_then_final(self, call: Call, prompt: tuple[FrameSource, float],
                           announcement: str, status: int, reason: str,
                           warning: list[tuple[str, str]]) -> None:
        """Play ``prompt`` to the caller as early media (leg "a" only), then answer it with
        the final ``status``; a CANCEL meanwhile ends it with 487 instead."""
        call.state = CallState.EARLY
        if not call.early_sdp_sent:
            call.early_sdp_sent = True
            self._respond(call.a.txn, 183, "Session Progress", to_tag=call.a.tag,
                          body=self._a_sdp(call), contact=True)
        source_, seconds = prompt

        def finish() -> None:
            if call.state is CallState.EARLY:
                self._end(call, f"notice:{announcement}", status=status, reason=reason,
                          extra=warning)
                self.flush()

        async def play() -> None:
            if call.a.neg is None:  # nothing to play on before the ACK's answer
                await asyncio.sleep(NOTICE_GUARD_S)
                finish()
                return
            await call.media.attach("a", call.a.neg)
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

    def _anchor_quietly(self, req: SipRequest, txn: ServerTransaction,
                        offer: SessionDescription, *, user: str, source: str,
                        then: Callable[[CallMedia, Negotiated | None], None],
                        refused: Callable[[str], None]) -> None:
        """Leg "a" media for a notice, to ``then``; ``refused`` when there is none (no port,
        no codec): the refusal goes on alone. A browser's offer is answered by aiortc. Not an
        emergency call's share: a refused caller's notices count against ``user``."""
        ms = self.media_settings
        media = self._new_media(req.call_id, user=user)
        media.allow_sources("a", (source,))
        try:
            pair = media.reserve("a")
            if is_browser_offer(offer):
                self.browsers.answer(media, txn, offer, release=False, then=then,
                                     refused=refused)
                return
            neg = answer_offer(offer, address=ms.host, port=pair.rtp, order=self.codecs)
        except (PortsExhausted, OfferAnswerError) as exc:
            log.warning("notice not played on %s: %s", req.call_id, exc)
            media.close()
            refused(str(exc))
            return
        then(media, neg)

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
            self._respond(call.a.txn, status, reason, to_tag=call.a.tag, extra=warning)
            self._end(call, f"callee-{status}", status=status)
            return
        self._notice_then_final(call, prompt, "emergency-unavailable", status, reason, warning)


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
