"""The edge's upstream trunk: one registration per local user, and the routing rules to and
from the provider.

Registration: every local user with an upstream account (``trunk_user``/``trunk_password``)
gets its own REGISTER binding at the trunk URI, answered with digest from that user's own
credentials (one person per upstream account, R-ACCT-1: never one account for several people).
A binding is refreshed at a random point between 50 % and 80 % of the granted Expires (so that
several users do not refresh in one burst, and a retransmitted REGISTER still lands in time);
a failure (error response, timeout, unreachable) is retried with exponential backoff capped at
five minutes, randomised between 50 % and 100 % of the step (RFC 5626 §4.5 does the same).

Routing (used by the B2BUA):

* outbound: a local user dials a number that is not local (digits with an optional ``+``);
  the B leg is ``INVITE sip:NUMBER@trunkhost`` with that user's upstream identity in From and
  answers the provider's 401/407 with that user's own credentials (:meth:`Trunk.call_digest`).
* a local user dialling another user's DID is a local call: it never leaves the edge.
* inbound: an INVITE whose source is the trunk's address (the provider does not authenticate
  to us; for datagrams host and port must match, over streams the host) goes to the local user
  whose ``did`` is the Request-URI user (or whose ``trunk_user`` is, as a provider sends to the
  Contact we registered), else whose ``did`` is the To user.

Limits: the trunk host is resolved once at start (A/AAAA, first address; no RFC 3263
NAPTR/SRV), and trusting the source address is only as good as the network path: over UDP it
can be spoofed, so an exposed edge should admit the provider's address alone on its SIP port.

Each binding is the SIP core's client-registration machine
(``softphone.sip.registration.ClientRegistration``, the one the phone uses too) with the
trunk's refresh policy; the phone's registrations own their transport, whereas here one SipCore
is shared by every user and every call, so the trunk sends the machine's REGISTERs on that core
itself and arms its timers.

The class is driven like the rest of the edge: the SIP core's ``send_request`` for output,
:meth:`Trunk.on_response` / :meth:`Trunk.on_failure` for the core's events on our
transactions (the B2BUA hands them over), and an injected ``schedule(delay, callback)``
(``loop.call_later`` in the edge, a fake in tests) for refreshes and retries.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from softphone.sip.auth import DigestClient
from softphone.sip.core import Address, SipCore
from softphone.sip.errors import SipError, SipParseError
from softphone.sip.message import SipRequest, SipResponse
from softphone.sip.registration import (
    ClientRegistration,
    RefreshPolicy,
    RegState,
)
from softphone.sip.transaction import ClientTransaction, Transaction
from softphone.sip.uri import SipUri

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"
_TRANSPORTS = ("udp", "tcp", "tls")
_SEPARATORS = str.maketrans("", "", " -.()")


class TrunkError(SipError):
    """The trunk URI or an upstream account cannot be used."""


class Cancellable(Protocol):
    def cancel(self) -> None:
        ...


Scheduler = Callable[[float, Callable[[], None]], Cancellable]


@dataclass(frozen=True)
class TrunkAccount:
    """One local user's own upstream account."""

    ext: str
    username: str
    password: str = field(repr=False)
    did: str = ""


@dataclass(frozen=True)
class TrunkUri:
    """The configured trunk URI: where requests go and the host named in upstream URIs."""

    uri: SipUri
    transport: str

    @classmethod
    def parse(cls, text: str) -> TrunkUri:
        try:
            uri = SipUri.parse(text)
        except SipParseError as exc:
            raise TrunkError(f"trunk URI {text!r}: {exc.reason}") from None
        if not uri.is_sip or not uri.host:
            raise TrunkError(f"trunk URI {text!r}: must be a sip: or sips: URI with a host")
        if uri.user:
            raise TrunkError(f"trunk URI {text!r}: names a host, not a user (drop {uri.user}@)")
        transport = (uri.params.get("transport") or
                     ("tls" if uri.scheme == "sips" else "udp")).lower()
        if transport not in _TRANSPORTS:
            raise TrunkError(f"trunk URI {text!r}: transport {transport!r} (udp, tcp, tls)")
        return cls(uri, transport)

    @property
    def host(self) -> str:
        return self.uri.host

    @property
    def port(self) -> int:
        return self.uri.port or (5061 if self.transport == "tls" else 5060)

    def registrar_uri(self) -> str:
        """The REGISTER Request-URI: the trunk URI without user (RFC 3261 §10.2)."""
        params = {k: v for k, v in self.uri.params.items() if k == "transport"}
        return str(SipUri(scheme=self.uri.scheme, host=self.host, port=self.uri.port,
                          params=params))

    def user_uri(self, user: str, *, with_port: bool = False) -> str:
        """``sip:user@trunkhost``: an upstream identity (AOR) or, with the port (and transport),
        a Request-URI the provider routes by its user part."""
        params = {k: v for k, v in self.uri.params.items() if k == "transport"} if with_port \
            else {}
        return str(SipUri(scheme=self.uri.scheme, host=self.host, user=user,
                          port=self.uri.port if with_port else None, params=params))

    def address(self, resolved_host: str | None = None) -> Address:
        return Address(self.transport, resolved_host or self.uri.host_no_brackets, self.port)


