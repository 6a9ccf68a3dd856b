"""Client registration (RFC 3261 §10.2), sans-I/O: one binding of a Contact at a registrar.

The one state machine behind every REGISTER we send: the phone's registrations
(``softphone.phone.registration``, on its own transport) and the edge's per-user upstream
bindings (``softphone.edge.trunk``, on the shared core). It builds the requests and reads the
responses; the caller sends them on a client transaction, reports what came back, and calls
:meth:`ClientRegistration.due` when the clock reaches :attr:`ClientRegistration.next_at`
(times are plain floats from the caller's clock; randomness is injected).

* ``register(now)`` -> a REGISTER (CSeq + 1, signed with the last challenge when one is known:
  a refresh need not be challenged again).
* ``receive(response, now)`` -> the next request to send, or None:

  - 2xx: the granted expiry is our Contact's ``expires`` parameter, else the Expires header,
    else what we asked (§10.2.4); the refresh is due at a point of it the policy draws; a 2xx
    to ``Expires: 0`` means unregistered.
  - 401/407: answered with the digest credentials (at most twice in a row, and never a nonce
    already answered without ``stale=true``: a wrong password does not loop).
  - 423: retried with the Min-Expires asked for (§10.3 step 7), when it is above ours.
  - anything else, a timeout or a transport failure (``transaction_failed``): a failure;
    retried with backoff (RETRYING) when the policy says so, else FAILED for good.

* ``unregister(now)`` -> ``Expires: 0`` for our Contact; no more refreshes or retries.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

from softphone.sip.auth import AuthError, DigestClient
from softphone.sip.core import new_call_id, new_tag
from softphone.sip.errors import SipParseError
from softphone.sip.message import Headers, SipRequest, SipResponse
from softphone.sip.uri import NameAddr, SipUri

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"
MAX_AUTH_TRIES = 2  # a stale nonce may be answered once more; a third challenge is a refusal


class RegState(enum.Enum):
    IDLE = "idle"                  # nothing sent yet
    REGISTERING = "registering"    # a REGISTER is out, never registered since the last start
    REGISTERED = "registered"
    RETRYING = "retrying"          # failed; attempts go on with backoff until one succeeds
    FAILED = "failed"              # failed; no further attempt (the policy gives up)
    UNREGISTERED = "unregistered"  # our binding was removed (a 2xx to Expires: 0)


@dataclass(frozen=True)
class RefreshPolicy:
    """When to refresh a binding and when to retry after a failure (pure).

    The refresh falls at a random point between ``refresh_low`` and ``refresh_high`` of the
    granted time (at least ``min_delay``): several bindings then do not refresh in one burst,
    and a retransmitted REGISTER still lands in time. A failure is retried after a step that
    doubles from ``retry_first`` up to ``retry_max``, shortened at random by up to
    ``retry_jitter`` of it (RFC 5626 §4.5 does the same). A Retry-After is a floor, or with
    ``retry_after_exact`` the delay itself (at least ``min_delay``). ``retry_client_errors``
    off: a 4xx (a refused password, a forbidden account) is final (FAILED), only timeouts,
    unreachable registrars and 5xx/6xx are retried.
    """

    refresh_low: float = 0.5
    refresh_high: float = 0.8
    min_delay: float = 1.0
    retry_first: float = 2.0
    retry_max: float = 300.0
    retry_jitter: float = 0.5
    retry_after_exact: bool = False
    retry_client_errors: bool = True

    @classmethod
    def fixed(cls, ratio: float, retry_interval: float) -> RefreshPolicy:
        """Refresh at ``ratio`` of the granted time; retry a timeout or a server error after
        ``retry_interval`` (or the server's Retry-After); never retry a 4xx."""
        return cls(refresh_low=ratio, refresh_high=ratio, retry_first=retry_interval,
                   retry_max=retry_interval, retry_jitter=0.0, retry_after_exact=True,
                   retry_client_errors=False)

    def refresh_delay(self, granted: int, rand: float) -> float:
        """Seconds until the refresh of a binding granted for ``granted`` s (``rand`` in [0,1))."""
        ratio = self.refresh_low + (self.refresh_high - self.refresh_low) * rand
        return max(self.min_delay, granted * ratio)

    def retry_delay(self, failures: int, rand: float, *, retry_after: int | None = None) -> float:
        """Seconds until the next attempt after ``failures`` failures in a row (>= 1)."""
        if retry_after is not None and self.retry_after_exact:
            return max(self.min_delay, float(retry_after))
        step = min(self.retry_max, self.retry_first * 2.0 ** max(0, failures - 1))
        delay = step * (1.0 - self.retry_jitter + self.retry_jitter * rand)
        if retry_after is not None:
            delay = max(delay, float(retry_after))
        return delay

    def retries(self, status: int) -> bool:
        """Is a failure with this status (0: not sent, 408 timeout, 503 unreachable) retried?"""
        return self.retry_client_errors or not 400 <= status < 500 or status == 408


def granted_expires(response: SipResponse, contact: str, requested: int) -> int:
    """The expiry the registrar granted our Contact (its ``expires`` param, else the
    Expires header, else what we asked for; RFC 3261 §10.2.4).

    Our Contact is the one with our user, host and port; failing that (a registrar that
    rewrote the host), the one with our user."""
    try:
        ours = SipUri.parse(contact)
    except SipParseError:
        ours = None
    try:
        contacts = response.contacts
    except SipParseError:
        contacts = []
    if ours is not None:
        exact = [c for c in contacts if (c.uri.user, c.uri.host, c.uri.port) ==
                 (ours.user, ours.host, ours.port)]
        for c in exact or [c for c in contacts if c.uri.user == ours.user]:
            v = c.params.get("expires")
            if v is not None and v.strip().isdigit():
                return int(v.strip())
    e = header_int(response, "expires")
    return requested if e is None else e


def header_int(msg: SipRequest | SipResponse, name: str) -> int | None:
    """A header's leading integer (``Retry-After: 120;duration=60 (note)`` -> 120), or None."""
    value = msg.headers.get(name)
    if value is None:
        return None
    value = value.split(";")[0].split("(")[0].strip()
    return int(value) if value.isdigit() else None


class ClientRegistration:
    """One Contact's binding for one AOR at one registrar (see the module docstring)."""

    def __init__(self, *, aor: str, registrar_uri: str, contact: str, expires: int = 3600,
                 digest: DigestClient | None = None, policy: RefreshPolicy | None = None,
                 rand: Callable[[], float] = random.random, allow: str = ALLOW) -> None:
        self.aor = aor
        self.registrar_uri = registrar_uri
        self.contact = contact
        self.expires = expires
        self.digest = digest
        self.policy = policy or RefreshPolicy()
        self.rand = rand
        self.allow = allow
        self.call_id = new_call_id()
        self.from_tag = new_tag()
        self.cseq = 0
        self.state = RegState.IDLE
        self.granted: int | None = None
        self.registered_at: float | None = None
        self.next_at: float | None = None     # when ``due`` has a request to send
        self.last_status: int | None = None   # of the last success or failure
        self.last_reason = ""
        self.failures = 0                     # in a row
        self.registrations = 0                # successful REGISTERs (first one and refreshes)
        self.auth_tries = 0
        self.closing = False
        self.pending: SipRequest | None = None  # the REGISTER awaiting its final response

    # -- requests out ---------------------------------------------------------------------

    def register(self, now: float) -> SipRequest:
        """A new REGISTER for our binding (the first one, a refresh or a retry)."""
        return self._request(self.expires)

    def unregister(self, now: float) -> SipRequest:
        """Remove our binding (``Expires: 0``); nothing is refreshed or retried after this."""
        self.closing = True
        self.next_at = None
        return self._request(0)

    def due(self, now: float) -> SipRequest | None:
        """The refresh or retry when its time has come, else None."""
        if self.closing or self.next_at is None or now < self.next_at:
            return None
        self.next_at = None
        return self.register(now)

    def _request(self, expires: int) -> SipRequest:
        self.cseq += 1
        aor = NameAddr.parse(self.aor)
        aor.bracketed = True
        h = Headers()
        h.add("From", f"{aor};tag={self.from_tag}")
        h.add("To", str(aor))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.cseq} REGISTER")
        h.add("Contact", f"<{self.contact}>")
        h.add("Expires", str(expires))
        h.add("Allow", self.allow)
        request = SipRequest("REGISTER", self.registrar_uri, h)
        if self.digest is not None:
            self.digest.sign(request)  # known challenge: a refresh need not be challenged again
        return self._sending(request)

    def _sending(self, request: SipRequest) -> SipRequest:
        self.cseq = request.cseq.number
        self.pending = request
        if request.headers.get("expires") != "0" and self.state in (
                RegState.IDLE, RegState.UNREGISTERED, RegState.FAILED):
            self.state = RegState.REGISTERING  # RETRYING stays until a success
        return request

    # -- what came back -------------------------------------------------------------------

    def is_answer_to_pending(self, response: SipResponse) -> bool:
        sent = self.pending
        return sent is not None and response.call_id == sent.call_id \
            and response.cseq.number == sent.cseq.number

    def receive(self, response: SipResponse, now: float) -> SipRequest | None:
        """A response to our REGISTER; the request to send next (a digest or Min-Expires
        retry), or None. Responses to a superseded REGISTER and provisional ones change
        nothing."""
        if response.status < 200 or not self.is_answer_to_pending(response):
            return None
        sent = self.pending
        assert sent is not None
        self.pending = None
        status = response.status
        asked = header_int(sent, "expires") or 0
        if status in (401, 407):
            if self.digest is None:
                self._failed(now, status, "challenged but no credentials configured")
                return None
            if self.auth_tries >= MAX_AUTH_TRIES:
                self._failed(now, status, "credentials refused")
                return None
            self.auth_tries += 1
            try:
                retry = self.digest.authorize(sent, response)
            except AuthError as exc:
                self._failed(now, status, str(exc))
                return None
            return self._sending(retry)
        if status == 423:
            minimum = header_int(response, "min-expires")
            if minimum and asked and minimum > asked and not self.closing:
                self.expires = minimum
                return self.register(now)
            self._failed(now, status, "423 without a usable Min-Expires")
            return None
        if 200 <= status < 300:
            self.auth_tries = 0
            self.last_status = status
            self.last_reason = response.reason
            if not asked:
                self.state = RegState.UNREGISTERED
                self.granted = 0
                return None
            granted = granted_expires(response, self.contact, asked)
            self.granted = granted
            self.failures = 0
            self.registrations += 1
            self.registered_at = now
            self.state = RegState.REGISTERED
            if granted <= 0:
                self._failed(now, status, "registrar granted no time")
            elif not self.closing:
                self.next_at = now + self.policy.refresh_delay(granted, self.rand())
            return None
        self._failed(now, status, f"{status} {response.reason}",
                     retry_after=header_int(response, "retry-after"))
        return None

    def transaction_failed(self, request: SipRequest, status: int, reason: str,
                           now: float) -> None:
        """Our REGISTER got no answer: 408 (timer F), 503 (unreachable) or 0 (not sent)."""
        sent = self.pending
        if sent is None or request.cseq.number != sent.cseq.number:
            return  # superseded
        self.pending = None
        self._failed(now, status, reason)

    def _failed(self, now: float, status: int, reason: str,
                retry_after: int | None = None) -> None:
        self.failures += 1
        self.last_status = status or None
        self.last_reason = reason
        self.auth_tries = 0
        self.next_at = None
        if not self.policy.retries(status):
            self.state = RegState.FAILED
            return
        self.state = RegState.RETRYING
        if not self.closing:
            self.next_at = now + self.policy.retry_delay(self.failures, self.rand(),
                                                         retry_after=retry_after)
