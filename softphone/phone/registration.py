"""The asyncio side of registering: one binding of our Contact at a registrar, refreshed
before it expires (RFC 3261 §10.2), digest on 401/407, Min-Expires on 423, retried after a
timeout or a 5xx (never after a 4xx: wrong credentials retried forever would lock the
account out)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from softphone.phone.account import ALLOW, Credentials
from softphone.phone.events import RegistrationChanged, RegState, TransactionOutcome
from softphone.sip.core import Address, new_call_id, new_tag
from softphone.sip.errors import SipError
from softphone.sip.events import ResponseReceived, TransactionTimeout, TransportFailure
from softphone.sip.message import Headers, SipRequest, SipResponse
from softphone.sip.transaction import ClientTransaction
from softphone.sip.uri import NameAddr, SipUri

if TYPE_CHECKING:
    from softphone.phone.ua import UserAgent

log = logging.getLogger(__name__)


def _parse_expires(response: SipResponse, contact_uri: str, requested: int) -> int:
    """Granted expiry: our Contact's expires param, else the Expires header (§10.2.4)."""
    for c in response.contacts:
        if str(c.uri) == contact_uri or c.uri.user == SipUri.parse(contact_uri).user:
            v = c.params.get("expires")
            if v is not None and v.strip().isdigit():
                return int(v)
    e = response.headers.get("expires")
    if e is not None and e.strip().isdigit():
        return int(e.strip())
    return requested


class Registration:
    """One binding of our Contact at a registrar, refreshed before it expires."""

    def __init__(self, ua: UserAgent, *, aor: str, registrar: Address, request_uri: str,
                 contact: str, username: str | None, password: str | None, expires: int,
                 refresh_ratio: float) -> None:
        self.ua = ua
        self.aor = aor
        self.registrar = registrar
        self.request_uri = request_uri
        self.contact = contact
        self.credentials = Credentials(username, password)
        self.expires = expires
        self.refresh_ratio = refresh_ratio
        self.retry_interval = 30.0
        self.call_id = new_call_id()
        self.from_tag = new_tag()
        self.cseq = 0
        self.state = RegState.UNREGISTERED
        self.granted: int | None = None
        self.status: int | None = None
        self.registered_count = 0
        self.auth_tries = 0
        self._refresh: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()
        self._closing = False

    @property
    def username(self) -> str | None:
        return self.credentials.username

    @property
    def password(self) -> str | None:
        return self.credentials.password

    def _set_state(self, state: RegState) -> None:
        self.state = state
        self._changed.set()
        self._changed = asyncio.Event()
        self.ua._emit(RegistrationChanged(self, state))

    async def wait_registered(self, timeout: float = 10.0, *, count: int = 1) -> bool:
        """Wait until ``count`` successful registrations (1 = the first) or a failure."""
        try:
            async with asyncio.timeout(timeout):
                while self.registered_count < count and self.state is not RegState.FAILED:
                    await self._changed.wait()
        except TimeoutError:
            return False
        return self.registered_count >= count

    async def unregister(self, timeout: float = 5.0) -> None:
        self._closing = True
        if self._refresh is not None:
            self._refresh.cancel()
        self.send(expires=0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.state is not RegState.UNREGISTERED and self.state is not RegState.FAILED:
                    await self._changed.wait()

    def stop(self) -> None:
        """Drop the refresh timer (the phone is closing)."""
        if self._refresh is not None:
            self._refresh.cancel()

    # -- REGISTER transactions ------------------------------------------------------------

    def send(self, *, expires: int | None = None, retry_of: SipRequest | None = None,
             challenge: SipResponse | None = None) -> None:
        """Send a REGISTER: new (CSeq + 1, signed with the last challenge if any) or the
        digest retry of ``retry_of`` answering ``challenge``."""
        ua = self.ua
        core = ua._core()
        exp = self.expires if expires is None else expires
        if retry_of is not None and challenge is not None:
            request = self.credentials.client().authorize(retry_of, challenge)
            self.cseq = request.cseq.number
        else:
            self.cseq += 1
            h = Headers()
            aor = NameAddr.parse(self.aor)
            aor.bracketed = True
            h.add("From", f"{aor};tag={self.from_tag}")
            h.add("To", str(aor))
            h.add("Call-ID", self.call_id)
            h.add("CSeq", f"{self.cseq} REGISTER")
            h.add("Contact", f"<{self.contact}>")
            h.add("Expires", str(exp))
            h.add("Allow", ALLOW)
            request = SipRequest("REGISTER", self.request_uri, h)
            known = self.credentials.known
            if known is not None:
                known.sign(request)  # refresh with the known nonce (nc + 1)
        if exp and self.state is not RegState.REGISTERED:
            self._set_state(RegState.REGISTERING)
        txn = core.send_request(request, self.registrar, ua._now())
        ua._client[txn] = lambda ev: self._result(txn, exp, ev)
        ua._flush()

    def _result(self, txn: ClientTransaction, expires: int, event: TransactionOutcome) -> None:
        match event:
            case ResponseReceived(response=resp):
                self._response(txn, expires, resp)
            case TransactionTimeout() | TransportFailure():
                self.status = 408 if isinstance(event, TransactionTimeout) else 503
                self._set_state(RegState.FAILED)
                self._retry(None)

    def _response(self, txn: ClientTransaction, expires: int, resp: SipResponse) -> None:
        if resp.status < 200:
            return
        self.status = resp.status
        if resp.status in (401, 407) and self.auth_tries < 2 and self.password is not None:
            self.auth_tries += 1
            try:
                self.send(expires=expires, retry_of=txn.request, challenge=resp)
            except SipError as exc:
                log.warning("cannot answer the challenge: %s", exc)
                self._set_state(RegState.FAILED)
            return
        if resp.status == 423:  # Interval Too Brief: retry with Min-Expires
            me = resp.headers.get("min-expires")
            if me and me.strip().isdigit() and expires:
                self.expires = int(me.strip())
                self.send()
                return
        if 200 <= resp.status < 300:
            self.auth_tries = 0
            if expires == 0:
                self.granted = 0
                self._set_state(RegState.UNREGISTERED)
                return
            granted = _parse_expires(resp, self.contact, expires)
            self.granted = granted
            self.registered_count += 1
            self._set_state(RegState.REGISTERED)
            if not self._closing and granted > 0:
                delay = max(1.0, granted * self.refresh_ratio)
                loop = asyncio.get_running_loop()
                if self._refresh is not None:
                    self._refresh.cancel()
                self._refresh = loop.call_later(delay, self._refresh_now)
            return
        log.warning("REGISTER %s: %d %s", self.aor, resp.status, resp.reason)
        self._set_state(RegState.FAILED)
        if resp.status >= 500:
            self._retry(resp.headers.get("retry-after"))

    def _retry(self, retry_after: str | None) -> None:
        """After a timeout or a 5xx, try again later (Retry-After, else ``retry_interval``);
        never after a 4xx: wrong credentials retried forever would lock the account out."""
        if self._closing:
            return
        delay = self.retry_interval
        if retry_after is not None:
            head = retry_after.split(";")[0].split("(")[0].strip()
            if head.isdigit():
                delay = max(1.0, float(head))
        if self._refresh is not None:
            self._refresh.cancel()
        self._refresh = asyncio.get_running_loop().call_later(delay, self._refresh_now)

    def _refresh_now(self) -> None:
        self._refresh = None
        if self._closing:
            return
        try:
            self.send()
        except SipError as exc:
            log.warning("registration refresh failed: %s", exc)
            self._set_state(RegState.FAILED)
