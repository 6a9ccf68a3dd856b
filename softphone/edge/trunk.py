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

Why not the phone's ``Registration`` (``softphone.phone``): that one belongs to a UserAgent owning
its transport layer; here one SipCore is shared by every user and every call, so the trunk
drives its REGISTER transactions on that core itself (digest from ``softphone.sip.auth``).

The class is driven like the rest of the edge: the SIP core's ``send_request`` for output,
:meth:`Trunk.on_response` / :meth:`Trunk.on_failure` for the core's events on our
transactions (the B2BUA hands them over), and an injected ``schedule(delay, callback)``
(``loop.call_later`` in the edge, a fake in tests) for refreshes and retries.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from softphone.sip.auth import AuthError, DigestClient
from softphone.sip.core import Address, SipCore, new_call_id, new_tag
from softphone.sip.errors import SipError, SipParseError
from softphone.sip.message import Headers, SipRequest, SipResponse
from softphone.sip.transaction import ClientTransaction
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


class RegState(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    RETRYING = "retrying"          # failed; attempts go on with backoff until one succeeds
    UNREGISTERED = "unregistered"


@dataclass(frozen=True)
class RefreshPolicy:
    """When to refresh a binding and when to retry after a failure (pure)."""

    refresh_low: float = 0.5
    refresh_high: float = 0.8
    min_delay: float = 1.0
    retry_first: float = 2.0
    retry_max: float = 300.0

    def refresh_delay(self, granted: int, rand: float) -> float:
        """Seconds until the refresh of a binding granted for ``granted`` s (``rand`` in [0,1))."""
        ratio = self.refresh_low + (self.refresh_high - self.refresh_low) * rand
        return max(self.min_delay, granted * ratio)

    def retry_delay(self, failures: int, rand: float, *, retry_after: int | None = None) -> float:
        """Seconds until the next attempt after ``failures`` failures in a row (>= 1)."""
        step = min(self.retry_max, self.retry_first * 2.0 ** max(0, failures - 1))
        delay = step * (0.5 + 0.5 * rand)
        if retry_after is not None:
            delay = max(delay, float(retry_after))
        return delay


class Registration:
    """One user's binding at the trunk."""

    def __init__(self, account: TrunkAccount, contact: str, expires: int) -> None:
        self.account = account
        self.contact = contact
        self.expires = expires
        self.call_id = new_call_id()
        self.from_tag = new_tag()
        self.cseq = 0
        self.digest = DigestClient(account.username, account.password)
        self.state = RegState.IDLE
        self.granted: int | None = None
        self.registered_at: float | None = None
        self.next_at: float | None = None
        self.last_status: int | None = None
        self.last_reason = ""
        self.failures = 0
        self.registrations = 0      # successful REGISTERs (first one and refreshes)
        self.auth_tries = 0
        self.txn: ClientTransaction | None = None
        self.timer: Cancellable | None = None

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


def granted_expires(response: SipResponse, contact: str, requested: int) -> int:
    """The expiry the registrar granted our Contact (its ``expires`` param, else the
    Expires header, else what we asked for; RFC 3261 §10.2.4)."""
    try:
        ours = SipUri.parse(contact)
    except SipParseError:
        ours = None
    try:
        contacts = response.contacts
    except SipParseError:
        contacts = []
    for c in contacts:
        same = ours is not None and c.uri.user == ours.user and c.uri.port == ours.port \
            and c.uri.host == ours.host
        if same:
            v = c.params.get("expires")
            if v is not None and v.strip().isdigit():
                return int(v.strip())
    e = response.headers.get("expires")
    if e is not None and e.strip().isdigit():
        return int(e.strip())
    return requested


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
            self.registrations[acct.ext] = Registration(acct, contact, expires)
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
        for reg in self.registrations.values():
            self._send(reg)
        self.flush()

    def close(self) -> None:
        """Remove our bindings (Expires: 0, not waited for) and stop every timer."""
        self._closing = True
        for reg in self.registrations.values():
            if reg.timer is not None:
                reg.timer.cancel()
                reg.timer = None
            reg.next_at = None
            if reg.state is RegState.REGISTERED:
                try:
                    self._send(reg, expires=0)
                except SipError as exc:
                    log.warning("un-REGISTER of %s failed: %s", reg.account.username, exc)
                reg.state = RegState.UNREGISTERED
        self.flush()

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {"uri": str(self.uri.uri),
                "registrations": {ext: r.status(now) for ext, r in self.registrations.items()}}

    def _register_request(self, reg: Registration, expires: int) -> SipRequest:
        reg.cseq += 1
        aor = self.uri.user_uri(reg.account.username)
        h = Headers()
        h.add("From", f"<{aor}>;tag={reg.from_tag}")
        h.add("To", f"<{aor}>")
        h.add("Call-ID", reg.call_id)
        h.add("CSeq", f"{reg.cseq} REGISTER")
        h.add("Contact", f"<{reg.contact}>")
        h.add("Expires", str(expires))
        h.add("Allow", ALLOW)
        request = SipRequest("REGISTER", self.uri.registrar_uri(), h)
        reg.digest.sign(request)  # known challenge: a refresh need not be challenged again
        return request

    def _send(self, reg: Registration, *, expires: int | None = None,
              request: SipRequest | None = None) -> None:
        exp = reg.expires if expires is None else expires
        if request is None:
            request = self._register_request(reg, exp)
        else:
            reg.cseq = request.cseq.number
        if exp and reg.state in (RegState.IDLE, RegState.UNREGISTERED):
            reg.state = RegState.REGISTERING  # RETRYING stays until a success
        if reg.txn is not None:
            self._by_txn.pop(reg.txn, None)
        txn = self.core.send_request(request, self.address, self.clock())
        reg.txn = txn
        self._by_txn[txn] = reg

    def _arm(self, reg: Registration, delay: float) -> None:
        if reg.timer is not None:
            reg.timer.cancel()
        reg.next_at = self.clock() + delay
        reg.timer = self.schedule(delay, lambda: self._due(reg))

    def _due(self, reg: Registration) -> None:
        reg.timer = None
        reg.next_at = None
        if self._closing:
            return
        try:
            self._send(reg)
        except SipError as exc:
            self._failed(reg, 0, f"cannot send REGISTER: {exc}")
        self.flush()

    def _failed(self, reg: Registration, status: int, reason: str,
                retry_after: int | None = None) -> None:
        reg.failures += 1
        reg.last_status = status or None
        reg.last_reason = reason
        reg.auth_tries = 0
        reg.state = RegState.RETRYING
        if self._closing:
            return
        delay = self.policy.retry_delay(reg.failures, self.rand(), retry_after=retry_after)
        log.warning("upstream registration of %s (user %s) failed: %s; retry in %.1f s",
                    reg.account.username, reg.account.ext, reason, delay)
        self._arm(reg, delay)

    def on_response(self, response: SipResponse, txn: Any) -> bool:
        """A response on one of our REGISTER transactions; False if it is not ours."""
        reg = self._by_txn.get(txn)
        if reg is None:
            return False
        if response.status < 200:
            return True
        self._by_txn.pop(txn, None)
        current = reg.txn
        if current is None or txn is not current:
            return True  # superseded by a newer REGISTER
        reg.txn = None
        sent = current.request
        status = response.status
        expires = _int_header(sent, "expires")
        if status in (401, 407):
            if reg.auth_tries >= 2 or self._closing:
                self._failed(reg, status, "credentials refused")
                return True
            reg.auth_tries += 1
            try:
                retry = reg.digest.authorize(sent, response)
            except AuthError as exc:
                self._failed(reg, status, str(exc))
                return True
            self._send(reg, expires=expires, request=retry)
            self.flush()
            return True
        if status == 423:
            minimum = _int_header(response, "min-expires")
            if minimum and expires and minimum > expires and not self._closing:
                reg.expires = minimum
                self._send(reg)
                self.flush()
            else:
                self._failed(reg, status, "423 without a usable Min-Expires")
            return True
        if 200 <= status < 300:
            reg.auth_tries = 0
            reg.last_status = status
            reg.last_reason = response.reason
            if not expires:
                reg.state = RegState.UNREGISTERED
                reg.granted = 0
                return True
            granted = granted_expires(response, reg.contact, reg.expires)
            reg.granted = granted
            reg.failures = 0
            reg.registrations += 1
            reg.registered_at = self.clock()
            reg.state = RegState.REGISTERED
            if granted <= 0:
                self._failed(reg, status, "registrar granted no time")
                return True
            if not self._closing:
                self._arm(reg, self.policy.refresh_delay(granted, self.rand()))
            return True
        self._failed(reg, status, f"{status} {response.reason}",
                     retry_after=_int_header(response, "retry-after"))
        return True

    def on_failure(self, txn: Any, reason: str) -> bool:
        """Timer F or a transport error on one of our REGISTERs; False if it is not ours."""
        reg = self._by_txn.pop(txn, None)
        if reg is None:
            return False
        if txn is reg.txn:
            reg.txn = None
            self._failed(reg, 408 if reason == "timeout" else 503, reason)
        return True


def _int_header(msg: SipRequest | SipResponse, name: str) -> int | None:
    value = msg.headers.get(name)
    if value is None:
        return None
    value = value.split(";")[0].strip()
    return int(value) if value.isdigit() else None


def accounts_from_users(users: Iterable[Any]) -> list[TrunkAccount]:
    """The upstream accounts of the configured users (``LocalUser`` with a ``trunk_user``)."""
    out: list[TrunkAccount] = []
    for u in users:
        if u.trunk_user:
            if not u.trunk_password:
                raise TrunkError(f"user {u.ext}: trunk_user without trunk_password")
            out.append(TrunkAccount(u.ext, u.trunk_user, u.trunk_password, u.did))
    return out
