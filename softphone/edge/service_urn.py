"""RFC 5031 service URNs as the edge meets them on emergency calls (RFC 6881).

Outbound, the emergency INVITE names the service it wants in its Request-URI
(``urn:service:sos.fire``) and reaches the emergency gateway (ESRP) by a loose ``Route``; inbound,
a phone that knows the service dials the URN itself. This module parses and checks those URNs
and builds the other addresses of such an INVITE; the SIP URI parser (``softphone.sip.uri``)
only keeps the text of a URN, it has no business knowing the service tree.

Syntax (RFC 5031 §3): ``urn:service:`` then a top-level service and dot-separated
sub-services, letters, digits and inner hyphens, compared without case. Emergency services are
the ``sos`` tree (RFC 5031 §4.2 registers ambulance, animal-control, fire, gas, marine,
mountain, physician, poison and police); a sub-service is not checked against that list, so
one registered since still reaches the emergency services.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from softphone.sip.errors import SipParseError
from softphone.sip.uri import SipUri

PREFIX = "urn:service:"
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_SERVICE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class ServiceUrnError(ValueError):
    """A Request-URI the edge cannot take as a service; ``status`` is the answer to send."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def is_urn(uri: str) -> bool:
    return uri[:4].lower() == "urn:"


@dataclass(frozen=True)
class ServiceUrn:
    service: str  # "sos.fire": lower case, without the "urn:service:" prefix

    @classmethod
    def parse(cls, text: str) -> ServiceUrn:
        """A service URN from a Request-URI; ServiceUrnError 416 for a URN of another
        namespace (the edge offers no other), 400 for a malformed service URN."""
        if text[: len(PREFIX)].lower() != PREFIX:
            raise ServiceUrnError(416, "Unsupported URI Scheme: only urn:service: URNs are "
                                       "served here")
        service = text[len(PREFIX):].lower()
        if len(service) > 255 or _SERVICE.fullmatch(service) is None:
            raise ServiceUrnError(400, "Bad Request-URI: malformed service URN")
        return cls(service)

    @property
    def is_emergency(self) -> bool:
        return self.service == "sos" or self.service.startswith("sos.")

    def __str__(self) -> str:
        return PREFIX + self.service


def loose_route(route: str) -> str:
    """The ``Route`` value that sends a request to ``route`` as a loose router (the ``lr``
    parameter, RFC 3261 §19.1.1: the Request-URI stays the service URN)."""
    try:
        uri = SipUri.parse(route)
    except SipParseError as exc:
        raise ServiceUrnError(503, f"Service Unavailable: bad emergency route: {exc}") from None
    if "lr" not in uri.params:
        uri = uri.with_params(lr=None)
    return f"<{uri}>"


def dial_string_uri(dialed: str, domain: str) -> str:
    """The To of an emergency INVITE for digits dialled by the caller (RFC 6881: the dial
    string is kept in To when the Request-URI becomes the service URN).

    A SIP URI with ``user=dialstring`` (RFC 4967), ``sip:112@<edge domain>;user=dialstring``,
    not a tel URI: a tel URI names a telephone number (RFC 3966), and 15 or 112 is none, only
    digits that mean something where they were dialled, which is what user=dialstring says;
    the edge's domain is that place. A dialled service URN is kept as it is (RFC 6881 puts
    the URN in To when the phone itself knows the service).
    """
    if is_urn(dialed):
        return f"<{dialed}>"
    return f"<sip:{dialed}@{domain};user=dialstring>"


def dialled(ruri: str) -> str:
    """What a local caller dialled: a service URN (RFC 5031, checked, in lower case), also
    from a phone that can only send SIP URIs and escapes it into the user part
    (``sip:urn%3Aservice%3Asos@edge``); else the user part of the SIP or tel Request-URI (a
    dial string keeps its RFC 4967 phone-context). Raises ServiceUrnError or SipParseError."""
    if is_urn(ruri):
        return str(ServiceUrn.parse(ruri))
    user = SipUri.parse(ruri).user or ""
    return str(ServiceUrn.parse(user)) if is_urn(user) else user
