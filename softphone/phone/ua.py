"""The phone: a SIP user agent (RFC 3261 §8, §10, §13, §15) on its own transport layer.

:class:`UserAgent` runs the sans-I/O :class:`~softphone.sip.core.SipCore` on a
:class:`~softphone.sip.transport.TransportLayer` and composes what a UA core does above
transactions: registrations (:mod:`softphone.phone.registration`, refreshed before expiry,
digest on 401/407), calls (:mod:`softphone.phone.call`: dialogs, SDP offer/answer, OPUS-PCMA-PCMU
by default), the RTP ports its calls hold (:mod:`softphone.phone.media`, 20000-22000), OPTIONS
answered with 200, and a UAS mode that answers every INVITE (optionally after a 180) for lab
tests. The core's events are typed (:data:`softphone.sip.events.Event`) and matched by class.

Call control only: the UA reports the negotiated media (:class:`~softphone.codecs.offer_answer.
Negotiated`) and holds the bound RTP/RTCP port pair for the call; sending RTP is the app's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from softphone.codecs.registry import DEFAULT_ORDER, Codec
from softphone.phone.account import (
    ACCEPT,
    ALLOW,
    SUPPORTED,
    UaError,
    from_address,
    uri_destination,
)
from softphone.phone.call import Call, CallEngine
from softphone.phone.events import TransactionOutcome, UaEvent
from softphone.phone.media import CallPorts
from softphone.phone.registration import Registration
from softphone.sip.core import Address, SipCore, new_call_id, new_tag
from softphone.sip.dialog import DialogError, DialogStore
from softphone.sip.errors import SipError, SipParseError
from softphone.sip.events import (
    AckNotReceived,
    AckReceived,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailure,
)
from softphone.sip.message import Headers, SipRequest, SipResponse
from softphone.sip.transaction import ClientTransaction, ServerTransaction
from softphone.sip.transport import ListenSpec, TransportLayer, sip_host
from softphone.sip.uri import NameAddr, SipUri

log = logging.getLogger(__name__)


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
        self._client: dict[ClientTransaction, Callable[[TransactionOutcome], None]] = {}
        self._ports: CallPorts | None = None
        self.engine = CallEngine(self)
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
        self._ports = CallPorts(self.rtp_ports[0], self.rtp_ports[1], self.media_host)
        self._started = True
        return local

    async def close(self) -> None:
        """Hang up every call, drop registrations' timers, close the sockets."""
        for reg in self.registrations:
            reg.stop()
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
        if self._ports is not None:
            for call in list(self.calls.values()):
                self._ports.release(call)
        await self.transport.close()
        if self._ports is not None:
            self._ports.close()

    async def __aenter__(self) -> UserAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def local(self) -> dict[str, Address]:
        return self.transport.local

    @property
    def ports(self) -> CallPorts:
        """The RTP/RTCP port pairs of our calls (bound at start)."""
        if self._ports is None:
            raise UaError("UserAgent not started")
        return self._ports

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
        return from_address(self.domain, user or self.user, self.display_name)

    def _flush(self) -> None:
        self.transport.flush()

    # -- destinations ---------------------------------------------------------------------

    def _dest_for(self, uri: str) -> Address:
        if self.outbound_proxy:
            return uri_destination(self.outbound_proxy)
        return uri_destination(uri)

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
        reg.start()
        if wait:
            await reg.wait_registered(wait)
        return reg

    # -- calls ----------------------------------------------------------------------------

    async def call(self, target: str, *, from_user: str | None = None,
                   username: str | None = None, password: str | None = None,
                   extra_headers: Iterable[tuple[str, str]] = ()) -> Call:
        """Send an INVITE with our SDP offer to ``target``; the returned call progresses
        by itself (``await call.wait_answered()``)."""
        return await self.engine.call(target, from_user=from_user, username=username,
                                      password=password, extra_headers=extra_headers)

    # -- incoming requests ----------------------------------------------------------------

    def _on_core_event(self, event: Event) -> None:
        match event:
            case RequestReceived(request=request, transaction=txn, source=source):
                self._on_request(request, txn, source)
            case ResponseReceived(transaction=txn):
                handler = self._client.get(txn)
                if handler is not None:
                    handler(event)
            case TransactionTimeout(transaction=ClientTransaction() as txn) | \
                    TransportFailure(transaction=ClientTransaction() as txn):
                handler = self._client.pop(txn, None)
                if handler is not None:
                    handler(event)
            case TransactionTimeout() | TransportFailure():
                pass  # a server transaction of ours: the core already gave up on it
            case AckReceived(request=ack):
                self.engine._on_ack(ack)
            case CancelReceived(request=cancel, invite_transaction=invite_txn):
                self.engine._on_cancel(cancel, invite_txn)
            case AckNotReceived(transaction=txn):
                call = self.calls.get(txn.request.call_id)
                if call is not None and not call.ended:
                    call.end_reason = "no ACK"
                    self.engine._send_bye(call)
            case TransactionTerminated(transaction=ClientTransaction() as txn):
                self._client.pop(txn, None)  # forget the handler
            case TransactionTerminated():
                pass

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
                self.engine._in_dialog(req, txn, source)
                return
            if method == "INVITE":
                self.engine._incoming_invite(req, txn, source)
            elif method == "BYE":
                self._respond(txn, 481, "Call/Transaction Does Not Exist")
            else:
                self._respond(txn, 405, "Method Not Allowed", extra=[("Allow", ALLOW)])
        except (SipParseError, DialogError) as exc:
            with contextlib.suppress(SipError):
                self._respond(txn, exc.status, exc.reason)
        except Exception:
            # A bug of ours must not leave the peer retransmitting into silence.
            log.exception("request handling failed: %r", req)
            with contextlib.suppress(Exception):
                if not txn.final_sent:
                    self._respond(txn, 500, "Server Internal Error")

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

        def done(ev: TransactionOutcome) -> None:
            if fut.done():
                return
            match ev:
                case ResponseReceived(response=response):
                    if response.status >= 200:
                        fut.set_result(response)
                case TransactionTimeout() | TransportFailure():
                    fut.set_result(None)

        txn = core.send_request(SipRequest("OPTIONS", target, h), dest, self._now())
        self._client[txn] = done
        self._flush()
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return None

