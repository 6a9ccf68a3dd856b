"""The SIP legs of a call, behind the ``Leg`` interface of ``softphone.edge.legs``.

- ``CallerLeg`` (leg "a"): the party whose INVITE reached the edge; the edge is its UAS. It
  holds that INVITE and its server transaction, where it came from, our tag, the offer/answer
  outcome (or our own offer when the INVITE had none: RFC 3261 §13.2.1, answered in the ACK)
  and, once answered, the dialog.
- ``CalleeLeg`` (leg "b"): the party the edge calls; the edge is its UAC with its own Call-ID,
  tag and SDP offer, and one INVITE per device rung (``Fork``: desk phones, browsers, the trunk
  or the emergency gateway), the first 2xx the ``winner``.

A desk phone, the trunk, the emergency gateway and a browser (SIP over WebSocket) are all SIP
legs: what differs is the media endpoint the call's ``CallMedia`` gives them (an
``RtpSession``, or aiortc's ``WebRtcSession`` for a browser). The legs act on the wire through
``SipWire`` (the calls room: BYE, CANCEL, the clock); what a call does when one of its legs
ends (the other leg, the guard, the call log) is the call's, in ``softphone.edge.calls``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from softphone.codecs.offer_answer import Negotiated
from softphone.codecs.sdp import SessionDescription
from softphone.edge.legs import Leg, LegState
from softphone.media.call import CallMedia
from softphone.sip.auth import DigestClient
from softphone.sip.core import Address
from softphone.sip.dialog import Dialog, DialogError, DialogState
from softphone.sip.message import SipRequest
from softphone.sip.transaction import ClientTransaction, ServerTransaction

INFO_DIGIT_MS = 160  # a key pressed as SIP INFO, played as RFC 4733 for this long
DTMF_RELAY = "application/dtmf-relay"
HELD_DIRECTIONS = ("recvonly", "inactive")  # our view of a party that put the call on hold


class SipWire(Protocol):
    """What a SIP leg needs of the edge to act on the wire."""

    clock: Callable[[], float]

    def send_in_dialog(self, request: SipRequest, dest: Address) -> None: ...

    def send_bye(self, dialog: Dialog | None, dest: Address,
                 digest: DigestClient | None = None) -> None: ...

    def cancel_fork(self, fork: Fork, now: float) -> None: ...


@dataclass
class Fork:
    """One INVITE of leg "b" to one device."""

    binding_source: Address
    request: SipRequest
    txn: ClientTransaction
    dialog: Dialog | None = None
    final: int = 0
    auth_tries: int = 0
    # a browser rung (``softphone.edge.browser``): aiortc's offer it got, on this media leg
    offer: SessionDescription | None = None
    leg: str = "b"


class SipLeg:
    """What both SIP legs share: the ``Leg`` state, hold as the party's own re-INVITE said,
    INFO in its dialog, DTMF out: RFC 4733 on the leg's media when its peer negotiated
    telephone-event, SIP INFO ``application/dtmf-relay`` to a browser (aiortc sends no
    telephone-event; JsSIP reads the INFO as the remote party's key)."""

    name = ""

    def __init__(self, wire: SipWire, media: CallMedia) -> None:
        self.wire = wire
        self.media = media
        self.state = LegState.SETUP
        self.on_dtmf: Callable[[Leg, str], None] | None = None
        self.neg: Negotiated | None = None
        self.tag = ""

    def answer(self) -> None:
        if self.state is LegState.SETUP:
            self.state = LegState.ANSWERED

    def hold(self, on: bool) -> None:
        """The party's re-INVITE put the call on hold (``on``) or took it off. The edge
        relays it; it never holds a SIP party itself."""
        if self.state is not LegState.ENDED and self.state is not LegState.SETUP:
            self.state = LegState.HELD if on else LegState.ANSWERED

    def renegotiated(self, neg: Negotiated) -> None:
        """A re-INVITE's offer answered: the new outcome, and the hold it may say."""
        self.neg = neg
        self.hold(neg.direction in HELD_DIRECTIONS)

    def hang_up(self, cause: str) -> None:
        """The edge ends this party's part in the call."""
        raise NotImplementedError

    def left(self) -> None:
        """The party ended its part itself, or never had one: no BYE."""
        raise NotImplementedError

    def peer(self) -> tuple[Dialog, Address] | None:
        """The party's dialog and where its requests go; None before it has one."""
        raise NotImplementedError

    def transport(self) -> str:
        """How the party's signalling reaches it ("" not known yet)."""
        raise NotImplementedError

    @property
    def kind(self) -> str:
        """"browser" for a party over SIP over WebSocket, else "sip"."""
        return "browser" if self.transport() in ("ws", "wss") else "sip"

    def info(self, content_type: str, body: bytes) -> bool:
        """A SIP INFO in the party's dialog (its answer is not awaited); False when there is
        no dialog to send it in."""
        peer = self.peer()
        if peer is None or peer[0].state is DialogState.TERMINATED:
            return False
        try:
            request = peer[0].create_request("INFO", body=body, content_type=content_type)
        except DialogError:
            return False
        self.wire.send_in_dialog(request, peer[1])
        return True

    def send_dtmf(self, digit: str) -> None:
        if self.kind == "browser":
            self.info(DTMF_RELAY, f"Signal={digit}\r\nDuration={INFO_DIGIT_MS}\r\n".encode())
            return
        session = self.media.sessions.get(self.name)
        if session is not None and session.dtmf_payload_type is not None \
                and not session.closed:
            session.send_digit(digit, INFO_DIGIT_MS)


class CallerLeg(SipLeg):
    """Leg "a": the caller, whose INVITE the edge answers."""

    name = "a"

    def __init__(self, wire: SipWire, media: CallMedia, invite: SipRequest,
                 txn: ServerTransaction, source: Address, tag: str,
                 neg: Negotiated | None, offer: SessionDescription | None) -> None:
        super().__init__(wire, media)
        self.invite = invite
        self.txn = txn
        self.source = source
        self.tag = tag
        self.neg = neg          # None until the caller's ACK answers our offer (delayed offer)
        self.offer = offer      # our offer in the 200 OK when the INVITE had none
        self.dialog: Dialog | None = None
        self.answered = asyncio.Event()  # set at the ACK that answers our offer (or the end)

    def peer(self) -> tuple[Dialog, Address] | None:
        return (self.dialog, self.source) if self.dialog is not None else None

    def transport(self) -> str:
        return self.source.transport

    def hang_up(self, cause: str) -> None:
        """BYE in the caller's dialog (nothing when it is not established or already over)."""
        if self.state is not LegState.ENDED:
            self.left()
            self.wire.send_bye(self.dialog, self.source)

    def left(self) -> None:
        self.state = LegState.ENDED
        self.answered.set()  # wakes a task still waiting for a delayed offer's answer

    def __repr__(self) -> str:
        return f"CallerLeg({self.source.transport}:{self.source.host}, {self.state.value})"


class CalleeLeg(SipLeg):
    """Leg "b": the edge's INVITE to every device of the callee (or the trunk, or the
    emergency gateway), the first to answer the winner."""

    name = "b"

    def __init__(self, wire: SipWire, media: CallMedia,
                 digest: DigestClient | None = None) -> None:
        super().__init__(wire, media)
        self.call_id = ""
        self.offer: SessionDescription | None = None
        self.forks: list[Fork] = []
        self.winner: Fork | None = None
        self.ringing_browsers = False  # aiortc's offer for the callee's browsers being made
        self.digest = digest           # outbound: the caller's own upstream credentials

    def left(self) -> None:
        """It hung up (or failed): nothing to BYE, but what still rings is cancelled."""
        if self.state is not LegState.ENDED:
            self.state = LegState.ENDED
            self.stop_ringing()

    def peer(self) -> tuple[Dialog, Address] | None:
        w = self.winner
        return (w.dialog, w.binding_source) if w is not None and w.dialog is not None else None

    def transport(self) -> str:
        return self.winner.binding_source.transport if self.winner is not None else ""

    def rung(self) -> list[Fork]:
        """The devices this leg is with: the winner once one answered, else every one rung."""
        return [self.winner] if self.winner is not None else self.forks

    def stop_ringing(self) -> None:
        """CANCEL every INVITE still without a final answer (the winner excepted)."""
        now = self.wire.clock()
        for fork in self.forks:
            if not (fork is self.winner and fork.dialog is not None) and fork.final == 0:
                self.wire.cancel_fork(fork, now)

    def hang_up(self, cause: str) -> None:
        """BYE the device that answered (as the caller's account toward a provider), CANCEL
        the ones still ringing."""
        if self.state is LegState.ENDED:
            return
        peer = self.peer()
        if peer is not None:
            self.wire.send_bye(*peer, self.digest)
        self.left()

    def __repr__(self) -> str:
        return f"CalleeLeg({len(self.forks)} forks, {self.state.value})"
