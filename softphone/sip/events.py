"""Events the SIP core hands to its transaction user (h11 style: small immutable classes).

The UA/B2BUA drains them with ``SipCore.next_event()`` after every ``receive``,
``handle_timer`` or ``send_*`` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from softphone.sip.message import SipRequest, SipResponse

if TYPE_CHECKING:
    from softphone.sip.transaction import (
        Address,
        ClientTransaction,
        ServerTransaction,
        Transaction,
    )


@dataclass(frozen=True, slots=True, eq=False)
class RequestReceived:
    """A new request (never a retransmission, an ACK or a CANCEL): answer it on ``transaction``."""

    request: SipRequest
    transaction: ServerTransaction
    source: Address


@dataclass(frozen=True, slots=True, eq=False)
class ResponseReceived:
    """A response for one of our client transactions (retransmissions are absorbed)."""

    response: SipResponse
    transaction: ClientTransaction


@dataclass(frozen=True, slots=True, eq=False)
class AckReceived:
    """An ACK for a 2xx: it travels outside the INVITE transaction (§13.3.1.4, §17.1.1.3).

    ``transaction`` is the INVITE server transaction whose 2xx it acknowledges when the core
    still knows it (then the 2xx retransmissions have stopped), else None (a late ACK).
    """

    request: SipRequest
    source: Address
    transaction: ServerTransaction | None = None


@dataclass(frozen=True, slots=True, eq=False)
class CancelReceived:
    """A CANCEL matched a pending INVITE; the core already answered the CANCEL with 200.

    The TU now answers the INVITE with 487 Request Terminated (§9.2).
    """

    request: SipRequest
    invite_transaction: ServerTransaction


@dataclass(frozen=True, slots=True, eq=False)
class TransactionTimeout:
    """Timer B, F or H fired (``timer`` names it): the TU treats it as a 408 / end of dialog.

    On an INVITE client transaction that was cancelled, timer B is rearmed when the CANCEL
    is sent (§9.1: give up 64*T1 later if no final response comes).
    """

    transaction: Transaction
    timer: str


@dataclass(frozen=True, slots=True, eq=False)
class AckNotReceived:
    """A 2xx to an INVITE was retransmitted for 64*T1 without an ACK (§13.3.1.4).

    The dialog is confirmed but the session SHOULD be ended with a BYE.
    """

    transaction: ServerTransaction


@dataclass(frozen=True, slots=True, eq=False)
class TransactionTerminated:
    """A transaction reached Terminated and was forgotten (bookkeeping only)."""

    transaction: Transaction


@dataclass(frozen=True, slots=True, eq=False)
class TransportFailure:
    """The transport reported that ``destination`` cannot be reached (§17.1.4, §18.4).

    The transaction is terminated; a client treats it as a 503.
    """

    transaction: Transaction
    destination: Address
    reason: str


Event = (
    RequestReceived
    | ResponseReceived
    | AckReceived
    | CancelReceived
    | TransactionTimeout
    | AckNotReceived
    | TransactionTerminated
    | TransportFailure
)
