"""A minimal SIP user agent (RFC 3261 §8, §13, §15, §10): register, call, answer, hang up.

:class:`UserAgent` runs the sans-I/O :class:`~softphone.sip.core.SipCore` on a
:class:`~softphone.sip.transport.TransportLayer` and adds what a UA core does above
transactions: dialogs (``softphone.sip.dialog``), SDP offer/answer (``softphone.codecs``,
OPUS-PCMA-PCMU by default, RTP ports from 20000-22000), digest retries on 401/407
(``softphone.sip.auth``), registration refresh before expiry, OPTIONS answered with 200, and a
UAS mode that answers every INVITE (optionally after a 180) for lab tests.

Call control only: the UA reports the negotiated media (:class:`~softphone.codecs.offer_answer.
Negotiated`) and holds the bound RTP/RTCP port pair for the call; sending RTP is the media
layer's job. The edge (B2BUA) and the apps build on this class.

Run as a lab UAS: ``python -m softphone.sip.ua --listen udp:127.0.0.1:5070 --ring``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import itertools
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from softphone.codecs.offer_answer import (
    Negotiated,
    NoCommonCodec,
    OfferAnswerError,
    answer_offer,
    build_offer,
    process_answer,
)
from softphone.codecs.registry import DEFAULT_ORDER, Codec
from softphone.codecs.sdp import SdpError, SessionDescription, parse_sdp
from softphone.sip.core import Address, SipCore, new_call_id, new_tag
from softphone.sip.dialog import Dialog, DialogError, DialogState, DialogStore, ack_and_bye
from softphone.sip.errors import SipError, SipParseError
from softphone.sip.events import (
    AckNotReceived,
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionTimeout,
    TransportFailure,
)
from softphone.sip.message import Headers, SipRequest, SipResponse
from softphone.sip.transaction import ClientTransaction, ServerTransaction
from softphone.sip.transport import ListenSpec, TransportLayer, sip_host
from softphone.sip.uri import NameAddr, SipUri

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"
ACCEPT = "application/sdp"
SUPPORTED = ""  # no extensions (100rel, timer, replaces) implemented yet
SDP = "application/sdp"


class UaError(SipError):
    """A UA operation that cannot be done (bad target, no transport, call in the wrong state)."""


class CallState(enum.Enum):
    CALLING = "calling"          # INVITE sent / received, no dialog yet
    RINGING = "ringing"          # early dialog (180/183)
    ESTABLISHED = "established"  # 2xx sent or received
    TERMINATED = "terminated"


class RegState(enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"
    UNREGISTERED = "unregistered"


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


class Call:
    """One call leg (our side of one INVITE dialog)."""

    def __init__(self, ua: UserAgent, *, call_id: str, direction: str, invite: SipRequest,
                 local_tag: str) -> None:
        self.ua = ua
        self.call_id = call_id
        self.direction = direction  # "outgoing" | "incoming"
        self.invite = invite
        self.local_tag = local_tag
        self.state = CallState.CALLING
        self.dialog: Dialog | None = None
        self.negotiated: Negotiated | None = None
        self.local_offer: SessionDescription | None = None
        self.remote_offer: SessionDescription | None = None
        self.status: int | None = None      # final status of the INVITE (or of the end)
        self.reason: str = ""
        self.end_reason: str = ""
        self.bye_status: int | None = None  # the final response to our BYE
        self.final_response: SipResponse | None = None  # to our INVITE
        self.peer: Address | None = None    # where an incoming INVITE came from
        self.rtp_port: int | None = None
        self.port_pair: Any = None          # softphone.media.ports.PortPair when allocated
        self.client_txn: ClientTransaction | None = None
        self.server_txn: ServerTransaction | None = None
        self.auth_tries = 0
        self.username: str | None = None
        self.password: str | None = None
        self._auth: Any = None
        self._hangup_requested = False
        self._changed = asyncio.Event()
        self._bye_txn: ClientTransaction | None = None
        self._answer_handle: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<Call {self.direction} {self.call_id} {self.state.value}>"

    @property
    def ended(self) -> bool:
        return self.state is CallState.TERMINATED

    def _set_state(self, state: CallState) -> None:
        if self.state is state or self.state is CallState.TERMINATED:
            return
        self.state = state
        self._changed.set()
        self._changed = asyncio.Event()
        if state is CallState.TERMINATED:
            self.ua._call_ended(self)
        self.ua._emit(CallStateChanged(self, state))

    async def wait_state(self, *states: CallState, timeout: float) -> CallState:
        """Wait until the call is in one of ``states`` (or terminated); return its state."""
        async with asyncio.timeout(timeout):
            while self.state not in states and self.state is not CallState.TERMINATED:
                await self._changed.wait()
        return self.state

    async def wait_answered(self, timeout: float = 32.0) -> bool:
        try:
            state = await self.wait_state(CallState.ESTABLISHED, timeout=timeout)
        except TimeoutError:
            return False
        return state is CallState.ESTABLISHED

    async def wait_ended(self, timeout: float = 32.0) -> None:
        await self.wait_state(CallState.TERMINATED, timeout=timeout)

    # -- control ------------------------------------------------------------------------

    def answer(self) -> None:
        """Accept an incoming call (200 with our SDP answer)."""
        self.ua._answer(self)
        self.ua._flush()

    def reject(self, status: int = 486, reason: str = "Busy Here") -> None:
        self.ua._reject(self, status, reason)
        self.ua._flush()

    def hangup(self) -> None:
        """BYE once established; CANCEL while an outgoing INVITE is pending; 603 to an
        unanswered incoming call."""
        self.ua._hangup(self)

    async def hangup_and_wait(self, timeout: float = 10.0) -> None:
        self.hangup()
        await self.wait_ended(timeout)


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
        self.username = username
        self.password = password
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
        self._auth: Any = None
        self._refresh: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()
        self._closing = False

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
        self.ua._send_register(self, expires=0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.state is not RegState.UNREGISTERED and self.state is not RegState.FAILED:
                    await self._changed.wait()


class UserAgent:
    """A SIP UA on one transport layer. See the module docstring."""

    def __init__(self, *, listen: Sequence[ListenSpec], user: str = "softphone",
                 domain: str | None = None, display_name: str | None = None, t1: float = 0.5,
                 user_agent: str = "softphone/0.1", codecs: Sequence[Codec] = DEFAULT_ORDER,
                 media_host: str | None = None, rtp_ports: tuple[int, int] = (20000, 22000),
                 auto_answer: bool = False, ring: bool = False, answer_delay: float = 0.0,
                 outbound_proxy: str | None = None, transport: TransportLayer | None = None,
                 username: str | None = None, password: str | None = None) -> None:
        self.listen = list(listen)
        self.user = user
        self.domain = domain
        self.display_name = display_name
        self.t1 = t1
        self.user_agent = user_agent
        self.codecs = tuple(codecs)
        self.media_host = media_host
        self.rtp_ports = rtp_ports
        self.auto_answer = auto_answer
        self.ring = ring
        self.answer_delay = answer_delay
        self.outbound_proxy = outbound_proxy
        self.username = username
        self.password = password
        self.transport = transport or TransportLayer()
        self.core: SipCore | None = None
        self.calls: dict[str, Call] = {}
        self.registrations: list[Registration] = []
        self.dialogs = DialogStore()
        self.on_event: Callable[[UaEvent], None] | None = None
        self.stats: dict[str, int] = {"calls_in": 0, "calls_out": 0, "answered": 0,
                                      "rejected_488": 0, "options": 0, "ended": 0}
        self._queue: asyncio.Queue[UaEvent] = asyncio.Queue()
        self._client: dict[ClientTransaction, Callable[[Any], None]] = {}
        self._ports: Any = None
        self._fallback_port = itertools.count()
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> dict[str, Address]:
        local = await self.transport.start(self.listen)
        self.core = SipCore(local=local, t1=self.t1, t2=max(4.0, self.t1),
                            user_agent=self.user_agent)
        self.transport.attach(self.core, self._on_core_event)
        first = next(iter(local.values()))
        if self.domain is None:
            self.domain = first.host
        if self.media_host is None:
            self.media_host = self.transport.listening[0].host
        try:
            from softphone.media.ports import PortAllocator
            self._ports = PortAllocator(self.rtp_ports[0], self.rtp_ports[1], self.media_host)
        except ImportError:  # pragma: no cover - the media package ships with us
            self._ports = None
        self._started = True
        return local

    async def close(self) -> None:
        """Hang up every call, drop registrations' timers, close the sockets."""
        for reg in self.registrations:
            if reg._refresh is not None:
                reg._refresh.cancel()
        for call in list(self.calls.values()):
            if not call.ended:
                with contextlib.suppress(Exception):
                    call.hangup()
        pending = [c for c in self.calls.values() if not c.ended]
        if pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    for c in pending:
                        await c.wait_ended(2.0)
        for call in list(self.calls.values()):
            self._release_media(call)
        await self.transport.close()
        if self._ports is not None:
            with contextlib.suppress(Exception):
                self._ports.close()

    async def __aenter__(self) -> UserAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def local(self) -> dict[str, Address]:
        return self.transport.local

    def _core(self) -> SipCore:
        if self.core is None:
            raise UaError("UserAgent not started")
        return self.core

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def events(self) -> AsyncIterator[UaEvent]:
        """Every UA event in order (incoming calls, call and registration state changes)."""
        async def gen() -> AsyncIterator[UaEvent]:
            while True:
                yield await self._queue.get()
        return gen()

    def _emit(self, event: UaEvent) -> None:
        self._queue.put_nowait(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("UA event callback failed")

    def contact_uri(self, transport: str = "udp", user: str | None = None) -> str:
        local = self.local.get(transport) or next(iter(self.local.values()))
        tp = "" if local.transport == "udp" else f";transport={local.transport}"
        return f"sip:{user or self.user}@{local.host}:{local.port}{tp}"

    def _from(self, user: str | None = None) -> NameAddr:
        uri = SipUri(scheme="sip", host=sip_host(self.domain or "127.0.0.1"),
                     user=user or self.user)
        return NameAddr(uri=uri, display=self.display_name)

    def _flush(self) -> None:
        self.transport.flush()

    # -- media ports ----------------------------------------------------------------------

    def _allocate_media(self, call: Call) -> int:
        if self._ports is not None:
            pair = self._ports.allocate(call.call_id)
            call.port_pair = pair
            call.rtp_port = int(pair.rtp)
            return int(pair.rtp)
        first, last = self.rtp_ports
        port = first + 2 * (next(self._fallback_port) % ((last - first) // 2))
        call.rtp_port = port
        return port

    def _release_media(self, call: Call) -> None:
        if call.port_pair is not None and self._ports is not None:
            with contextlib.suppress(Exception):
                self._ports.release(call.port_pair)
            call.port_pair = None

    def _call_ended(self, call: Call) -> None:
        self.stats["ended"] += 1
        self._release_media(call)
        if call._answer_handle is not None:
            call._answer_handle.cancel()
        if call.dialog is not None:
            call.dialog.terminate()
            self.dialogs.remove(call.dialog)
        # Keep the record a little for late retransmissions/lookups, then forget it.
        asyncio.get_running_loop().call_later(
            max(5.0, 64 * self.t1), lambda: self.calls.pop(call.call_id, None)
            if self.calls.get(call.call_id) is call else None)

    # -- destinations ---------------------------------------------------------------------

    def _dest_for(self, uri: str) -> Address:
        if self.outbound_proxy:
            return uri_destination(self.outbound_proxy)
        return uri_destination(uri)

    @staticmethod
    def _request_dest(request: SipRequest, transport: str) -> Address:
        """Next hop of a request we built: its first Route, else its Request-URI (§8.1.2)."""
        routes = request.headers.values("route")
        if routes:
            return uri_destination(NameAddr.parse(routes[0]).uri, default_transport=transport)
        return uri_destination(request.uri, default_transport=transport)

    def _dialog_dest(self, call: Call, dialog: Dialog) -> Address:
        if dialog.route_set:
            first = NameAddr.parse(dialog.route_set[0])
            dest = uri_destination(first.uri, default_transport=self._call_transport(call))
        else:
            dest = uri_destination(dialog.remote_target,
                                   default_transport=self._call_transport(call))
        peer = call.peer
        if (peer is not None and peer.reliable and dest.transport == peer.transport
                and dest.host == peer.host):
            # Requests towards the caller reuse the connection its INVITE came on: a phone
            # behind NAT, or sipp over TCP, does not listen on its Contact port (RFC 5626).
            return peer
        return dest

    def _call_transport(self, call: Call) -> str:
        if call.peer is not None:
            return call.peer.transport
        if call.client_txn is not None:
            return call.client_txn.peer.transport
        return "udp"

    # -- registration ---------------------------------------------------------------------

    async def register(self, registrar: str, *, aor: str | None = None,
                       username: str | None = None, password: str | None = None,
                       expires: int = 3600, refresh_ratio: float = 0.6,
                       wait: float | None = 10.0) -> Registration:
        """Register our Contact for ``aor`` at ``registrar`` (a SIP URI), digest if challenged.

        The binding is refreshed at ``refresh_ratio`` of the granted expiry (RFC 3261 §10.2.4
        leaves the margin to us; 60 % leaves room for a retransmitted REGISTER).
        """
        self._core()  # started?
        reg_uri = SipUri.parse(registrar)
        dest = uri_destination(reg_uri)
        user = username or self.username or self.user
        aor_text = aor or f"sip:{user}@{sip_host(reg_uri.host)}"
        request_uri = str(SipUri(scheme=reg_uri.scheme, host=reg_uri.host, port=reg_uri.port,
                                 params={k: v for k, v in reg_uri.params.items()
                                         if k == "transport"}))
        reg = Registration(self, aor=aor_text, registrar=dest, request_uri=request_uri,
                           contact=self.contact_uri(dest.transport, user=user),
                           username=user, password=password or self.password,
                           expires=expires, refresh_ratio=refresh_ratio)
        self.registrations.append(reg)
        self._send_register(reg)
        if wait:
            await reg.wait_registered(wait)
        return reg

    def _send_register(self, reg: Registration, *, expires: int | None = None,
                       retry_of: SipRequest | None = None,
                       challenge: SipResponse | None = None) -> None:
        """Send a REGISTER: new (CSeq + 1, signed with the last challenge if any) or the
        digest retry of ``retry_of`` answering ``challenge``."""
        core = self._core()
        exp = reg.expires if expires is None else expires
        if retry_of is not None and challenge is not None:
            request = self._digest(reg).authorize(retry_of, challenge)
            reg.cseq = request.cseq.number
        else:
            reg.cseq += 1
            h = Headers()
            aor = NameAddr.parse(reg.aor)
            aor.bracketed = True
            h.add("From", f"{aor};tag={reg.from_tag}")
            h.add("To", str(aor))
            h.add("Call-ID", reg.call_id)
            h.add("CSeq", f"{reg.cseq} REGISTER")
            h.add("Contact", f"<{reg.contact}>")
            h.add("Expires", str(exp))
            h.add("Allow", ALLOW)
            request = SipRequest("REGISTER", reg.request_uri, h)
            if reg._auth is not None:
                reg._auth.sign(request)  # refresh with the known nonce (nc + 1)
        if exp and reg.state is not RegState.REGISTERED:
            reg._set_state(RegState.REGISTERING)
        txn = core.send_request(request, reg.registrar, self._now())
        self._client[txn] = lambda ev: self._register_result(reg, txn, exp, ev)
        self._flush()

    @staticmethod
    def _digest(holder: Any) -> Any:
        from softphone.sip.auth import DigestClient

        if holder.username is None or holder.password is None:
            raise UaError("challenged but no credentials configured")
        if holder._auth is None:
            holder._auth = DigestClient(holder.username, holder.password)
        return holder._auth

    def _register_result(self, reg: Registration, txn: ClientTransaction, expires: int,
                         event: Any) -> None:
        if isinstance(event, ResponseReceived):
            resp = event.response
            if resp.status < 200:
                return
            reg.status = resp.status
            if resp.status in (401, 407) and reg.auth_tries < 2 and reg.password is not None:
                reg.auth_tries += 1
                try:
                    self._send_register(reg, expires=expires, retry_of=txn.request,
                                        challenge=resp)
                except SipError as exc:
                    log.warning("cannot answer the challenge: %s", exc)
                    reg._set_state(RegState.FAILED)
                return
            if resp.status == 423:  # Interval Too Brief: retry with Min-Expires
                me = resp.headers.get("min-expires")
                if me and me.strip().isdigit() and expires:
                    reg.expires = int(me.strip())
                    self._send_register(reg)
                    return
            if 200 <= resp.status < 300:
                reg.auth_tries = 0
                if expires == 0:
                    reg.granted = 0
                    reg._set_state(RegState.UNREGISTERED)
                    return
                granted = _parse_expires(resp, reg.contact, expires)
                reg.granted = granted
                reg.registered_count += 1
                reg._set_state(RegState.REGISTERED)
                if not reg._closing and granted > 0:
                    delay = max(1.0, granted * reg.refresh_ratio)
                    loop = asyncio.get_running_loop()
                    if reg._refresh is not None:
                        reg._refresh.cancel()
                    reg._refresh = loop.call_later(delay, self._refresh_registration, reg)
                return
            log.warning("REGISTER %s: %d %s", reg.aor, resp.status, resp.reason)
            reg._set_state(RegState.FAILED)
            if resp.status >= 500:
                self._retry_registration(reg, resp.headers.get("retry-after"))
        elif isinstance(event, TransactionTimeout | TransportFailure):
            reg.status = 408 if isinstance(event, TransactionTimeout) else 503
            reg._set_state(RegState.FAILED)
            self._retry_registration(reg, None)

    def _retry_registration(self, reg: Registration, retry_after: str | None) -> None:
        """After a timeout or a 5xx, try again later (Retry-After, else ``reg.retry_interval``);
        never after a 4xx: wrong credentials retried forever would lock the account out."""
        if reg._closing:
            return
        delay = reg.retry_interval
        if retry_after is not None:
            head = retry_after.split(";")[0].split("(")[0].strip()
            if head.isdigit():
                delay = max(1.0, float(head))
        if reg._refresh is not None:
            reg._refresh.cancel()
        reg._refresh = asyncio.get_running_loop().call_later(
            delay, self._refresh_registration, reg)

    def _refresh_registration(self, reg: Registration) -> None:
        reg._refresh = None
        if reg._closing:
            return
        try:
            self._send_register(reg)
        except SipError as exc:
            log.warning("registration refresh failed: %s", exc)
            reg._set_state(RegState.FAILED)

    # -- outgoing calls -------------------------------------------------------------------

    async def call(self, target: str, *, from_user: str | None = None,
                   username: str | None = None, password: str | None = None,
                   extra_headers: Iterable[tuple[str, str]] = ()) -> Call:
        """Send an INVITE with our SDP offer to ``target``; the returned call progresses
        by itself (``await call.wait_answered()``)."""
        self._core()  # started?
        target_uri = SipUri.parse(target)
        dest = self._dest_for(target)
        call_id = new_call_id()
        tag = new_tag()
        h = Headers()
        h.add("From", str(self._from(from_user).with_tag(tag)))
        h.add("To", str(NameAddr(uri=target_uri)))
        h.add("Call-ID", call_id)
        h.add("CSeq", "1 INVITE")
        h.add("Contact", f"<{self.contact_uri(dest.transport, user=from_user)}>")
        if self.outbound_proxy:
            h.add("Route", f"<{self.outbound_proxy};lr>")
        h.add("Allow", ALLOW)
        for name, value in extra_headers:
            h.add(name, value)
        invite = SipRequest("INVITE", str(target_uri), h)
        call = Call(self, call_id=call_id, direction="outgoing", invite=invite, local_tag=tag)
        call.username = username or self.username or from_user or self.user
        call.password = password or self.password
        port = self._allocate_media(call)
        assert self.media_host is not None
        offer = build_offer(address=self.media_host, port=port, order=self.codecs,
                            username=self.user)
        call.local_offer = offer
        invite.body = offer.to_bytes()
        invite.headers.add("Content-Type", SDP)
        self.calls[call_id] = call
        self.stats["calls_out"] += 1
        self._send_invite(call, invite, dest)
        return call

    def _send_invite(self, call: Call, invite: SipRequest, dest: Address) -> None:
        txn = self._core().send_request(invite, dest, self._now())
        call.client_txn = txn
        call.invite = txn.request
        self._client[txn] = lambda ev: self._invite_result(call, txn, ev)
        self._flush()

    def _invite_result(self, call: Call, txn: ClientTransaction, event: Any) -> None:
        core = self._core()
        now = self._now()
        if isinstance(event, TransactionTimeout | TransportFailure):
            if call.state in (CallState.CALLING, CallState.RINGING):
                call.status = 408 if isinstance(event, TransactionTimeout) else 503
                call.end_reason = "timeout" if call.status == 408 else "transport failure"
                call._set_state(CallState.TERMINATED)
            return
        if not isinstance(event, ResponseReceived):
            return
        resp = event.response
        request = txn.request
        status = resp.status
        if status < 200:
            upd = self.dialogs.uac_response(request, resp)
            if upd.dialog is not None and call.dialog is None:
                call.dialog = upd.dialog
            if status in (180, 183) or upd.dialog is not None:
                call._set_state(CallState.RINGING)
            return
        if status < 300:
            contact = self.contact_uri(txn.peer.transport)
            upd = self.dialogs.uac_response(request, resp, local_contact=f"<{contact}>")
            if upd.redundant_fork or call.ended or (call.state is CallState.ESTABLISHED
                                                    and upd.dialog is not call.dialog):
                if upd.dialog is not None and upd.dialog is not call.dialog:
                    self.dialogs.remove(upd.dialog)
                ack, bye = ack_and_bye(request, resp, local_contact=f"<{contact}>")
                dest = self._request_dest(bye, txn.peer.transport)
                core.send_ack_2xx(ack, dest, now)
                core.send_request(bye, dest, now)
                self._flush()
                return
            dialog = upd.dialog
            if dialog is None:
                return
            call.dialog = dialog
            ack = dialog.create_ack(request.cseq.number)
            core.send_ack_2xx(ack, self._dialog_dest(call, dialog), now)
            call.status = status
            call.reason = resp.reason
            call.final_response = resp
            try:
                if call.local_offer is None:
                    raise OfferAnswerError("no offer")
                call.negotiated = process_answer(call.local_offer, parse_sdp(resp.body))
            except (SdpError, OfferAnswerError) as exc:
                # §13.2.2.4 / RFC 3264: an unusable answer -> ACK, then end the session.
                log.warning("unusable SDP answer on %s: %s", call.call_id, exc)
                call.end_reason = f"bad answer: {exc}"
                self._send_bye(call, reason='SIP;cause=488;text="Bad SDP answer"')
                self._flush()
                return
            call._set_state(CallState.ESTABLISHED)
            if call._hangup_requested:
                self._send_bye(call)
            self._flush()
            return
        if status in (401, 407) and call.auth_tries < 2 and call.password is not None:
            call.auth_tries += 1
            try:
                invite = self._digest(call).authorize(request, resp)
            except SipError as exc:
                log.warning("cannot answer the challenge: %s", exc)
            else:
                self._send_invite(call, invite, txn.peer)
                return
        self.dialogs.uac_response(request, resp)
        call.status = status
        call.reason = resp.reason
        call.final_response = resp
        call.end_reason = f"{status} {resp.reason}"
        call._set_state(CallState.TERMINATED)

    def _send_bye(self, call: Call, reason: str | None = None) -> None:
        dialog = call.dialog
        if dialog is None or dialog.state is DialogState.TERMINATED:
            call._set_state(CallState.TERMINATED)
            return
        extra = [("Reason", reason)] if reason else []
        bye = dialog.create_request("BYE", extra=extra)
        txn = self._core().send_request(bye, self._dialog_dest(call, dialog), self._now())
        call._bye_txn = txn

        def done(ev: Any) -> None:
            if isinstance(ev, ResponseReceived):
                if ev.response.status < 200:
                    return
                call.bye_status = ev.response.status
            elif isinstance(ev, TransactionTimeout | TransportFailure):
                call.bye_status = 408 if isinstance(ev, TransactionTimeout) else 503
            else:
                return
            if call.end_reason == "":
                call.end_reason = "local hangup"
            call._set_state(CallState.TERMINATED)

        self._client[txn] = done

    def _hangup(self, call: Call) -> None:
        if call.ended:
            return
        core = self._core()
        call._hangup_requested = True
        if call.state is CallState.ESTABLISHED:
            self._send_bye(call)
        elif call.direction == "outgoing":
            txn = call.client_txn
            if txn is not None:
                try:
                    core.cancel(txn, self._now())  # held by the core until a 1xx (§9.1)
                except SipError:
                    pass  # a final response already came: its handler decides
                if call.state is CallState.CALLING:
                    # Nothing heard yet: the CANCEL waits for a 1xx that may never come, so
                    # the call ends for the owner now; a late 2xx is ACKed and BYEd.
                    call.status = 487
                    call.end_reason = "cancelled before any response"
                    call._set_state(CallState.TERMINATED)
        else:
            self._reject(call, 603, "Decline")
        self._flush()

    # -- incoming requests ----------------------------------------------------------------

    def _on_core_event(self, event: Any) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event.request, event.transaction, event.source)
        elif isinstance(event, ResponseReceived | TransactionTimeout | TransportFailure):
            txn = event.transaction
            handler = self._client.get(txn) if isinstance(txn, ClientTransaction) else None
            if handler is not None:
                handler(event)
            if isinstance(event, TransactionTimeout | TransportFailure):
                self._client.pop(txn, None)  # type: ignore[call-overload]
        elif isinstance(event, AckReceived):
            self._on_ack(event.request)
        elif isinstance(event, CancelReceived):
            self._on_cancel(event.request, event.invite_transaction)
        elif isinstance(event, AckNotReceived):
            call = self.calls.get(event.transaction.request.call_id)
            if call is not None and not call.ended:
                call.end_reason = "no ACK"
                self._send_bye(call)
        else:  # TransactionTerminated: forget the handler
            done = getattr(event, "transaction", None)
            if isinstance(done, ClientTransaction):
                self._client.pop(done, None)

    def _respond(self, txn: ServerTransaction, status: int, reason: str, *,
                 to_tag: str | None = None, body: bytes = b"", content_type: str | None = None,
                 extra: Iterable[tuple[str, str]] = ()) -> SipResponse:
        return self._core().respond(txn, status, reason, self._now(), to_tag=to_tag, body=body,
                                    content_type=content_type, extra=list(extra))

    def _on_request(self, req: SipRequest, txn: ServerTransaction, source: Address) -> None:
        try:
            method = req.method
            if method == "OPTIONS":
                self.stats["options"] += 1
                self._respond(txn, 200, "OK", to_tag=None if req.to.tag else new_tag(),
                              extra=[("Allow", ALLOW), ("Accept", ACCEPT),
                                     ("Supported", SUPPORTED),
                                     ("Accept-Encoding", "identity"),
                                     ("Accept-Language", "en")])
                return
            if req.to.tag:
                self._in_dialog(req, txn, source)
                return
            if method == "INVITE":
                self._incoming_invite(req, txn, source)
            elif method == "BYE":
                self._respond(txn, 481, "Call/Transaction Does Not Exist")
            else:
                self._respond(txn, 405, "Method Not Allowed", extra=[("Allow", ALLOW)])
        except (SipParseError, DialogError) as exc:
            status = getattr(exc, "status", 400)
            reason = getattr(exc, "reason", "Bad Request")
            with contextlib.suppress(SipError):
                self._respond(txn, status, reason)
        except Exception:
            # A bug of ours must not leave the peer retransmitting into silence.
            log.exception("request handling failed: %r", req)
            with contextlib.suppress(Exception):
                if not txn.final_sent:
                    self._respond(txn, 500, "Server Internal Error")

    def _in_dialog(self, req: SipRequest, txn: ServerTransaction, source: Address) -> None:
        dialog = self.dialogs.for_request(req)
        call = self.calls.get(req.call_id)
        if dialog is None or call is None:
            self._respond(txn, 481, "Call/Transaction Does Not Exist")
            return
        try:
            dialog.receive_request(req)
        except DialogError as exc:
            self._respond(txn, exc.status, exc.reason)
            return
        method = req.method
        if method == "BYE":
            self._respond(txn, 200, "OK")
            call.end_reason = "remote hangup"
            call._set_state(CallState.TERMINATED)
        elif method in ("INVITE", "UPDATE"):
            self._reoffer(call, dialog, req, txn)
        elif method == "INFO":
            self._respond(txn, 200, "OK")
        else:
            self._respond(txn, 405, "Method Not Allowed", extra=[("Allow", ALLOW)])

    def _reoffer(self, call: Call, dialog: Dialog, req: SipRequest,
                 txn: ServerTransaction) -> None:
        """A re-INVITE/UPDATE: answer the new offer on the same port (hold, resume...)."""
        contact = self.contact_uri(self._call_transport(call))
        if not req.body:
            self._respond(txn, 200, "OK", extra=[("Contact", f"<{contact}>")])
            return
        try:
            offer = parse_sdp(req.body)
            assert self.media_host is not None and call.rtp_port is not None
            previous = call.negotiated.local_sdp if call.negotiated is not None else None
            neg = answer_offer(offer, address=self.media_host, port=call.rtp_port,
                               order=self.codecs, previous=previous)
        except NoCommonCodec as exc:
            self._respond(txn, 488, "Not Acceptable Here", extra=[("Warning", exc.warning)])
            return
        except (SdpError, OfferAnswerError) as exc:
            self._respond(txn, 488, "Not Acceptable Here",
                          extra=[("Warning", f'399 {self.domain} "{exc}"')])
            return
        call.negotiated = neg
        resp = self._respond(txn, 200, "OK", body=neg.sdp, content_type=SDP,
                             extra=[("Contact", f"<{contact}>"), ("Allow", ALLOW)])
        dialog.response_sent(req, resp)

    def _incoming_invite(self, req: SipRequest, txn: ServerTransaction, source: Address) -> None:
        self.stats["calls_in"] += 1
        existing = self.calls.get(req.call_id)
        if existing is not None and not existing.ended:
            # A new INVITE (other branch) for a call we already handle: a loop or a merge.
            self._respond(txn, 482, "Loop Detected")
            return
        call = Call(self, call_id=req.call_id, direction="incoming", invite=req,
                    local_tag=new_tag())
        call.server_txn = txn
        call.peer = source
        self.calls[req.call_id] = call
        try:
            port = self._allocate_media(call)
        except Exception as exc:  # PortsExhausted: 503 + Retry-After, never a crash
            log.warning("no RTP port for %s: %s", req.call_id, exc)
            self._respond(txn, 503, "Service Unavailable", to_tag=call.local_tag,
                          extra=[("Retry-After", "5")])
            call.status = 503
            call._set_state(CallState.TERMINATED)
            return
        if req.body and (req.content_type or SDP) == SDP:
            try:
                offer = parse_sdp(req.body)
                call.remote_offer = offer
                assert self.media_host is not None
                call.negotiated = answer_offer(offer, address=self.media_host, port=port,
                                               order=self.codecs, username=self.user)
            except NoCommonCodec as exc:
                self.stats["rejected_488"] += 1
                self._respond(txn, 488, "Not Acceptable Here", to_tag=call.local_tag,
                              extra=[("Warning", exc.warning)])
                call.status = 488
                call.end_reason = "no common codec"
                call._set_state(CallState.TERMINATED)
                return
            except (SdpError, OfferAnswerError) as exc:
                self.stats["rejected_488"] += 1
                self._respond(txn, 488, "Not Acceptable Here", to_tag=call.local_tag,
                              extra=[("Warning", f'399 {sip_host(self.domain or "")} '
                                                 f'"Bad SDP: {str(exc)[:80]}"')])
                call.status = 488
                call._set_state(CallState.TERMINATED)
                return
        else:
            # Late offer (§13.2.1): we offer in the 200, the answer comes in the ACK.
            assert self.media_host is not None
            call.local_offer = build_offer(address=self.media_host, port=port,
                                           order=self.codecs, username=self.user)
        self._emit(IncomingCall(call))
        if self.ring:
            self._ringing(call)
        if self.auto_answer:
            if self.answer_delay > 0:
                call._answer_handle = asyncio.get_running_loop().call_later(
                    self.answer_delay, self._answer_later, call)
            else:
                self._answer(call)

    def _answer_later(self, call: Call) -> None:
        call._answer_handle = None
        if call.state in (CallState.CALLING, CallState.RINGING):
            self._answer(call)
            self._flush()

    def _ringing(self, call: Call) -> None:
        txn = call.server_txn
        if txn is None or txn.final_sent:
            return
        contact = self.contact_uri(self._call_transport(call))
        resp = self._respond(txn, 180, "Ringing", to_tag=call.local_tag,
                             extra=[("Contact", f"<{contact}>")])
        with contextlib.suppress(DialogError, SipParseError):
            dialog = Dialog.from_uas(call.invite, resp)
            call.dialog = dialog
            self.dialogs.add(dialog)
        call._set_state(CallState.RINGING)

    def _answer(self, call: Call) -> None:
        txn = call.server_txn
        if txn is None or txn.final_sent or call.ended:
            return
        body = call.negotiated.sdp if call.negotiated is not None else (
            call.local_offer.to_bytes() if call.local_offer is not None else b"")
        contact = self.contact_uri(self._call_transport(call))
        resp = self._respond(txn, 200, "OK", to_tag=call.local_tag, body=body,
                             content_type=SDP if body else None,
                             extra=[("Contact", f"<{contact}>"), ("Allow", ALLOW),
                                    ("Supported", SUPPORTED)])
        if call.dialog is None:
            dialog = Dialog.from_uas(call.invite, resp)
            call.dialog = dialog
            self.dialogs.add(dialog)
        else:
            call.dialog.response_sent(call.invite, resp)
        call.status = 200
        self.stats["answered"] += 1
        call._set_state(CallState.ESTABLISHED)
        if call._hangup_requested:
            self._send_bye(call)

    def _reject(self, call: Call, status: int, reason: str) -> None:
        txn = call.server_txn
        if txn is not None and not txn.final_sent:
            self._respond(txn, status, reason, to_tag=call.local_tag)
        call.status = status
        call.end_reason = f"rejected {status}"
        call._set_state(CallState.TERMINATED)

    def _on_ack(self, ack: SipRequest) -> None:
        call = self.calls.get(ack.call_id)
        if call is None or call.direction != "incoming":
            return
        if call.negotiated is None and call.local_offer is not None and ack.body:
            try:
                call.negotiated = process_answer(call.local_offer, parse_sdp(ack.body))
            except (SdpError, OfferAnswerError) as exc:
                call.end_reason = f"bad answer in ACK: {exc}"
                self._send_bye(call)
                self._flush()

    def _on_cancel(self, cancel: SipRequest, invite_txn: ServerTransaction) -> None:
        call = self.calls.get(cancel.call_id)
        if not invite_txn.final_sent:
            self._core().respond(invite_txn, 487, "Request Terminated", self._now(),
                                 to_tag=call.local_tag if call is not None else new_tag())
        if call is not None:
            call.status = 487
            call.end_reason = "cancelled"
            call._set_state(CallState.TERMINATED)

    # -- OPTIONS ping -----------------------------------------------------------------------

    async def options(self, target: str, timeout: float = 10.0) -> SipResponse | None:
        """Send OPTIONS to ``target``; the final response, or None on timeout."""
        core = self._core()
        dest = uri_destination(target)
        h = Headers()
        h.add("From", str(self._from().with_tag(new_tag())))
        h.add("To", f"<{target}>")
        h.add("Call-ID", new_call_id())
        h.add("CSeq", "1 OPTIONS")
        h.add("Accept", ACCEPT)
        fut: asyncio.Future[SipResponse | None] = asyncio.get_running_loop().create_future()

        def done(ev: Any) -> None:
            if fut.done():
                return
            if isinstance(ev, ResponseReceived):
                if ev.response.status >= 200:
                    fut.set_result(ev.response)
            else:
                fut.set_result(None)

        txn = core.send_request(SipRequest("OPTIONS", target, h), dest, self._now())
        self._client[txn] = done
        self._flush()
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return None


# -- the lab UAS ----------------------------------------------------------------------------


def parse_listen(text: str, ssl_context: Any = None) -> ListenSpec:
    """``udp:127.0.0.1:5060`` / ``tcp:[::1]:5060`` -> :class:`ListenSpec`."""
    transport, _, hostport = text.partition(":")
    if not hostport:
        raise UaError(f"listen spec must look like udp:127.0.0.1:5060, got {text!r}")
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]:")
    else:
        host, _, port = hostport.rpartition(":")
    if not port.isdigit():
        raise UaError(f"bad port in listen spec {text!r}")
    return ListenSpec(transport.lower(), host, int(port), ssl=ssl_context)


async def run_uas(listen: Sequence[ListenSpec], *, ring: bool, answer_delay: float,
                  duration: float | None, user: str = "uas") -> int:
    ua = UserAgent(listen=listen, user=user, auto_answer=True, ring=ring,
                   answer_delay=answer_delay)
    local = await ua.start()
    print("listening " + " ".join(f"{a.transport}:{a.host}:{a.port}" for a in local.values()),
          flush=True)
    try:
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
    finally:
        print(f"stats {ua.stats}", flush=True)
        await ua.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m softphone.sip.ua",
                                description="auto-answering SIP UAS for lab tests")
    p.add_argument("--listen", action="append", default=[],
                   help="transport:host:port, repeatable (default udp:127.0.0.1:5070)")
    p.add_argument("--ring", action="store_true", help="send 180 Ringing before answering")
    p.add_argument("--answer-delay", type=float, default=0.0)
    p.add_argument("--duration", type=float, default=None, help="exit after N seconds")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        specs = [parse_listen(x) for x in (args.listen or ["udp:127.0.0.1:5070"])]
        return asyncio.run(run_uas(specs, ring=args.ring, answer_delay=args.answer_delay,
                                   duration=args.duration))
    except SipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "Call", "CallState", "CallStateChanged", "IncomingCall", "RegState", "Registration",
    "RegistrationChanged", "UaError", "UaEvent", "UserAgent", "parse_listen",
    "uri_destination",
]
