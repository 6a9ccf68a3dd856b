"""The browser leg: a SIP leg over WebSocket (the web phone, RFC 7118) whose media is WebRTC.

Its signalling is the SIP leg's (dialogs, forks, BYE, CANCEL, INFO, the guard), so what differs
is only where offer/answer happens: not in ``softphone.codecs.offer_answer`` but in aiortc
(``softphone.media.webrtc``: ICE, DTLS-SRTP, OPUS or G.711), on a port of the call's media
(``CallMedia.webrtc``). The calls room hands this object the three moments that need it:

- a caller's INVITE with a DTLS-SRTP offer (``answer``): aiortc's answer is made (a few ms:
  host candidate only, on the leg's reserved port) before the call goes on; a CANCEL meanwhile
  is answered 487 and the port given back (``cancel``);
- a call to a user with a browser registered (``ring``): the browser's INVITE carries
  aiortc's offer, from its own port when desk phones of the same user ring too (leg "w"),
  moved to leg "b" if the browser answers, given back if a desk phone does (``won``);
- a browser's re-INVITE (hold, resume: ``renegotiate``).

A binding is a browser's when it registered over WebSocket (``Binding.device_class``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from softphone.codecs.offer_answer import Negotiated, OfferAnswerError, outcome_of
from softphone.codecs.sdp import SdpError, SessionDescription, parse_sdp
from softphone.edge.bindings import Binding
from softphone.edge.call import CallState
from softphone.edge.registrar import binding_destination
from softphone.edge.room import quoted
from softphone.media.call import CallMedia
from softphone.media.webrtc import WebRtcError
from softphone.sip.transaction import ServerTransaction

if TYPE_CHECKING:
    from softphone.edge.call import Call
    from softphone.edge.calls import CallsRoom
    from softphone.edge.sip_leg import Fork

__all__ = ["BrowserLegs", "is_browser", "is_browser_offer"]

log = logging.getLogger(__name__)

WEB_FORK_LEG = "w"  # the browser's port while desk phones of the same user ring too


def is_browser(binding: Binding) -> bool:
    return binding.device_class == "webrtc"


def is_browser_offer(offer: SessionDescription) -> bool:
    """An offer with DTLS-SRTP audio (``UDP/TLS/RTP/SAVPF``): a browser's, for aiortc."""
    return any(m.media == "audio" and m.port and m.proto.upper() == "UDP/TLS/RTP/SAVPF"
               for m in offer.media)


@dataclass
class _Pending:
    txn: ServerTransaction
    media: CallMedia
    release: bool


class BrowserLegs:
    """Offer/answer of the browser legs of one edge's calls (see the module docstring)."""

    def __init__(self, room: CallsRoom) -> None:
        self.room = room
        self._pending: dict[str, _Pending] = {}  # Call-ID -> the INVITE being answered

    def _codecs(self) -> list[str]:
        return [c.name for c in self.room.codecs]

    # ------------------------------------------------------------------ a browser calls

    def answer(self, media: CallMedia, txn: ServerTransaction, offer: SessionDescription,
               *, release: bool,
               then: Callable[[CallMedia, Negotiated | None], None],
               refused: Callable[[str], None] | None = None) -> None:
        """Answer the browser's offer with aiortc on leg "a" (reserved), then ``then`` as a
        plain SIP caller's would; when it cannot be used, ``refused(reason)`` or else 488
        with the reason."""
        room = self.room
        call_id = txn.request.call_id
        endpoint = media.webrtc("a", self._codecs())
        self._pending[call_id] = _Pending(txn, media, release)

        async def negotiate() -> None:
            try:
                sdp = await endpoint.answer(offer.to_bytes())
                neg = outcome_of(parse_sdp(sdp), offer, we_answered=True, agent=room.domain)
            except Exception as exc:
                if self._pending.pop(call_id, None) is None:
                    return  # cancelled meanwhile: answered, closed, released already
                media.close()
                if release:
                    room._release_guard(call_id)
                if not isinstance(exc, WebRtcError | OfferAnswerError | SdpError):
                    log.exception("%s: the browser's offer could not be answered", call_id)
                if refused is not None:
                    refused(str(exc))
                else:
                    room._respond(txn, 488, "Not Acceptable Here", extra=[
                        ("Warning", f'399 {room.domain} "{quoted(str(exc))}"')])
                room.flush()
                return
            if self._pending.pop(call_id, None) is None:
                return
            then(media, neg)
            room.flush()

        room._spawn(negotiate(), None)

    def cancel(self, call_id: str) -> bool:
        """A CANCEL for an INVITE still being answered: 487, port and channel given back."""
        pending = self._pending.pop(call_id, None)
        if pending is None:
            return False
        pending.media.close()
        if pending.release:
            self.room._release_guard(call_id)
        self.room._respond(pending.txn, 487, "Request Terminated")
        return True

    # ------------------------------------------------------------------ a browser is called

    async def offer(self, call: Call, leg: str) -> bytes:
        """aiortc's offer for the browsers rung on ``leg`` ("b", or "w" beside desk phones)."""
        return await call.media.webrtc(leg, self._codecs()).offer()

    async def ring(self, call: Call, web: list[Binding], from_value: str, leg: str) -> None:
        """INVITE the callee's browsers with aiortc's offer on ``leg`` (made first: a few ms);
        when it cannot be made, the call fails as if they had (503 when nobody else rings)."""
        room = self.room
        try:
            body = await self.offer(call, leg)
        except Exception as exc:
            call.b.ringing_browsers = False
            if call.state is CallState.ENDED:
                return
            log.warning("call %s: no offer for the callee's browsers: %s", call.key, exc)
            if not call.b.forks:
                room._end(call, "media-error", status=503,
                          reason="Service Unavailable: the browser leg could not be made",
                          extra=[("Retry-After", str(room.retry_after))])
            elif all(f.final != 0 for f in call.b.forks):
                last = call.b.forks[-1]
                room._on_fork_failed(call, last, last.final, "Call Failed")
            room.flush()
            return
        call.b.ringing_browsers = False
        if call.state not in (CallState.ROUTING, CallState.EARLY):
            return
        offer = parse_sdp(body)
        for b in web:
            room._send_b_invite(call, b.contact, binding_destination(b), from_value,
                                f"<sip:{call.callee}@{room.domain}>", body,
                                extra=[("Route", hop) for hop in b.path], offer=offer, leg=leg)
        room.flush()

    def negotiated(self, fork: Fork, answer: bytes) -> Negotiated | None:
        """What the browser's answer agreed (None when unusable: the caller gets 502)."""
        if fork.offer is None:
            return None
        try:
            return outcome_of(fork.offer, parse_sdp(answer), we_answered=False,
                              agent=self.room.domain)
        except (SdpError, OfferAnswerError) as exc:
            log.warning("bad SDP answer from a browser: %s", exc)
            return None

    @staticmethod
    def won(call: Call, fork: Fork) -> None:
        """The answering fork's port is leg "b"'s from now on; any other browser port goes."""
        if fork.leg != "b":
            call.media.move(fork.leg, "b")
        elif WEB_FORK_LEG in call.media.pairs:
            call.media.drop(WEB_FORK_LEG)

    # ------------------------------------------------------------------ re-INVITE

    async def renegotiate(self, media: CallMedia, leg: str, offer: bytes) -> Negotiated:
        """A browser's new offer (hold, resume) answered by aiortc on the same connection."""
        endpoint = media.endpoints[leg]
        sdp = await endpoint.renegotiate(offer)
        return outcome_of(parse_sdp(sdp), parse_sdp(offer), we_answered=True,
                          agent=self.room.domain)

