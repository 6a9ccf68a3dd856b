"""Requests inside a call's dialogs: matched on Call-ID and both tags (RFC 3261 §12.2.2,
``match_dialog``) and checked against the dialog's peer (``dialog_peer``; docs/SECURITY.md);
BYE and re-INVITE (hold, codec change) on either leg."""

from __future__ import annotations

import ipaddress
import logging

from softphone.codecs.offer_answer import (
    Negotiated,
    NoCommonCodec,
    OfferAnswerError,
    answer_offer,
)
from softphone.codecs.sdp import SdpError, parse_sdp
from softphone.edge.call import Call, CallState
from softphone.edge.calls import CallsRoom
from softphone.edge.room import quoted
from softphone.media.webrtc import WebRtcError
from softphone.sip.core import Address
from softphone.sip.errors import SipParseError
from softphone.sip.message import SipRequest
from softphone.sip.transaction import ServerTransaction
from softphone.sip.uri import SipUri

log = logging.getLogger(__name__)



class DialogsRoom(CallsRoom):
    """In-dialog requests: matched, checked, BYE and re-INVITE."""

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
        current = call.leg(leg).neg
        pair = call.media.pairs.get(leg)
        if current is None or pair is None:
            self._respond(txn, 491, "Request Pending")
            return
        tag = call.leg(leg).tag
        if not req.body:
            self._respond(txn, 200, "OK", to_tag=tag, body=current.sdp, contact=True)
            return
        if leg in call.media.endpoints:  # a browser: aiortc answers its new offer
            self._spawn(self._browser_reinvite(call, leg, req, txn), call)
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
        self._reinvited(call, leg, txn, neg)

    def _reinvited(self, call: Call, leg: str, txn: ServerTransaction,
                   neg: Negotiated) -> None:
        """The new offer answered: the leg's outcome kept, our 200, its media updated."""
        call.leg(leg).renegotiated(neg)
        self._respond(txn, 200, "OK", to_tag=call.leg(leg).tag, body=neg.sdp, contact=True)
        if leg in call.media.sessions:
            call.media.update(leg, neg)

    async def _browser_reinvite(self, call: Call, leg: str, req: SipRequest,
                                txn: ServerTransaction) -> None:
        try:
            neg = await self.browsers.renegotiate(call.media, leg, req.body)
        except (WebRtcError, OfferAnswerError, SdpError) as exc:
            self._respond(txn, 488, "Not Acceptable Here",
                          extra=[("Warning", f'399 {self.domain} "{quoted(str(exc))}"')])
            self.flush()
            return
        if call.state is CallState.ENDED:
            return
        self._reinvited(call, leg, txn, neg)
        self.flush()


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
            and to_tag == a_call.a.tag and from_tag == a_call.a.invite.from_.tag:
        return a_call, "a"
    if b_call is not None and b_call.state is not CallState.ENDED and to_tag == b_call.b.tag:
        if any(f.dialog is not None and f.dialog.remote_tag == from_tag
               for f in b_call.b.rung()):
            return b_call, "b"
    return None


def dialog_peer(call: Call, leg: str) -> tuple[set[str], str]:
    """Who may send requests in that leg's dialog: the peer's addresses (the caller's source;
    the callee's device, as forked to and as it answered), and the local user it is, to
    authenticate as from elsewhere ("" for the trunk and the emergency gateway)."""
    if leg == "a":
        user = call.caller if call.direction in ("local", "outbound", "emergency") else ""
        return {call.a.source.host}, user
    forks = call.b.rung()
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