def is_external_number(target: str) -> bool:
    """A dialled number for the trunk: digits with an optional leading ``+`` (at least 3)."""
    digits = target[1:] if target.startswith("+") else target
    return 3 <= len(digits) <= 20 and digits.isdigit() and digits.isascii()


def same_number(a: str, b: str) -> bool:
    """DIDs compare on their digits: ``+33 1 23 45`` and ``33123..`` are one number."""
    na, nb = a.translate(_SEPARATORS).lstrip("+"), b.translate(_SEPARATORS).lstrip("+")
    return bool(na) and na == nb


class Registration(ClientRegistration):
    """One user's binding at the trunk: the shared client-registration machine, plus the
    account it is for and the transaction and timer the trunk drives it with."""

    def __init__(self, account: TrunkAccount, aor: str, registrar_uri: str, contact: str,
                 expires: int, policy: RefreshPolicy, rand: Callable[[], float]) -> None:
        super().__init__(aor=aor, registrar_uri=registrar_uri, contact=contact,
                         expires=expires, digest=DigestClient(account.username,
                                                              account.password),
                         policy=policy, rand=rand, allow=ALLOW)
        self.account = account
        self.txn: ClientTransaction | None = None
        self.timer: Cancellable | None = None
        self.armed_at: float | None = None

    def status(self, now: float) -> dict[str, Any]:
        return {
            "account": self.account.username,
            "state": self.state.value,
            "granted": self.granted,
            "next_in": round(self.next_at - now, 1) if self.next_at is not None else None,
            "last_status": self.last_status,
            "last_reason": self.last_reason,
            "failures": self.failures,
            "registrations": self.registrations,
        }


