"""The sans-I/O SIP endpoint core: one per UA or B2BUA (h11/aioquic style).

It owns the transaction layer (RFC 3261 §17, RFC 6026) and the UA-core duties that ride on
it: ACK for 2xx outside the INVITE transaction (§13.2.2.4, §13.3.1.4), CANCEL (§9), the 100
Trying of INVITE server transactions, response routing (§18.2.2, RFC 3581 rport/received)
and 400s for requests that do not parse. Dialogs (``softphone.sip.dialog``) and digest auth
(``softphone.sip.auth``) are pure helpers the TU uses beside it.

No sockets, no clock: the asyncio adapters (``softphone.sip.transport``) feed it.

Why our own: the Python SIP stacks we could use (the pjsua2 bindings, sippy's B2BUA core,
aiosip) each own their sockets, threads or event loop and timers, so none can be driven by a
fake clock in tests or shared by UDP, TCP, TLS and WebSocket adapters; and the policy guard
must see every transaction. The transaction layer is small enough to get exactly right here.

Driving it (the contract the transport and the UA are written against)::

    core = SipCore(local={"udp": Address("udp", "192.0.2.10", 5060)}, t1=0.5, t2=4.0, t4=5.0)

    # network side
    core.receive(data: bytes, source: Address, now: float) -> None
    core.handle_timer(now: float) -> None        # call when get_timer() is due
    core.get_timer() -> float | None             # the earliest deadline (absolute, same clock)
    core.datagrams_to_send(now) -> list[tuple[bytes, Address]]   # every transport
    core.transport_failed(dest: Address, now, reason="") -> None  # §17.1.4 / §18.4

    # TU side
    core.next_event() -> Event | None            # see softphone.sip.events
    core.send_request(request, dest, now) -> ClientTransaction   # adds Via (fresh branch, rport)
    core.cancel(invite_txn, now) -> ClientTransaction            # held until a 1xx (§9.1)
    core.send_response(server_txn, response, now) -> None
    core.respond(server_txn, status, reason, now, *, to_tag=None, ...) -> SipResponse
    core.send_ack_2xx(ack, dest, now) -> None    # remembered: re-sent on 2xx retransmissions
    core.send_stateless(message, dest, now) -> None
    core.stats: collections.Counter[str]         # counted discards: "parse_errors", ...

After any call, drain ``next_event()`` and ``datagrams_to_send()`` and re-arm the timer with
``get_timer()``. Every ``now`` is a monotonic time in seconds; the core only compares and adds.
``respond`` without ``to_tag`` uses ``server_txn.local_tag`` (reserved per transaction, also
used by the automatic 200 to a CANCEL); the TU should use it for the dialog it creates.

Constructor: ``SipCore(*, local: Mapping[str, Address], t1=0.5, t2=4.0, t4=5.0,
user_agent="softphone/0.1", timer_d=32.0, trying_delay=0.0)``; ``local`` maps each
transport we use ("udp", "tcp", "tls", "ws", "wss") to the address put in our Via.

Event flow: a new request -> ``RequestReceived`` (INVITE: 100 Trying already sent, see
``trying_delay``); its retransmissions are absorbed (the last response is resent); a copy of
a pending out-of-dialog request arriving by another path is merged with 482 (§8.2.2.2);
ACK to a 2xx -> ``AckReceived``;
CANCEL -> 200 to the CANCEL and ``CancelReceived`` (the TU answers 487 to the INVITE); a
response -> ``ResponseReceived`` once (retransmissions absorbed; a retransmitted 2xx is
re-ACKed by the core with the ACK the TU sent); timer B/F/H -> ``TransactionTimeout``;
an unacknowledged 2xx -> ``AckNotReceived``; end of a transaction -> ``TransactionTerminated``.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections import Counter, deque
from collections.abc import Iterable, Mapping

from softphone.sip.errors import SipError, SipParseError
from softphone.sip.events import (
    AckReceived,
    CancelReceived,
    Event,
    RequestReceived,
    TransactionTerminated,
    TransportFailure,
)
from softphone.sip.message import (
    COMPACT,
    Headers,
    SipRequest,
    SipResponse,
    Via,
    make_response,
    parse_message,
)
from softphone.sip.timers import TRANSPORTS, TimerConfig
from softphone.sip.transaction import (
    MAGIC_COOKIE,
    Address,
    ClientTransaction,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    Transaction,
    TransactionStateError,
    TxnState,
    to_tag,
)

__all__ = ["Address", "SipCore", "TransactionStateError", "new_branch", "new_tag",
           "new_call_id", "response_destination"]

_STREAM_FRAMED = frozenset({"tcp", "tls"})  # WebSocket frames carry whole messages


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie and 64 random bits (§8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    """A From/To tag with 64 random bits (§19.3 asks for at least 32)."""
    return secrets.token_hex(8)


def new_call_id(host: str = "") -> str:
    return secrets.token_hex(12) + (f"@{host}" if host else "")


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


def response_destination(via: Via, source: Address) -> Address:
    """Where a response to a request with top ``via`` from ``source`` goes (§18.2.2, RFC 3581).

    Streams reuse the connection the request came on. Datagrams go to ``maddr`` if present,
    else to ``received`` (the source address) at the ``rport`` port if the client asked for
    it, else at the sent-by port (5060 by default).
    """
    if source.reliable:
        return source
    maddr = via.params.get("maddr")
    if maddr:
        return Address(source.transport, _strip_brackets(maddr), via.port or 5060)
    host = via.params.get("received") or _strip_brackets(via.host)
    rport = via.params.get("rport")
    if rport and rport.isdigit():
        port = int(rport)
    else:
        port = via.port or 5060
    return Address(source.transport, host, port)


def _server_key(request: SipRequest, via: Via, method: str) -> tuple[str, ...]:
    """§17.2.3 matching key; ``method`` is the method of the transaction looked for.

    With the magic cookie: branch + sent-by + method. Without (RFC 2543 peers): Request-URI,
    From tag, Call-ID, CSeq number, the top Via and the method; the To tag is checked
    separately because an ACK carries the tag of our response.
    """
    branch = via.branch or ""
    sent_by = f"{via.host}:{via.port or ''}"
    if branch.startswith(MAGIC_COOKIE):
        return (branch, sent_by, method)
    from_tag = request.from_.tag or ""
    plain_via = Via(via.transport, via.host, via.port,
                    {k: v for k, v in via.params.items() if k not in ("received", "rport")})
    return ("rfc2543:" + branch, request.uri, from_tag, request.call_id,
            str(request.cseq.number), str(plain_via), method)


# the methods counted by name in ``SipCore.requests_in`` (RFC 3261 and its extensions)
COUNTED_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO",
                             "UPDATE", "PRACK", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE",
                             "PUBLISH"})


class SipCore:
    """Transactions and UA-core message handling for one endpoint; see the module docstring."""

    def __init__(self, *, local: Mapping[str, Address], t1: float = 0.5, t2: float = 4.0,
                 t4: float = 5.0, user_agent: str = "softphone/0.1",
                 timer_d: float = 32.0, trying_delay: float | None = 0.0) -> None:
        for name, addr in local.items():
            if name not in TRANSPORTS or addr.transport != name:
                raise SipError(f"local address for {name!r} must be an Address of that "
                               f"transport ({sorted(TRANSPORTS)}), got {addr!r}")
        self.local = dict(local)
        self.config = TimerConfig(t1=t1, t2=t2, t4=t4, timer_d_unreliable=timer_d)
        self.user_agent = user_agent
        #: When an INVITE server transaction sends 100 Trying by itself (§17.2.1): at once
        #: (0, the default: the caller stops retransmitting sooner), after a delay if the TU
        #: has not answered by then (0.2 is the RFC's 200 ms), or never (None).
        self.trying_delay = trying_delay
        self.stats: Counter[str] = Counter()
        # what an operator graphs: requests received by method, responses by direction and
        # class ("in", "2xx"); read at scrape time (softphone.edge.metrics)
        self.requests_in: Counter[str] = Counter()
        self.responses: Counter[tuple[str, str]] = Counter()
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Address]] = []
        self._heap: list[tuple[float, int, Transaction, str]] = []
        self._seq = itertools.count()
        self._clients: dict[tuple[str, ...], ClientTransaction] = {}
        self._servers: dict[tuple[str, ...], ServerTransaction] = {}
        # INVITE client transactions by (Call-ID, CSeq number): where a 2xx ACK is remembered.
        self._invites_out: dict[tuple[str, int], InviteClientTransaction] = {}
        # INVITE server transactions that sent a 2xx, by (Call-ID, From tag, CSeq number):
        # how an ACK for a 2xx (new branch) finds the retransmissions to stop.
        self._accepted: dict[tuple[str, str, int], InviteServerTransaction] = {}
        # Out-of-dialog server transactions by (From tag, Call-ID, CSeq number, method): the
        # same request arriving again on another path (a forking proxy) is merged (§8.2.2.2).
        self._merge: dict[tuple[str, str, int, str], ServerTransaction] = {}

    # ------------------------------------------------------------------ host interface
    def transmit(self, data: bytes, dest: Address) -> None:
        self._out.append((data, dest))

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def arm(self, txn: Transaction, name: str, deadline: float) -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), txn, name))

    def terminated(self, txn: Transaction) -> None:
        if isinstance(txn, ClientTransaction):
            if self._clients.get(txn.key) is txn:
                del self._clients[txn.key]
            if isinstance(txn, InviteClientTransaction):
                k = (txn.request.call_id, txn.request.cseq.number)
                if self._invites_out.get(k) is txn:
                    del self._invites_out[k]
        elif isinstance(txn, ServerTransaction):
            if self._servers.get(txn.key) is txn:
                del self._servers[txn.key]
            if txn.merge_key is not None and self._merge.get(txn.merge_key) is txn:
                del self._merge[txn.merge_key]
            if isinstance(txn, InviteServerTransaction) and txn.accepted_key is not None:
                if self._accepted.get(txn.accepted_key) is txn:
                    del self._accepted[txn.accepted_key]
        self._events.append(TransactionTerminated(txn))

    # ------------------------------------------------------------------ output side
    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, txn, name = heap[0]
            if txn.timers.get(name) == deadline:
                return deadline
            heapq.heappop(heap)  # cancelled or superseded
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``, in deadline order.

        A retransmission timer that fires late (the event loop stalled) sends once and counts
        its next interval from ``now``: no burst of overdue copies. Timeouts keep their
        absolute deadlines.
        """
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, txn, name = heapq.heappop(heap)
            if txn.timers.get(name) != deadline:
                continue
            del txn.timers[name]
            txn.on_timer(name, now)

    @property
    def transactions(self) -> list[Transaction]:
        """Live transactions (for diagnostics and tests)."""
        return [*self._clients.values(), *self._servers.values()]

    # ------------------------------------------------------------------ network input
    def receive(self, data: bytes, source: Address, now: float) -> None:
        """One whole message (a datagram, a framed stream message or a WebSocket message)."""
        self.stats["received"] += 1
        if not data.strip(b"\r\n \t"):
            self.stats["keepalives"] += 1
            return
        try:
            msg = parse_message(data, stream=source.transport in _STREAM_FRAMED)
        except SipParseError as err:
            self.stats["parse_errors"] += 1
            self._reject_unparsed(data, err, source)
            return
        if isinstance(msg, SipResponse):
            self.responses["in", f"{msg.status // 100}xx"] += 1
            try:
                self._receive_response(msg, now)
            except SipParseError:
                self.stats["parse_errors"] += 1
            return
        # any other token is "other": a scanner's made-up methods must not grow the counter
        self.requests_in[msg.method if msg.method in COUNTED_METHODS else "other"] += 1
        try:
            via = self._stamp_via(msg, source)
            self._receive_request(msg, via, source, now)
        except SipParseError as err:
            self.stats["parse_errors"] += 1
            self._reject_unparsed(data, err, source)

    def _stamp_via(self, request: SipRequest, source: Address) -> Via:
        """Add received/rport to the top Via (§18.2.1, RFC 3581 §4)."""
        via = request.top_via
        changed = False
        if "rport" in via.params:
            via.params["rport"] = str(source.port)
            via.params["received"] = source.host
            changed = True
        elif _strip_brackets(via.host) != source.host:
            via.params["received"] = source.host
            changed = True
        if changed:
            request.headers.remove_first_value("via")
            request.headers.insert_first("Via", str(via))
        return via

    def _receive_request(self, req: SipRequest, via: Via, source: Address, now: float) -> None:
        method = req.method
        if method == "ACK":
            self._receive_ack(req, via, source, now)
            return
        key = _server_key(req, via, method)
        txn = self._servers.get(key)
        if txn is not None:
            self.stats["retransmissions_absorbed"] += 1
            txn.receive_request(req, now)
            return
        dest = response_destination(via, source)
        if method == "CANCEL":
            self._receive_cancel(req, via, source, dest, key, now)
            return
        merge_key: tuple[str, str, int, str] | None = None
        if to_tag(req) is None:
            merge_key = (req.from_.tag or "", req.call_id, req.cseq.number, method)
            if merge_key in self._merge:
                self._reject_merged(req, source, dest, key, now)
                return
        if method == "INVITE":
            inv = InviteServerTransaction(self, req, source, dest, self.config, key)
            self._servers[key] = inv
            if merge_key is not None:
                inv.merge_key = merge_key
                self._merge[merge_key] = inv
            if self.trying_delay is not None:
                inv.arm_trying(self._decorate(make_response(req, 100, "Trying")), now,
                               self.trying_delay)
            self._events.append(RequestReceived(req, inv, source))
            return
        nin = NonInviteServerTransaction(self, req, source, dest, self.config, key)
        self._servers[key] = nin
        if merge_key is not None:
            nin.merge_key = merge_key
            self._merge[merge_key] = nin
        self._events.append(RequestReceived(req, nin, source))

    def _reject_merged(self, req: SipRequest, source: Address, dest: Address,
                       key: tuple[str, ...], now: float) -> None:
        """482 to a copy of a request we are already handling, reached by another path.

        It gets a transaction of its own so that its retransmissions (and, for an INVITE,
        its ACK) are absorbed; the TU never sees it.
        """
        self.stats["merged_requests"] += 1
        txn: ServerTransaction
        if req.method == "INVITE":
            txn = InviteServerTransaction(self, req, source, dest, self.config, key)
        else:
            txn = NonInviteServerTransaction(self, req, source, dest, self.config, key)
        self._servers[key] = txn
        txn.send_response(self._decorate(make_response(
            req, 482, "Loop Detected", to_tag=txn.local_tag)), now)

    def _receive_ack(self, ack: SipRequest, via: Via, source: Address, now: float) -> None:
        txn = self._servers.get(_server_key(ack, via, "INVITE"))
        if isinstance(txn, InviteServerTransaction) and self._ack_matches(txn, ack, via):
            # The ACK of a non-2xx final (or a 2xx ACK from a peer reusing the INVITE branch,
            # which the Accepted state turns into AckReceived).
            txn.receive_ack(ack, source, now)
            return
        accepted = self._accepted.get((ack.call_id, ack.from_.tag or "", ack.cseq.number))
        if accepted is not None and accepted.last_response is not None \
                and to_tag(accepted.last_response) != to_tag(ack):
            accepted = None  # it acknowledges another fork's 2xx, not ours
        if accepted is not None:
            if accepted.ack_received:
                self.stats["acks_absorbed"] += 1  # re-sent for a 2xx retransmission
            else:
                accepted.receive_ack(ack, source, now)
            return
        # No transaction left (a late ACK, or the 2xx was sent long ago): the TU decides.
        self._events.append(AckReceived(ack, source, None))

    @staticmethod
    def _ack_matches(txn: InviteServerTransaction, ack: SipRequest, via: Via) -> bool:
        if (via.branch or "").startswith(MAGIC_COOKIE):
            return True
        # RFC 2543: the ACK's To tag is the one of the response it acknowledges (§17.2.3).
        sent = txn.last_response
        return sent is None or to_tag(sent) == to_tag(ack)

    def _receive_cancel(self, req: SipRequest, via: Via, source: Address, dest: Address,
                        key: tuple[str, ...], now: float) -> None:
        cancel_txn = NonInviteServerTransaction(self, req, source, dest, self.config, key)
        self._servers[key] = cancel_txn
        invite = self._servers.get(_server_key(req, via, "INVITE"))
        if not isinstance(invite, InviteServerTransaction):
            self.stats["cancel_unmatched"] += 1
            cancel_txn.send_response(self._decorate(make_response(
                req, 481, "Call/Transaction Does Not Exist", to_tag=cancel_txn.local_tag)), now)
            return
        # The 200 to the CANCEL carries the To tag of the INVITE's responses (§9.2): the one
        # already sent, else the tag the transaction reserved for the TU's responses.
        tag = to_tag(invite.last_response) if invite.last_response is not None else None
        tag = tag or invite.local_tag
        cancel_txn.send_response(self._decorate(make_response(req, 200, "OK", to_tag=tag)), now)
        if invite.state is TxnState.PROCEEDING and not invite.final_sent:
            invite.cancelled = True
            self._events.append(CancelReceived(req, invite))

    def _receive_response(self, resp: SipResponse, now: float) -> None:
        vias = resp.headers.values("via")
        if len(vias) != 1:
            # §18.1.2: more than one Via means it was not meant for us.
            self.stats["responses_misrouted"] += 1
            return
        via = Via.parse(vias[0])
        cseq = resp.cseq
        txn = self._clients.get((via.branch or "", cseq.method))
        if txn is None or not txn.started:
            self.stats["stray_responses"] += 1
            return
        txn.receive_response(resp, now)

    def _reject_unparsed(self, data: bytes, err: SipParseError, source: Address) -> None:
        """Answer a request we cannot parse, if enough of it survives (§8.2, §21.4.1)."""
        if not err.respondable:
            self.stats["dropped_unrespondable"] += 1
            return
        salvaged = _salvage_response_headers(data)
        if salvaged is None:
            self.stats["dropped_unrespondable"] += 1
            return
        to = salvaged.get("to") or ""
        if ";tag=" not in to.replace(" ", "").lower():
            salvaged.set("To", f"{to};tag={new_tag()}")  # §8.2.6.2
        resp = SipResponse(err.status, err.reason, salvaged)
        self._out.append((self._decorate(resp).to_bytes(), source))
        self.stats["rejected_400"] += 1

    # ------------------------------------------------------------------ TU input
    def add_local(self, addr: Address) -> None:
        """A transport that started after the core (the edge's WebSocket on its HTTP port)."""
        self.local.setdefault(addr.transport, addr)

    def _local_for(self, dest: Address) -> Address:
        local = self.local.get(dest.transport)
        if local is None:
            raise SipError(f"no local address configured for transport {dest.transport!r}")
        return local

    def _via_for(self, dest: Address, branch: str) -> str:
        local = self._local_for(dest)
        return f"SIP/2.0/{dest.transport.upper()} {local.host}:{local.port};branch={branch};rport"

    def _decorate(self, msg: SipResponse) -> SipResponse:
        if "server" not in msg.headers:
            msg.headers.add("Server", self.user_agent)
        return msg

    def _prepare(self, request: SipRequest, dest: Address, branch: str,
                 keep_via: bool) -> SipRequest:
        for name in ("from", "to", "call-id", "cseq"):
            if name not in request.headers:
                raise SipError(f"request lacks {name}: the TU must fill it")
        if request.cseq.method != request.method:
            raise SipError("CSeq method differs from the request method")
        via = self._via_for(dest, branch)
        if keep_via:
            headers = request.headers.copy()
            headers.insert_first("Via", via)
        else:
            headers = Headers([("Via", via)])
            for name, value in request.headers:
                if name.lower() not in ("via", "v"):
                    headers.add(name, value)
        if "max-forwards" not in headers:
            headers.add("Max-Forwards", "70")
        if "user-agent" not in headers:
            headers.add("User-Agent", self.user_agent)
        return SipRequest(request.method, request.uri, headers, request.body)

    def send_request(self, request: SipRequest, dest: Address, now: float, *,
                     keep_via: bool = False) -> ClientTransaction:
        """Start a client transaction for ``request`` towards ``dest``.

        The request is copied with one Via of ours (fresh branch, rport) on top; any Via it had
        is replaced unless ``keep_via`` (a proxy-like forward). Max-Forwards and User-Agent are
        added when missing. ACK and CANCEL are refused here: use ``send_ack_2xx`` and
        ``cancel`` (the ACK for a non-2xx is the client transaction's own job).
        """
        if request.method == "ACK":
            raise SipError("ACK is not a transaction: use send_ack_2xx()")
        if request.method == "CANCEL":
            raise SipError("CANCEL goes through cancel(invite_transaction)")
        branch = new_branch()
        req = self._prepare(request, dest, branch, keep_via)
        txn: ClientTransaction
        if req.method == "INVITE":
            inv = InviteClientTransaction(self, req, dest, self.config, branch)
            self._invites_out[(req.call_id, req.cseq.number)] = inv
            txn = inv
        else:
            txn = NonInviteClientTransaction(self, req, dest, self.config, branch)
        self._clients[txn.key] = txn
        txn.start(now)
        return txn

    def cancel(self, client_txn: ClientTransaction, now: float) -> ClientTransaction:
        """CANCEL a pending INVITE (§9.1): sent now if a 1xx came, else when one comes.

        Returns the CANCEL's own client transaction (same branch as the INVITE). A second call
        returns the same one. Raises :class:`TransactionStateError` once a final response
        has been received (nothing left to cancel).
        """
        if not isinstance(client_txn, InviteClientTransaction):
            raise TransactionStateError("only an INVITE client transaction can be cancelled")
        existing = client_txn.cancel_txn
        if existing is not None and existing.started:
            return existing  # one CANCEL per INVITE; it retransmits itself
        if not client_txn.can_cancel:
            raise TransactionStateError(
                f"INVITE already has a final response ({client_txn.state.value})")
        if existing is not None:
            return existing  # still waiting for a provisional response
        inv = client_txn.request
        h = Headers()
        h.add("Via", inv.headers.values("via")[0])
        h.add("Max-Forwards", "70")
        h.add("From", inv.headers.get("from") or "")
        h.add("To", inv.headers.get("to") or "")
        h.add("Call-ID", inv.call_id)
        h.add("CSeq", f"{inv.cseq.number} CANCEL")
        for route in inv.headers.get_all("route"):
            h.add("Route", route)
        h.add("User-Agent", self.user_agent)
        req = SipRequest("CANCEL", inv.uri, h)
        txn = NonInviteClientTransaction(self, req, client_txn.peer, self.config,
                                         client_txn.branch)
        self._clients[txn.key] = txn
        client_txn.cancel_txn = txn
        if client_txn.state is TxnState.PROCEEDING:
            txn.start(now)
            client_txn.cancel_sent(now)
        return txn

    def send_response(self, server_txn: ServerTransaction, response: SipResponse,
                      now: float) -> None:
        """Answer ``server_txn``; the transaction retransmits it as its state machine says."""
        if server_txn.terminated:
            raise TransactionStateError("transaction already terminated")
        self._decorate(response)
        server_txn.send_response(response, now)
        self.responses["out", f"{response.status // 100}xx"] += 1
        if (isinstance(server_txn, InviteServerTransaction)
                and 200 <= response.status < 300):
            req = server_txn.request
            key = (req.call_id, req.from_.tag or "", req.cseq.number)
            server_txn.accepted_key = key
            self._accepted[key] = server_txn

    def respond(self, server_txn: ServerTransaction, status: int, reason: str, now: float, *,
                to_tag: str | None = None, body: bytes = b"", content_type: str | None = None,
                extra: Iterable[tuple[str, str]] = ()) -> SipResponse:
        """Build a response to the transaction's request (§8.2.6) and send it.

        Without ``to_tag`` the transaction's ``local_tag`` is used, so that every response
        of one INVITE (and the 200 to its CANCEL) carries the same tag (§8.2.6.2, §9.2).
        """
        if to_tag is None:
            to_tag = server_txn.local_tag
        resp = make_response(server_txn.request, status, reason, to_tag=to_tag, body=body,
                             content_type=content_type, extra=extra)
        self.send_response(server_txn, resp, now)
        return resp

    def send_ack_2xx(self, ack: SipRequest, dest: Address, now: float) -> None:
        """Send the ACK for a 2xx (a transaction of its own, §13.2.2.4).

        A Via with a fresh branch is added. The core keeps the ACK while the INVITE client
        transaction is in Accepted and resends it for each retransmission of that 2xx.
        """
        if ack.method != "ACK":
            raise SipError("send_ack_2xx() sends ACK requests only")
        req = self._prepare(ack, dest, new_branch(), keep_via=False)
        wire = req.to_bytes()
        self._out.append((wire, dest))
        inv = self._invites_out.get((req.call_id, req.cseq.number))
        if inv is not None:
            inv.acks_2xx[to_tag(req) or ""] = (wire, dest)

    def send_stateless(self, message: SipRequest | SipResponse, dest: Address,
                       now: float) -> None:
        """Queue a message as is, outside any transaction (stateless replies, keep-alives)."""
        self._out.append((message.to_bytes(), dest))

    def transport_failed(self, dest: Address, now: float, reason: str = "") -> None:
        """The transport could not deliver to ``dest`` (ICMP error, connection refused/reset).

        Every transaction whose peer (client) or response destination (server) is ``dest``
        is terminated with a :class:`TransportFailure` event (§17.1.4, §17.2.4); the match
        ignores ``conn_id`` unless ``dest`` names one.
        """
        def same(a: Address) -> bool:
            return (a.transport == dest.transport and a.host == dest.host
                    and a.port == dest.port
                    and (dest.conn_id is None or a.conn_id == dest.conn_id))

        victims: list[Transaction] = [t for t in self._clients.values() if same(t.peer)]
        victims += [t for t in self._servers.values() if same(t.response_dest)]
        for t in victims:
            if not t.terminated:
                self._events.append(TransportFailure(t, dest, reason))
                t.abort()


def _salvage_response_headers(data: bytes) -> Headers | None:
    """The headers a 400 needs (Via, From, To, Call-ID, CSeq), read leniently from a request.

    Returns None when the message is a response or lacks one of them.
    """
    try:
        text = data.decode("utf-8", "replace")
    except Exception:  # pragma: no cover - decode with "replace" does not raise
        return None
    head = text.replace("\r\n", "\n").split("\n\n", 1)[0]
    lines = head.split("\n")
    if not lines or lines[0].startswith("SIP/"):
        return None
    found: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line or line[0] in " \t":
            continue
        name, colon, value = line.partition(":")
        if not colon:
            continue
        key = name.strip().lower()
        key = COMPACT.get(key, key)
        if key in ("via", "from", "to", "call-id", "cseq"):
            found.setdefault(key, []).append(value.strip())
    if any(k not in found for k in ("via", "from", "to", "call-id", "cseq")):
        return None
    h = Headers()
    for v in found["via"]:
        h.add("Via", v)
    h.add("From", found["from"][0])
    h.add("To", found["to"][0])
    h.add("Call-ID", found["call-id"][0])
    h.add("CSeq", found["cseq"][0])
    return h
