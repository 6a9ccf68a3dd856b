"""What the edge knows of one call: its state, the caller's leg "a", the INVITEs of leg "b" to
each device rung (``Fork``), and what the policy wants done with it (notices, recordings, time
limit). The rooms of the B2BUA (``softphone.edge.calls`` and the others) act on it."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field

from softphone.codecs.offer_answer import (
    Negotiated,
)
from softphone.codecs.sdp import SessionDescription
from softphone.edge.calllog import CallRecord
from softphone.edge.legs import Leg
from softphone.edge.trunk import Cancellable
from softphone.media.call import CallMedia
from softphone.sip.auth import DigestClient
from softphone.sip.core import Address
from softphone.sip.dialog import Dialog
from softphone.sip.message import SipRequest
from softphone.sip.transaction import ClientTransaction, ServerTransaction


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
    # a browser rung (``softphone.edge.browser``): aiortc's offer it got, on this media leg
    offer: SessionDescription | None = None
    leg: str = "b"


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
    limit_timer: Cancellable | None = None  # ends the call at max_duration_s (trial)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # for the caller, on 18x/200
    # RFC 3261 §13.2.1 delayed offer: the caller's INVITE had no SDP, our offer goes in the 200
    # OK on leg "a" and its answer comes in the ACK
    a_offer: SessionDescription | None = None
    a_answered: asyncio.Event = field(default_factory=asyncio.Event)  # set at that ACK (or end)
    # the parties the edge itself plays in this call (app legs: echo 600, tone 601), by name;
    # the SIP legs are the fields above (a_*, b_*, forks)
    legs: dict[str, Leg] = field(default_factory=dict)
    ringing_browsers: bool = False  # aiortc's offer for the callee's browsers is being made