class Trunk:
    """Upstream registrations and routing for one trunk (see the module docstring)."""

    def __init__(self, *, uri: TrunkUri, accounts: Iterable[TrunkAccount], core: SipCore,
                 flush: Callable[[], None], clock: Callable[[], float], schedule: Scheduler,
                 address: Address | None = None, expires: int = 3600,
                 policy: RefreshPolicy | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        self.uri = uri
        self.address = address or uri.address()
        self.core = core
        self.flush = flush
        self.clock = clock
        self.schedule = schedule
        self.expires = expires
        self.policy = policy or RefreshPolicy()
        self.rand = rand
        local = core.local.get(self.address.transport)
        if local is None:
            raise TrunkError(f"the trunk wants {self.address.transport}, which the edge does "
                             "not listen on")
        suffix = "" if self.address.transport == "udp" else \
            f";transport={self.address.transport}"
        self.accounts: dict[str, TrunkAccount] = {}
        self.registrations: dict[str, Registration] = {}
        seen: set[str] = set()
        for acct in accounts:
            if acct.username in seen:  # the config refuses this too (R-ACCT-1)
                raise TrunkError(f"upstream account {acct.username!r} mapped to several users")
            seen.add(acct.username)
            self.accounts[acct.ext] = acct
            contact = f"sip:{acct.username}@{local.host}:{local.port}{suffix}"
            self.registrations[acct.ext] = Registration(
                acct, uri.user_uri(acct.username), uri.registrar_uri(), contact, expires,
                self.policy, rand)
        self._by_txn: dict[ClientTransaction, Registration] = {}
        self._closing = False

    # ------------------------------------------------------------------ routing

    def account_for(self, ext: str) -> TrunkAccount | None:
        """The local user's own upstream account, or None if it has none."""
        return self.accounts.get(ext)

    def call_digest(self, ext: str) -> DigestClient:
        """A fresh digest client with ``ext``'s own upstream credentials, for one call.

        Fresh per call: a client remembers the nonces it answered and would take the
        provider's reuse of a registration nonce for a refusal."""
        acct = self.accounts.get(ext)
        if acct is None:
            raise TrunkError(f"user {ext} has no upstream account")
        return DigestClient(acct.username, acct.password)

    def outbound_uris(self, ext: str, number: str) -> tuple[str, str, str]:
        """(Request-URI, From URI, To URI) of the B leg of ``ext`` calling ``number``."""
        acct = self.accounts.get(ext)
        if acct is None:
            raise TrunkError(f"user {ext} has no upstream account")
        return (self.uri.user_uri(number, with_port=True), self.uri.user_uri(acct.username),
                self.uri.user_uri(number))

    def is_from_trunk(self, source: Address) -> bool:
        """Did this come from the provider? Datagrams: host and port; streams: the host."""
        if source.host != self.address.host:
            return False
        if source.transport == "udp":
            return source.port == self.address.port and self.address.transport == "udp"
        return source.transport == self.address.transport

    def ext_for_did(self, number: str) -> str | None:
        """The local user whose DID ``number`` is, or None."""
        for acct in self.accounts.values():
            if acct.did and same_number(acct.did, number):
                return acct.ext
        return None

    def did_target(self, request: SipRequest) -> str | None:
        """The local extension an inbound INVITE from the trunk is for, or None (404)."""
        try:
            ruri_user = SipUri.parse(request.uri).user or ""
        except SipParseError:
            ruri_user = ""
        try:
            to_user = request.to.uri.user or ""
        except SipParseError:
            to_user = ""
        if ruri_user:
            ext = self.ext_for_did(ruri_user)
            if ext is not None:
                return ext
            for acct in self.accounts.values():
                if acct.username == ruri_user:
                    return acct.ext
        return self.ext_for_did(to_user) if to_user else None

    # ------------------------------------------------------------------ registration

    def start(self) -> None:
        """Register every account now."""
        now = self.clock()
        for reg in self.registrations.values():
            self._send(reg, reg.register(now))
        self.flush()

    def close(self) -> None:
        """Remove our bindings (Expires: 0, not waited for) and stop every timer."""
        self._closing = True
        now = self.clock()
        for reg in self.registrations.values():
            registered = reg.state is RegState.REGISTERED
            request = reg.unregister(now)
            self._sync_timer(reg)
            if registered:
                try:
                    self._send(reg, request)
                except SipError as exc:
                    log.warning("un-REGISTER of %s failed: %s", reg.account.username, exc)
        self.flush()

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {"uri": str(self.uri.uri),
                "registrations": {ext: r.status(now) for ext, r in self.registrations.items()}}

    def _send(self, reg: Registration, request: SipRequest) -> None:
        """Send what the machine built on a client transaction of the shared core."""
        if reg.txn is not None:
            self._by_txn.pop(reg.txn, None)
        txn = self.core.send_request(request, self.address, self.clock())
        reg.txn = txn
        self._by_txn[txn] = reg

    def _sync_timer(self, reg: Registration) -> None:
        """(Re)arm the refresh/retry timer on the machine's ``next_at``."""
        if reg.armed_at == reg.next_at:
            return
        if reg.timer is not None:
            reg.timer.cancel()
            reg.timer = None
        reg.armed_at = reg.next_at
        if reg.next_at is not None:
            reg.timer = self.schedule(max(0.0, reg.next_at - self.clock()),
                                      lambda: self._due(reg))

    def _due(self, reg: Registration) -> None:
        reg.timer = None
        reg.armed_at = None
        now = max(self.clock(), reg.next_at or 0.0)
        request = reg.due(now)
        if request is not None:
            try:
                self._send(reg, request)
            except SipError as exc:
                reg.transaction_failed(request, 0, f"cannot send REGISTER: {exc}", now)
        self._after(reg)
        self.flush()

    def _after(self, reg: Registration, failures_before: int | None = None) -> None:
        if failures_before is not None and reg.failures > failures_before:
            delay = None if reg.next_at is None else reg.next_at - self.clock()
            log.warning("upstream registration of %s (user %s) failed: %s; retry in %s",
                        reg.account.username, reg.account.ext, reg.last_reason,
                        "-" if delay is None else f"{delay:.1f} s")
        self._sync_timer(reg)

    def on_response(self, response: SipResponse, txn: ClientTransaction) -> bool:
        """A response on one of our REGISTER transactions; False if it is not ours."""
        reg = self._by_txn.get(txn)
        if reg is None:
            return False
        if response.status < 200:
            return True
        self._by_txn.pop(txn, None)
        if txn is not reg.txn:
            return True  # superseded by a newer REGISTER
        reg.txn = None
        failures = reg.failures
        retry = reg.receive(response, self.clock())
        if retry is not None:
            try:
                self._send(reg, retry)
            except SipError as exc:
                reg.transaction_failed(retry, 0, f"cannot send REGISTER: {exc}", self.clock())
            self.flush()
        self._after(reg, failures)
        return True

    def on_failure(self, txn: Transaction, reason: str) -> bool:
        """Timer F or a transport error on one of our REGISTERs; False if it is not ours."""
        if not isinstance(txn, ClientTransaction):
            return False
        reg = self._by_txn.pop(txn, None)
        if reg is None:
            return False
        if txn is reg.txn:
            reg.txn = None
            failures = reg.failures
            reg.transaction_failed(txn.request, 408 if reason == "timeout" else 503, reason,
                                   self.clock())
            self._after(reg, failures)
        return True


def accounts_from_users(users: Iterable[Any]) -> list[TrunkAccount]:
    """The upstream accounts of the configured users (``LocalUser`` with a ``trunk_user``)."""
    out: list[TrunkAccount] = []
    for u in users:
        if u.trunk_user:
            if not u.trunk_password:
                raise TrunkError(f"user {u.ext}: trunk_user without trunk_password")
            out.append(TrunkAccount(u.ext, u.trunk_user, u.trunk_password, u.did))
    return out
