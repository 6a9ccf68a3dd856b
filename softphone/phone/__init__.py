"""The phone: a SIP user agent with accounts, registration refresh, calls and their media.

What ``softphone call``, the lab tests and the apps built on the edge drive: register, call,
answer, hang up. Modules by concern: ``account`` (identity, credentials, next hops),
``registration`` (the asyncio side of registering), ``call`` (INVITE dialogs), ``media`` (the
RTP port pairs its calls hold), ``events`` (what it reports), ``ua`` (the
:class:`UserAgent` composing them), ``uas`` (the auto-answering lab UAS,
``python -m softphone.phone.uas``).
"""

from softphone.phone.account import UaError, uri_destination
from softphone.phone.call import Call
from softphone.phone.events import (
    CallState,
    CallStateChanged,
    IncomingCall,
    RegistrationChanged,
    UaEvent,
)
from softphone.phone.registration import Registration
from softphone.phone.ua import UserAgent
from softphone.phone.uas import parse_listen
from softphone.sip.registration import RegState

__all__ = [
    "Call", "CallState", "CallStateChanged", "IncomingCall", "RegState", "Registration",
    "RegistrationChanged", "UaError", "UaEvent", "UserAgent", "parse_listen",
    "uri_destination",
]
