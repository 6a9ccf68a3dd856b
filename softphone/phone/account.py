"""Who the phone is and where its requests go: identity, credentials, next hops.

``uri_destination`` is RFC 3263 without DNS (host, port, transport from the URI); a request
we built goes to its first Route, else its Request-URI (RFC 3261 §8.1.2). ``Credentials``
holds one digest username/password and the one :class:`~softphone.sip.auth.DigestClient`
that answers its challenges (a refresh reuses the known nonce with the next nc).
"""

from __future__ import annotations

from softphone.sip.auth import DigestClient
from softphone.sip.core import Address
from softphone.sip.errors import SipError
from softphone.sip.message import SipRequest
from softphone.sip.transport import sip_host
from softphone.sip.uri import NameAddr, SipUri

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, NOTIFY"
ACCEPT = "application/sdp"
SUPPORTED = ""  # no extensions (100rel, timer, replaces) implemented yet
SDP = "application/sdp"


class UaError(SipError):
    """A UA operation that cannot be done (bad target, no transport, call in the wrong state)."""


def uri_destination(uri: str | SipUri, *, default_transport: str = "udp") -> Address:
    """Where to send a request for ``uri`` (RFC 3263 without DNS: host, port, transport)."""
    u = uri if isinstance(uri, SipUri) else SipUri.parse(uri)
    if u.scheme == "tel":
        raise UaError(f"cannot route a tel: URI without a proxy: {u}")
    transport = (u.params.get("transport") or "").lower()
    if not transport:
        transport = "tls" if u.scheme == "sips" else default_transport
    if transport not in ("udp", "tcp", "tls", "ws", "wss"):
        raise UaError(f"unsupported transport {transport!r} in {u}")
    maddr = u.params.get("maddr")
    host = (maddr or u.host).strip("[]")
    port = u.port or (5061 if transport == "tls" else 5060)
    return Address(transport, host, port)


def request_destination(request: SipRequest, transport: str) -> Address:
    """Next hop of a request we built: its first Route, else its Request-URI (§8.1.2)."""
    routes = request.headers.values("route")
    if routes:
        return uri_destination(NameAddr.parse(routes[0]).uri, default_transport=transport)
    return uri_destination(request.uri, default_transport=transport)


def from_address(domain: str | None, user: str, display_name: str | None) -> NameAddr:
    """Our From identity: ``"display" <sip:user@domain>``."""
    uri = SipUri(scheme="sip", host=sip_host(domain or "127.0.0.1"), user=user)
    return NameAddr(uri=uri, display=display_name)


class Credentials:
    """A digest username and password, and the client that answers their challenges."""

    def __init__(self, username: str | None, password: str | None) -> None:
        self.username = username
        self.password = password
        self._client: DigestClient | None = None

    @property
    def usable(self) -> bool:
        return self.password is not None

    @property
    def known(self) -> DigestClient | None:
        """The client once a challenge was answered (to sign a refresh), else None."""
        return self._client

    def client(self) -> DigestClient:
        if self.username is None or self.password is None:
            raise UaError("challenged but no credentials configured")
        if self._client is None:
            self._client = DigestClient(self.username, self.password)
        return self._client
