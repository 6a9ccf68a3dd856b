"""Digest for local users (``EdgeAuth``, the B2BUA's ``Authenticator``) over
``sip.auth.DigestServer``: the users' passwords, reloadable; failures counted and logged in the
line fail2ban can match (docs/DEPLOY.md)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from softphone.edge.config import (
    EdgeConfig,
)
from softphone.sip.auth import NO_CREDENTIALS, DigestServer, own_uri_check
from softphone.sip.errors import SipParseError
from softphone.sip.message import SipRequest

log = logging.getLogger("softphone.edge")  # the same lines as before the move


class EdgeAuth:
    """Digest for local users over :class:`DigestServer`.

    The algorithms offered come from ``sip.digest_algorithms``: MD5 alone by default, because
    phones built on libre (baresip 1.0) give up on a 401 that also carries a challenge with an
    algorithm they lack; add "SHA-256" (RFC 8760) where every phone supports it.
    """

    def __init__(self, cfg: EdgeConfig, ports: Iterable[int] = ()) -> None:
        self.passwords = {u.ext: u.password for u in cfg.users}
        # a digest-uri naming the edge itself (domain or address, our listening ports) is
        # accepted as well as the Request-URI, as Kamailio, Asterisk and FreeSWITCH do
        own = own_uri_check((cfg.domain, cfg.bind),
                            {cfg.udp_port, cfg.tcp_port, cfg.tls_port, *ports} - {0})
        self.server = DigestServer(cfg.realm, self._password, algorithms=cfg.digest_algorithms,
                                   own_uri=own)
        self._stale: set[int] = set()
        self._failures: dict[int, str] = {}
        self.failures = 0  # credentials sent and refused (not the first, unauthenticated try)

    def _password(self, user: str) -> str | None:
        return self.passwords.get(user)

    def update(self, cfg: EdgeConfig) -> None:
        """New users and passwords (SIGHUP): the next digest is checked against them."""
        self.passwords = {u.ext: u.password for u in cfg.users}

    def verify(self, request: SipRequest, now: float, *, proxy: bool) -> str | None:
        result = self.server.verify(request, now, proxy=proxy)
        if result.stale:
            self._stale.add(id(request))
        elif not result.ok and result.reason != NO_CREDENTIALS:
            self._failures[id(request)] = result.reason
            credentials = request.headers.get("proxy-authorization" if proxy
                                              else "authorization")
            if credentials:
                self.failures += 1
                # the line fail2ban's filter matches (docs/DEPLOY.md): one per refusal
                log.warning("digest refused for user %s from %s: %s",
                            _digest_user(credentials), _source_host(request),
                            result.reason or "bad credentials")
        return result.user

    def failure(self, request: SipRequest) -> str | None:
        return self._failures.pop(id(request), None)

    def challenge(self, request: SipRequest, now: float, *, proxy: bool) -> list[tuple[str, str]]:
        stale = id(request) in self._stale
        self._stale.discard(id(request))
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        return [(name, v) for v in self.server.challenge(now, stale=stale)]


def _digest_user(credentials: str) -> str:
    """The username of a digest Authorization value, for the log (printable, bounded)."""
    _, _, rest = credentials.partition('username="')
    name = rest.partition('"')[0] if rest else "?"
    return "".join(c for c in name[:64] if c.isprintable() and not c.isspace()) or "?"


def _source_host(request: SipRequest) -> str:
    """Where a request came from: the address the core stamped in its top Via (``received``,
    RFC 3261 §18.2.1), else the Via's host, which then is that address."""
    try:
        via = request.top_via
    except SipParseError:
        return "?"
    return via.params.get("received") or via.host
