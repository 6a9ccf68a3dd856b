"""The asyncio side of registering: one binding of our Contact at a registrar.

The protocol is the SIP core's client-registration machine
(:class:`softphone.sip.registration.ClientRegistration`, shared with the edge's trunk): granted
expiry, digest on 401/407, Min-Expires on 423, failures. Here it gets a transport, a clock and
a timer: the binding is refreshed at ``refresh_ratio`` of the granted expiry, a timeout or a
server error is retried after ``retry_interval`` (or the server's Retry-After), a 4xx is final
(wrong credentials retried forever would lock the account out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from softphone.phone.account import ALLOW
from softphone.phone.events import RegistrationChanged, TransactionOutcome
from softphone.sip.auth import DigestClient
from softphone.sip.core import Address
from softphone.sip.errors import SipError
from softphone.sip.events import ResponseReceived, TransactionTimeout, TransportFailure
from softphone.sip.message import SipRequest, SipResponse
from softphone.sip.registration import ClientRegistration, RefreshPolicy, RegState
from softphone.sip.transaction import ClientTransaction

if TYPE_CHECKING:
    from softphone.phone.ua import UserAgent

log = logging.getLogger(__name__)

RETRY_INTERVAL = 30.0
_GAVE_UP = (RegState.FAILED, RegState.RETRYING)


class Registration:
    """One binding of our Contact at a registrar, refreshed before it expires."""

    def __init__(self, ua: UserAgent, *, aor: str, registrar: Address, request_uri: str,
                 contact: str, username: str | None, password: str | None, expires: int,
                 refresh_ratio: float) -> None:
        self.ua = ua
        self.registrar = registrar
        self.username = username
        self.password = password
        digest = DigestClient(username, password) \
            if username is not None and password is not None else None
        self.machine = ClientRegistration(
            aor=aor, registrar_uri=request_uri, contact=contact, expires=expires,
            digest=digest, policy=RefreshPolicy.fixed(refresh_ratio, RETRY_INTERVAL),
            allow=ALLOW)
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None
        self._changed = asyncio.Event()
        self._seen = self._snapshot()
        # the last final response (its Warnings say what the registrar wants the user told)
        self.last_response: SipResponse | None = None

    # -- what the machine knows -------------------------------------------------------------

    @property
    def aor(self) -> str:
        return self.machine.aor

    @property
    def contact(self) -> str:
        return self.machine.contact

    @property
    def state(self) -> RegState:
        return self.machine.state

    @property
    def granted(self) -> int | None:
        return self.machine.granted

    @property
    def status(self) -> int | None:
        """The final status of the last REGISTER (408 timeout, 503 unreachable)."""
        return self.machine.last_status

    @property
    def registered_count(self) -> int:
        return self.machine.registrations

    def _snapshot(self) -> tuple[RegState, int, int]:
        return (self.machine.state, self.machine.registrations, self.machine.failures)

    # -- the owner's side -----------------------------------------------------------------

    async def wait_registered(self, timeout: float = 10.0, *, count: int = 1) -> bool:
        """Wait until ``count`` successful registrations (1 = the first) or a failure."""
        try:
            async with asyncio.timeout(timeout):
                while self.registered_count < count and self.state not in _GAVE_UP:
                    await self._changed.wait()
        except TimeoutError:
            return False
        return self.registered_count >= count

    def start(self) -> None:
        """Send the first REGISTER."""
        self._send(self.machine.register(self.ua._now()))
        self._after()

    async def unregister(self, timeout: float = 5.0) -> None:
        self._send(self.machine.unregister(self.ua._now()))
        self._after()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.state is not RegState.UNREGISTERED and self.state not in _GAVE_UP:
                    await self._changed.wait()

    def stop(self) -> None:
        """Drop the refresh timer (the phone is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- REGISTER transactions and the timer ------------------------------------------------

    def _send(self, request: SipRequest) -> None:
        ua = self.ua
        try:
            txn = ua._core().send_request(request, self.registrar, ua._now())
        except SipError as exc:
            self.machine.transaction_failed(request, 0, f"cannot send REGISTER: {exc}",
                                            ua._now())
            return
        ua._client[txn] = lambda ev: self._result(txn, ev)
        ua._flush()

    def _result(self, txn: ClientTransaction, event: TransactionOutcome) -> None:
        now = self.ua._now()
        match event:
            case ResponseReceived(response=response):
                if response.status < 200:
                    return
                self.last_response = response
                retry = self.machine.receive(response, now)
                if retry is not None:
                    self._send(retry)
            case TransactionTimeout():
                self.machine.transaction_failed(txn.request, 408, "timeout", now)
            case TransportFailure(reason=reason):
                self.machine.transaction_failed(txn.request, 503, reason or "unreachable", now)
        self._after()

    def _due(self) -> None:
        self._timer = None
        self._armed_at = None
        next_at = self.machine.next_at
        request = self.machine.due(max(self.ua._now(), next_at or 0.0))
        if request is not None:
            self._send(request)
        self._after()

    def _after(self) -> None:
        """Re-arm the timer on the machine's ``next_at``; report a change to the owner."""
        m = self.machine
        if self._armed_at != m.next_at:
            self.stop()
            self._armed_at = m.next_at
            if m.next_at is not None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(max(0.0, m.next_at - loop.time()), self._due)
        seen, self._seen = self._seen, self._snapshot()
        if seen == self._seen:
            return
        if m.failures > seen[2]:
            log.warning("REGISTER %s: %s", m.aor, m.last_reason)
        self._changed.set()
        self._changed = asyncio.Event()
        self.ua._emit(RegistrationChanged(self, m.state))
