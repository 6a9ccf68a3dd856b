"""What the phone reports to its owner: typed events, consumed with ``match``."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from softphone.sip.events import ResponseReceived, TransactionTimeout, TransportFailure
from softphone.sip.registration import RegState

if TYPE_CHECKING:
    from softphone.phone.call import Call
    from softphone.phone.registration import Registration


class CallState(enum.Enum):
    CALLING = "calling"          # INVITE sent / received, no dialog yet
    RINGING = "ringing"          # early dialog (180/183)
    ESTABLISHED = "established"  # 2xx sent or received
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True, eq=False)
class IncomingCall:
    """A new INVITE. With ``auto_answer`` off the owner calls ``call.answer()``/``reject()``."""

    call: Call


@dataclass(frozen=True, slots=True, eq=False)
class CallStateChanged:
    call: Call
    state: CallState


@dataclass(frozen=True, slots=True, eq=False)
class RegistrationChanged:
    registration: Registration
    state: RegState


UaEvent = IncomingCall | CallStateChanged | RegistrationChanged

# What a client transaction of ours ends or progresses with (the handler's argument).
TransactionOutcome = ResponseReceived | TransactionTimeout | TransportFailure
