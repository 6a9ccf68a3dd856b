"""SIP transports (RFC 3261 §18): the asyncio adapters around the sans-I/O :class:`SipCore`.

:class:`TransportLayer` owns every socket of one SIP endpoint: UDP listeners, TCP and TLS
servers and client connections, and the WebSocket/WSS server of RFC 7118 (browsers). It feeds
each received datagram or framed message to ``core.receive(data, Address, now)``, then sends
what the core queued (``core.datagrams_to_send``), hands the core's events to the owner (UA or
B2BUA) and keeps exactly one asyncio timer armed on ``core.get_timer()``.

Rules it implements, so the core never has to know about sockets:

- connection reuse (§18.2.2, RFC 5923 spirit): a message addressed with a ``conn_id`` goes back
  on that connection; a stream destination without one reuses an open connection to the same
  peer or opens one (bounded connect timeout, queued until connected);
- CRLF keep-alive (RFC 5626 §4.4.1): a ``CRLFCRLF`` ping on a stream is answered with a ``CRLF``
  pong; bare CRLFs on UDP are ignored; outgoing connections may send pings themselves;
- rport/received (RFC 3581) is the core's job: the transport reports the true source address;
- WebSocket (RFC 7118): subprotocol ``sip`` required, one SIP message per WebSocket message,
  server side only (browsers connect to us); we use the ``websockets`` library for the framing;
- connections under control: at most ``max_connections`` (when full, the inbound connection
  silent longest that carries no registration and no call is closed and logged, never one the
  owner's ``protected()`` names; none of those: the newcomer is refused), at most
  ``max_per_address`` inbound from one IP address, a message must arrive whole (headers and
  body) within ``message_timeout`` of its first byte (slowloris), and an inbound TCP/TLS
  connection that is not protected and sent no message for ``idle_unprotected`` is closed.

Every bind address and port comes from the caller (IPv4 and IPv6); a bind failure raises
:class:`TransportError` naming the transport and the address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from softphone.sip.core import Address
from softphone.sip.errors import SipError, SipParseError
from softphone.sip.events import Event
from softphone.sip.message import StreamFramer

log = logging.getLogger(__name__)

STREAM_TRANSPORTS = ("tcp", "tls")
WS_TRANSPORTS = ("ws", "wss")
ALL_TRANSPORTS = ("udp", "tcp", "tls", "ws", "wss")
PING = b"\r\n\r\n"
PONG = b"\r\n"
MAX_DATAGRAM = 65535


class TransportError(SipError):
    """A transport that cannot be set up (bind failure, bad listen spec)."""


class CoreLike(Protocol):
    """What the transport layer needs from the SIP core (``softphone.sip.core.SipCore``)."""

    def receive(self, data: bytes, source: Address, now: float) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def next_event(self) -> Event | None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]: ...
    def transport_failed(self, dest: Address, now: float, reason: str = "") -> None: ...


@dataclass(frozen=True)
class ListenSpec:
    """One listening socket: ``transport`` in udp/tcp/tls/ws/wss, bind ``host`` and ``port``.

    ``port=0`` binds an ephemeral port (tests). ``ssl`` is the server context for tls/wss.
    ``advertise`` is the host to put in Via/Contact when the bind host is a wildcard.
    """

    transport: str
    host: str
    port: int
    ssl: ssl.SSLContext | None = None
    advertise: str | None = None

    def __post_init__(self) -> None:
        if self.transport not in ALL_TRANSPORTS:
            raise TransportError(f"unknown transport {self.transport!r}")
        if not 0 <= self.port < 65536:
            raise TransportError(f"{self.transport} port out of range: {self.port}")
        if self.transport in ("tls", "wss") and self.ssl is None:
            raise TransportError(f"{self.transport} on {self.host}:{self.port} needs an ssl context")


def default_listen_specs(host: str = "0.0.0.0", *, sip_port: int = 5060,
                         tls_port: int | None = None,
                         tls_context: ssl.SSLContext | None = None) -> list[ListenSpec]:
    """The provider's defaults: SIP on ``sip_port`` over UDP and TCP, TLS on ``tls_port``
    (the terms name 443 upstream; 5061 is the RFC 3261 default) when a context is given."""
    specs = [ListenSpec("udp", host, sip_port), ListenSpec("tcp", host, sip_port)]
    if tls_context is not None:
        specs.append(ListenSpec("tls", host, 5061 if tls_port is None else tls_port,
                                ssl=tls_context))
    return specs


@dataclass
class TransportStats:
    """Counters a test or a metrics endpoint can read."""

    datagrams_in: int = 0
    datagrams_out: int = 0
    stream_messages_in: int = 0
    stream_messages_out: int = 0
    keepalives_in: int = 0
    pongs_out: int = 0
    discarded: int = 0            # junk we could not hand to the core, core exceptions, no route
    core_errors: int = 0
    connections_opened: int = 0
    connections_accepted: int = 0
    connect_failures: int = 0
    framing_errors: int = 0
    send_errors: int = 0
    idle_closed: int = 0
    rate_limited: int = 0         # requests the flood guard refused
    evicted: int = 0              # closed to make room (table full)
    refused_full: int = 0         # new connections refused: the table is full of protected ones
    refused_per_address: int = 0  # new connections refused: too many from that address
    slow_closed: int = 0          # closed: a message did not arrive whole in time


def _is_response(data: bytes) -> bool:
    return data.lstrip(b"\r\n").startswith(b"SIP/")


def _unmatched(core: CoreLike) -> int:
    """Responses the core dropped so far: no transaction, misrouted, unparsable."""
    stats = getattr(core, "stats", None)
    if stats is None:
        return 0
    return int(stats.get("stray_responses", 0) + stats.get("responses_misrouted", 0)
               + stats.get("parse_errors", 0))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _family(host: str) -> int:
    h = host.strip("[]")
    return socket.AF_INET6 if ":" in h else socket.AF_INET


def sip_host(host: str) -> str:
    """A host as written in Via/Contact/URIs: IPv6 references in brackets (RFC 5118)."""
    h = host.strip("[]")
    return f"[{h}]" if ":" in h else h


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, layer: TransportLayer) -> None:
        self.layer = layer

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.layer._on_datagram(data, str(addr[0]), int(addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: the transaction will time out.
        log.debug("udp error: %s", exc)


@dataclass(eq=False)
class _Conn:
    conn_id: int
    transport: str
    host: str
    port: int
    outgoing: bool
    writer: asyncio.Transport | None = None
    ws: Any = None
    ws_queue: asyncio.Queue[bytes | None] | None = None
    framer: StreamFramer = field(default_factory=StreamFramer)
    pending: list[bytes] = field(default_factory=list)
    closed: bool = False
    last_rx: float = 0.0
    last_msg: float = 0.0                # the last whole SIP message (or the accept)
    partial_since: float | None = None   # first byte of a message still incomplete

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.transport, self.host.strip("[]"), self.port)


class _Stream(asyncio.Protocol):
    def __init__(self, layer: TransportLayer, transport_name: str,
                 conn: _Conn | None = None) -> None:
        self.layer = layer
        self.name = transport_name
        self.conn = conn

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        transport = cast(asyncio.Transport, base)
        if self.conn is None:  # accepted
            peer = transport.get_extra_info("peername")
            conn = self.layer._accept(self.name, str(peer[0]), int(peer[1]))
            if conn is None:
                transport.abort()
                return
            self.conn = conn
            self.layer.stats.connections_accepted += 1
        self.conn.writer = transport
        # What was queued while connecting goes first, in order.
        pending, self.conn.pending = self.conn.pending, []
        for data in pending:
            transport.write(data)
            self.layer.stats.stream_messages_out += 1

    def data_received(self, data: bytes) -> None:
        if self.conn is not None and not self.conn.closed:
            self.layer._on_stream_data(self.conn, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.layer._drop_conn(self.conn)


class TransportLayer:
    """The sockets of one SIP endpoint, wired to one :class:`SipCore`.

    Use: ``layer = TransportLayer(); await layer.start([ListenSpec("udp", "127.0.0.1", 5060),
    ...])``; build the core with ``local=layer.local``; ``layer.attach(core, on_event)``. After
    calling ``core.send_request``/``send_response`` the owner calls :meth:`flush`.
    """

    def __init__(self, *, connect_timeout: float = 5.0, client_ssl: ssl.SSLContext | None = None,
                 keepalive_interval: float | None = None, max_connections: int = 1024,
                 idle_timeout: float | None = 900.0,
                 admit: Callable[[bytes, str, float], bool] | None = None,
                 max_per_address: int | None = None, message_timeout: float | None = None,
                 idle_unprotected: float | None = None,
                 protected: Callable[[], set[int]] | None = None,
                 charge: Callable[[str, float], None] | None = None) -> None:
        self.connect_timeout = connect_timeout
        # A flood guard (e.g. RequestRateLimiter.allow_packet): a message it refuses is dropped
        # before the core parses it, so a scanner costs a dict lookup, not a transaction.
        self.admit = admit
        # ... and told of each response that matched no transaction (it costs the same)
        self.charge = charge
        # Inbound TCP/TLS connections silent this long are closed (a phone that keeps its
        # flow alive pings far more often, RFC 5626 §4.4.1); WebSocket has its own pings.
        self.idle_timeout = idle_timeout
        self.client_ssl = client_ssl
        self.keepalive_interval = keepalive_interval
        self.max_connections = max_connections
        # At most this many inbound connections from one IP address (None: no limit).
        self.max_per_address = max_per_address
        # A message (headers and body) must arrive whole this long after its first byte.
        self.message_timeout = message_timeout
        # The owner names the connections it needs (a live registration or call on them):
        # never evicted nor closed for silence. The others are closed after
        # ``idle_unprotected`` seconds without a whole message. Without ``protected``, every
        # inbound TCP/TLS connection silent ``idle_timeout`` is closed (the UA's behaviour).
        self.protected = protected
        self.idle_unprotected = idle_unprotected
        self.stats = TransportStats()
        self._per_host: dict[str, int] = {}
        self._refusal_logged: dict[str, float] = {}
        self.listening: list[Address] = []
        self.local: dict[str, Address] = {}
        self._core: CoreLike | None = None
        self._on_event: Callable[[Event], None] | None = None
        self._udp: list[tuple[asyncio.DatagramTransport, int]] = []
        self._servers: list[Any] = []
        self._conns: dict[int, _Conn] = {}
        self._by_peer: dict[tuple[str, str, int], _Conn] = {}
        self._ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flushing = False
        self._dirty = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bg: set[asyncio.Task[Any]] = set()

    # -- setup ------------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def start(self, listens: Sequence[ListenSpec]) -> dict[str, Address]:
        """Bind every listener; return the advertised address per transport (first wins)."""
        for spec in listens:
            try:
                addr = await self._listen(spec)
            except OSError as exc:
                await self.close()
                raise TransportError(
                    f"cannot listen on {spec.transport} {sip_host(spec.host)}:{spec.port}: "
                    f"{exc.strerror or exc}") from exc
            self.listening.append(addr)
            if spec.transport in STREAM_TRANSPORTS and not any(
                    a.transport in STREAM_TRANSPORTS for a in self.listening[:-1]):
                self._spawn(self._sweep())
            # Via/Contact want IPv6 in brackets (RFC 5118); the core copies this host verbatim.
            advertised = Address(spec.transport, sip_host(spec.advertise or addr.host), addr.port)
            self.local.setdefault(spec.transport, advertised)
        return dict(self.local)

    async def _listen(self, spec: ListenSpec) -> Address:
        loop = self.loop
        host = spec.host.strip("[]")
        if spec.transport == "udp":
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagram(self), local_addr=(host, spec.port), family=_family(host))
            sock = transport.get_extra_info("socket")
            port = int(sock.getsockname()[1])
            self._udp.append((transport, sock.family))
            return Address("udp", host, port)
        if spec.transport in STREAM_TRANSPORTS:
            name = spec.transport
            tls = name == "tls"
            server = await loop.create_server(
                lambda: _Stream(self, name), host, spec.port, family=_family(host),
                ssl=spec.ssl if tls else None, reuse_address=True,
                # a burst of connections waits in the kernel to be accepted (and evicted
                # or refused by us), rather than being dropped into SYN retries
                backlog=max(100, min(self.max_connections, 4096)),
                # a TLS handshake is held to the same time as a message
                ssl_handshake_timeout=self.message_timeout if tls and self.message_timeout
                else None)
            self._servers.append(server)
            return Address(name, host, int(server.sockets[0].getsockname()[1]))
        from websockets.asyncio.server import serve

        name = spec.transport

        async def handler(ws: Any) -> None:
            await self._ws_session(ws, name)

        wserver = await serve(handler, host, spec.port, subprotocols=["sip"],  # type: ignore[list-item]
                              ssl=spec.ssl if name == "wss" else None, compression=None,
                              max_size=65536, family=_family(host))
        self._servers.append(wserver)
        sockets = list(wserver.sockets)
        return Address(name, host, int(sockets[0].getsockname()[1]))

    def attach(self, core: CoreLike, on_event: Callable[[Event], None]) -> None:
        """Connect the core (built with ``local=self.local``) and the owner's event sink."""
        self._core = core
        self._on_event = on_event

    async def close(self) -> None:
        """Close every socket and connection; idempotent."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t, _ in self._udp:
            t.close()
        self._udp.clear()
        for conn in list(self._conns.values()):
            self._close_conn(conn)
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        self._servers.clear()
        for task in list(self._bg):
            task.cancel()
        if self._bg:
            await asyncio.gather(*self._bg, return_exceptions=True)
        self._bg.clear()

    # -- the core loop: receive -> flush (send, events, timer) ------------------------------

    def _feed(self, data: bytes, source: Address) -> None:
        core = self._core
        if core is None or self._closed:
            self.stats.discarded += 1
            return
        now = self.loop.time()
        if self.admit is not None and not self.admit(data, source.host, now):
            self.stats.rate_limited += 1
            return
        unmatched = _unmatched(core) if self.charge is not None and _is_response(data) else None
        try:
            core.receive(data, source, now)
            if unmatched is not None and self.charge is not None \
                    and _unmatched(core) > unmatched:
                self.charge(source.host, now)
        except Exception:  # the core must never take the listener down
            self.stats.core_errors += 1
            self.stats.discarded += 1
            log.exception("core.receive failed on %d bytes from %s", len(data), source)
        self.flush()

    def flush(self) -> None:
        """Send what the core queued, deliver its events, re-arm the timer.

        Re-entrant: an event handler that calls the core and then ``flush()`` again only marks
        the work; the outer loop picks it up.
        """
        core = self._core
        if core is None or self._closed:
            return
        if self._flushing:
            self._dirty = True
            return
        self._flushing = True
        try:
            while True:
                self._dirty = False
                for data, dest in core.datagrams_to_send(self.loop.time()):
                    self._send(data, dest)
                event = core.next_event()
                if event is None and not self._dirty:
                    break
                if event is not None and self._on_event is not None:
                    try:
                        self._on_event(event)
                    except Exception:
                        log.exception("event handler failed on %r", event)
        finally:
            self._flushing = False
        self._rearm()

    def _rearm(self) -> None:
        core = self._core
        if core is None or self._closed:
            return
        deadline = core.get_timer()
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        core = self._core
        if core is None or self._closed:
            return
        try:
            core.handle_timer(self.loop.time())
        except Exception:
            self.stats.core_errors += 1
            log.exception("core.handle_timer failed")
        self.flush()

    # -- UDP --------------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, host: str, port: int) -> None:
        self.stats.datagrams_in += 1
        if not data.strip(b"\r\n"):
            # RFC 5626 keep-alive (or STUN would go here): nothing for the SIP core.
            self.stats.keepalives_in += 1
            return
        if len(data) < 8 or data[:1] in (b"\x00", b"\x01"):
            self.stats.discarded += 1  # STUN/junk: cannot be SIP
            return
        self._feed(data, Address("udp", host, port))

    def _udp_socket(self, host: str) -> asyncio.DatagramTransport | None:
        fam = _family(host)
        for t, f in self._udp:
            if f == fam:
                return t
        return None

    # -- sending ----------------------------------------------------------------------------

    def _send(self, data: bytes, dest: Address) -> None:
        try:
            if dest.transport == "udp":
                self._send_udp(data, dest)
            elif dest.transport in STREAM_TRANSPORTS:
                self._send_stream(data, dest)
            elif dest.transport in WS_TRANSPORTS:
                self._send_ws(data, dest)
            else:
                self.stats.discarded += 1
                log.warning("no transport %r for %s", dest.transport, dest)
        except Exception:
            self.stats.send_errors += 1
            log.exception("send to %s failed", dest)

    def _send_udp(self, data: bytes, dest: Address) -> None:
        host = dest.host.strip("[]")
        if not _is_ip(host):
            self._spawn(self._resolve_then_send(data, dest))
            return
        sock = self._udp_socket(host)
        if sock is None:
            self.stats.discarded += 1
            log.warning("no UDP listener of the family of %s", host)
            self._report_failure(dest, "no UDP socket of that address family")
            return
        sock.sendto(data, (host, dest.port))
        self.stats.datagrams_out += 1

    async def _resolve_then_send(self, data: bytes, dest: Address) -> None:
        try:
            infos = await self.loop.getaddrinfo(dest.host.strip("[]"), dest.port,
                                                type=socket.SOCK_DGRAM)
        except OSError as exc:
            self.stats.send_errors += 1
            log.warning("cannot resolve %s: %s", dest.host, exc)
            return
        for fam, _, _, _, sockaddr in infos:
            resolved = Address(dest.transport, str(sockaddr[0]), int(sockaddr[1]), dest.conn_id)
            if fam in (socket.AF_INET, socket.AF_INET6):
                if dest.transport == "udp":
                    self._send_udp(data, resolved)
                else:
                    self._send_stream(data, resolved)
                return

    def _send_stream(self, data: bytes, dest: Address) -> None:
        conn = self._conns.get(dest.conn_id) if dest.conn_id is not None else None
        if conn is None or conn.closed:
            conn = self._by_peer.get((dest.transport, dest.host.strip("[]"), dest.port))
        if conn is None or conn.closed:
            if not _is_ip(dest.host.strip("[]")):
                self._spawn(self._resolve_then_send(data, dest))
                return
            conn = self._connect(dest)
        self._write(conn, data)

    def _write(self, conn: _Conn, data: bytes) -> None:
        if conn.writer is None:
            conn.pending.append(data)
            return
        conn.writer.write(data)
        self.stats.stream_messages_out += 1

    def _send_ws(self, data: bytes, dest: Address) -> None:
        conn = self._conns.get(dest.conn_id) if dest.conn_id is not None else None
        if conn is None or conn.closed:
            conn = self._by_peer.get((dest.transport, dest.host.strip("[]"), dest.port))
        if conn is None or conn.closed or conn.ws_queue is None:
            # RFC 7118: we never open WebSocket connections towards a browser.
            self.stats.discarded += 1
            log.info("no open WebSocket connection for %s", dest)
            self._report_failure(dest, "WebSocket connection closed")
            return
        conn.ws_queue.put_nowait(data)
        self.stats.stream_messages_out += 1

    # -- stream connections -----------------------------------------------------------------

    def _new_conn(self, transport: str, host: str, port: int, *, outgoing: bool) -> _Conn:
        now = self.loop.time()
        if outgoing and len(self._conns) >= self.max_connections:
            self._make_room()  # ours are needed (a phone, the trunk): shed a stranger's
        conn = _Conn(next(self._ids), transport, host, port, outgoing, last_rx=now,
                     last_msg=now)
        self._conns[conn.conn_id] = conn
        self._by_peer[conn.key] = conn
        if not outgoing:
            self._per_host[conn.host] = self._per_host.get(conn.host, 0) + 1
        return conn

    def _accept(self, transport: str, host: str, port: int) -> _Conn | None:
        """A new inbound connection, or None when it must be refused: too many from that
        address, or the table is full and nothing may be evicted for it."""
        host = host.strip("[]")
        if self.max_per_address is not None \
                and self._per_host.get(host, 0) >= self.max_per_address:
            self.stats.refused_per_address += 1
            self._log_refusal(host, f"refusing a {transport} connection from {host}:{port}: "
                              f"{self.max_per_address} already open from that address")
            return None
        if len(self._conns) >= self.max_connections and not self._make_room():
            self.stats.refused_full += 1
            self._log_refusal(host, f"refusing a {transport} connection from {host}:{port}: "
                              f"{len(self._conns)} connections open, all carry a "
                              "registration or a call")
            return None
        return self._new_conn(transport, host, port, outgoing=False)

    def _log_refusal(self, host: str, text: str) -> None:
        """Refusals are logged once per address and 10 s (a flood must not fill the log)."""
        now = self.loop.time()
        if now - self._refusal_logged.get(host, -1e9) >= 10.0:
            if len(self._refusal_logged) > 4096:
                self._refusal_logged.clear()
            self._refusal_logged[host] = now
            log.warning("%s", text)

    def _guarded(self) -> set[int]:
        if self.protected is None:
            return set()
        try:
            return self.protected()
        except Exception:  # the owner's bug must not open the table to eviction of phones
            log.exception("protected() failed: nothing is evicted this time")
            return set(self._conns)

    def _make_room(self) -> bool:
        """Close the inbound connection that has gone longest without a whole message and
        carries no registration or call; False when there is none."""
        keep = self._guarded()
        victim = min((c for c in self._conns.values() if not c.outgoing
                      and c.conn_id not in keep), key=lambda c: c.last_msg, default=None)
        if victim is None:
            return False
        self.stats.evicted += 1
        log.warning("connection table full (%d): evicting %s connection from %s:%d "
                    "(no registration or call, %.0f s since its last message)",
                    len(self._conns), victim.transport, victim.host, victim.port,
                    self.loop.time() - victim.last_msg)
        self._close_conn(victim)
        return True

    def _connect(self, dest: Address) -> _Conn:
        conn = self._new_conn(dest.transport, dest.host.strip("[]"), dest.port, outgoing=True)
        self._spawn(self._open(conn))
        return conn

    async def _open(self, conn: _Conn) -> None:
        ctx: ssl.SSLContext | None = None
        if conn.transport == "tls":
            ctx = self.client_ssl or ssl.create_default_context()
        try:
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: _Stream(self, conn.transport, conn), conn.host, conn.port,
                    ssl=ctx, server_hostname=conn.host if ctx is not None else None),
                self.connect_timeout)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            self.stats.connect_failures += 1
            reason = f"cannot connect: {exc or type(exc).__name__}"
            log.warning("%s %s:%d: %s", conn.transport, conn.host, conn.port, reason)
            self._drop_conn(conn)
            self._report_failure(Address(conn.transport, conn.host, conn.port), reason)
            return
        self.stats.connections_opened += 1
        if self.keepalive_interval:
            self._spawn(self._keepalive(conn, self.keepalive_interval))

    async def _keepalive(self, conn: _Conn, interval: float) -> None:
        """RFC 5626 §4.4.1 client pings on connections we opened (keeps NAT bindings)."""
        while not conn.closed and conn.writer is not None:
            await asyncio.sleep(interval)
            if conn.closed or conn.writer is None:
                return
            conn.writer.write(PING)

    def _message_deadline(self, conn: _Conn, started: float) -> None:
        if conn.closed or conn.partial_since != started or self._closed:
            return  # that message arrived whole (or the connection is gone)
        log.warning("closing %s connection from %s:%d: a message still incomplete %.1f s "
                    "after its first byte", conn.transport, conn.host, conn.port,
                    self.loop.time() - started)
        self.stats.slow_closed += 1
        self._close_conn(conn)

    def _sweep_period(self) -> float:
        limits = [t for t in (self.message_timeout, self.idle_unprotected, self.idle_timeout)
                  if t]
        return max(0.05, min([30.0, *(t / 4 for t in limits)]))

    async def _sweep(self) -> None:
        """Every fraction of the shortest limit: slow messages and idle connections."""
        while not self._closed:
            await asyncio.sleep(self._sweep_period())
            self.sweep_once()

    def sweep_once(self) -> None:
        now = self.loop.time()
        keep = self._guarded() if self.protected is not None else None
        for conn in list(self._conns.values()):
            if conn.outgoing or conn.transport not in STREAM_TRANSPORTS:
                continue
            if self.message_timeout and conn.partial_since is not None \
                    and now - conn.partial_since > self.message_timeout:
                log.warning("closing %s connection from %s:%d: a message still incomplete "
                            "%.1f s after its first byte", conn.transport, conn.host,
                            conn.port, now - conn.partial_since)
                self.stats.slow_closed += 1
                self._close_conn(conn)
            elif keep is None:
                if self.idle_timeout and now - conn.last_rx > self.idle_timeout:
                    log.info("closing idle %s connection %s:%d", conn.transport, conn.host,
                             conn.port)
                    self.stats.idle_closed += 1
                    self._close_conn(conn)
            elif conn.conn_id not in keep and self.idle_unprotected \
                    and now - conn.last_msg > self.idle_unprotected:
                log.info("closing %s connection from %s:%d: no registration or call and no "
                         "message for %.0f s", conn.transport, conn.host, conn.port,
                         now - conn.last_msg)
                self.stats.idle_closed += 1
                self._close_conn(conn)

    def _on_stream_data(self, conn: _Conn, data: bytes) -> None:
        now = conn.last_rx = self.loop.time()
        try:
            items = conn.framer.feed(data)
        except SipParseError as exc:
            self.stats.framing_errors += 1
            log.info("closing %s connection %s:%d: %s", conn.transport, conn.host, conn.port,
                     exc.reason)
            self._close_conn(conn)
            return
        # the clock of the message being received starts at its first byte
        started = conn.partial_since
        if any(item != PING for item in items):
            conn.last_msg = now
            conn.partial_since = now if conn.framer.buffered else None
        elif not conn.framer.buffered:
            conn.partial_since = None
        elif conn.partial_since is None:
            conn.partial_since = now
        if self.message_timeout and conn.partial_since is not None \
                and conn.partial_since != started:
            # to the moment: a message arriving across segments is rare, a timer is cheap
            self.loop.call_later(self.message_timeout, self._message_deadline, conn,
                                 conn.partial_since)
        for item in items:
            if item == PING:
                self.stats.keepalives_in += 1
                if conn.writer is not None:
                    conn.writer.write(PONG)
                    self.stats.pongs_out += 1
                continue
            self.stats.stream_messages_in += 1
            self._feed(item, Address(conn.transport, conn.host, conn.port, conn.conn_id))

    def _close_conn(self, conn: _Conn) -> None:
        if conn.writer is not None:
            conn.writer.close()
        if conn.ws_queue is not None:
            conn.ws_queue.put_nowait(None)
        self._drop_conn(conn)

    def _drop_conn(self, conn: _Conn) -> None:
        if not conn.closed and not conn.outgoing and conn.conn_id in self._conns:
            left = self._per_host.get(conn.host, 0) - 1
            if left > 0:
                self._per_host[conn.host] = left
            else:
                self._per_host.pop(conn.host, None)
        conn.closed = True
        self._conns.pop(conn.conn_id, None)
        if self._by_peer.get(conn.key) is conn:
            del self._by_peer[conn.key]
        if conn.pending:
            self.stats.discarded += len(conn.pending)
            conn.pending.clear()

    # -- WebSocket (RFC 7118) ---------------------------------------------------------------

    def adopt_websocket_listener(self, addr: Address) -> None:
        """A WebSocket endpoint served by another listener (the edge's HTTP ``/ws``): its
        connections come in through ``serve_websocket``; ``addr`` is what Via/Contact say."""
        if addr.transport not in WS_TRANSPORTS:
            raise ValueError(f"not a WebSocket transport: {addr.transport!r}")
        self.listening.append(addr)
        self.local.setdefault(addr.transport, addr)

    async def serve_websocket(self, ws: Any, name: str = "ws") -> None:
        """One SIP-over-WebSocket connection accepted elsewhere (already upgraded), served
        until it closes: the same limits, flow and message handling as our own WS server."""
        await self._ws_session(ws, name)

    async def _ws_session(self, ws: Any, name: str) -> None:
        if ws.subprotocol != "sip":
            # RFC 7118 §4.1: the "sip" subprotocol is mandatory.
            await ws.close(1002, "SIP WebSocket subprotocol required")
            return
        peer = ws.remote_address
        accepted = self._accept(name, str(peer[0]), int(peer[1]))
        if accepted is None:
            await ws.close(1008, "too many connections")
            return
        conn = accepted
        self.stats.connections_accepted += 1
        conn.ws = ws
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        conn.ws_queue = queue
        writer = asyncio.ensure_future(self._ws_writer(ws, queue))
        try:
            async for message in ws:
                data = message.encode() if isinstance(message, str) else bytes(message)
                if not data.strip(b"\r\n"):
                    self.stats.keepalives_in += 1
                    continue
                self.stats.stream_messages_in += 1
                self._feed(data, Address(name, conn.host, conn.port, conn.conn_id))
        except Exception as exc:  # connection closed abruptly
            log.debug("ws connection %s ended: %s", conn.conn_id, exc)
        finally:
            queue.put_nowait(None)
            self._drop_conn(conn)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 2.0)

    async def _ws_writer(self, ws: Any, queue: asyncio.Queue[bytes | None]) -> None:
        while True:
            data = await queue.get()
            if data is None:
                return
            try:
                # Text frames: SIP is UTF-8 and browser stacks (JsSIP, SIP.js) expect text.
                await ws.send(data.decode("utf-8"))
            except UnicodeDecodeError:
                await ws.send(data)
            except Exception:
                self.stats.send_errors += 1
                return

    # -- helpers ----------------------------------------------------------------------------

    def _report_failure(self, dest: Address, reason: str) -> None:
        """Tell the core (§18.4): the transactions towards ``dest`` end now, not at timer B/F."""
        core = self._core
        if core is None or self._closed:
            return
        try:
            core.transport_failed(dest, self.loop.time(), reason)
        except Exception:
            self.stats.core_errors += 1
            log.exception("core.transport_failed failed")
        # Deferred: we may be inside flush() already (a send that failed synchronously).
        self.loop.call_soon(self.flush)

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def connection_count(self) -> int:
        return len(self._conns)
