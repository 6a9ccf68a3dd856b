"""The edge's one HTTP listener (``[http] bind``/``port``, ``--http-port``; 0 = none).

| path | what |
|---|---|
| ``/metrics`` | Prometheus text exposition (``softphone.edge.metrics.EdgeCollector``) |
| ``/healthz`` | 200 when the SIP core answers an OPTIONS on its own UDP listener and the ledger takes a write lock; 503 naming what failed (or "draining" after SIGTERM) |
| ``/api/status`` | the live state as JSON (``softphone.edge.metrics.live_state``): what ``softphone status`` prints |
| ``/ws`` | SIP over WebSocket (RFC 7118, subprotocol ``sip``): the web phone's signalling, served by the SIP transport (``TransportLayer.serve_websocket``) with its limits |
| ``/`` and its files | the web phone (``softphone.edge.webphone``) |

On loopback the listener speaks plain http/ws (a secure context for browsers); bound to any
other address it speaks https/wss only (``[http] tls_cert``/``tls_key``, or the SIP TLS
listener's certificate), and ``check_exposure`` refuses to start otherwise.

Why ``websockets`` and not another server: the browser phone is served from this same
listener, SIP over WebSocket at ``/ws`` and its page at ``/``. The edge already depends on ``websockets`` for its WebSocket transport, and its asyncio server answers
plain HTTP GETs from ``process_request`` (a ``Response`` before any handshake) and upgrades
the others, on the edge's own event loop (uvloop included), with no thread and no second
framework. Every request here is a GET of a few hundred bytes to a few kB; each connection
is closed after its response (Prometheus and curl reconnect, which costs nothing on
loopback).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import secrets
import time
from http import HTTPStatus
from pathlib import Path
from ssl import SSLContext
from typing import TYPE_CHECKING, Any

from prometheus_client.exposition import generate_latest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from softphone.edge.metrics import live_state, registry_for
from softphone.edge.webphone import WebPhoneFiles
from softphone.sip.core import Address

if TYPE_CHECKING:
    from softphone.edge.app import Edge
    from softphone.edge.config import EdgeConfig

__all__ = ["HttpListener", "start_http"]

log = logging.getLogger("softphone.edge.http")
# websockets logs every plain-HTTP answer as a refused handshake at INFO: one line per scrape
_quiet = logging.getLogger("softphone.edge.http.server")
_quiet.setLevel(logging.WARNING)

HEALTH_TIMEOUT_S = 2.0
# the classic text format, which every Prometheus (and VictoriaMetrics, the Grafana agent...)
# reads; our metric names need none of the newer format's escaping
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _response(status: int, body: bytes, content_type: str) -> Response:
    reason = HTTPStatus(status).phrase
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"), ("Connection", "close")])
    return Response(status, reason, headers, body)


def _json(status: int, value: Any) -> Response:
    return _response(status, json.dumps(value, sort_keys=True).encode() + b"\n",
                     "application/json")


def _text(status: int, text: str) -> Response:
    return _response(status, text.encode() + b"\n", "text/plain; charset=utf-8")


class _OptionsProbe(asyncio.DatagramProtocol):
    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        first, _, rest = data.partition(b"\r\n")
        if self.call_id.encode() in rest and not self.answer.done():
            self.answer.set_result(first.decode("utf-8", "replace"))


class HttpListener:
    """``/metrics``, ``/healthz`` and ``/api/status`` of one edge."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.registry = registry_for(edge)
        self.server: Server | None = None
        self.ws_transport = "ws"  # "wss" when the listener speaks TLS
        self.webphone = WebPhoneFiles()

    @property
    def port(self) -> int:
        assert self.server is not None
        sockets = list(self.server.sockets)
        return int(sockets[0].getsockname()[1])

    async def start(self, host: str, port: int, ssl: SSLContext | None = None) -> None:
        self.ws_transport = "wss" if ssl is not None else "ws"
        # the same framing limits as the SIP transport's own WebSocket server
        self.server = await serve(self._upgrade, host, port, process_request=self._route,
                                  logger=_quiet, server_header=self.edge.cfg.user_agent,
                                  subprotocols=["sip"],  # type: ignore[list-item]
                                  compression=None, max_size=65536, ssl=ssl)
        self.edge.transport.adopt_websocket_listener(
            Address(self.ws_transport, host, self.port))
        self.edge.core.add_local(Address(self.ws_transport, host, self.port))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def _upgrade(self, connection: ServerConnection) -> None:
        # ``_route`` lets only /ws through to a handshake
        await self.edge.transport.serve_websocket(connection, self.ws_transport)

    async def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return None  # the handshake goes on: SIP over WebSocket
            return _text(426, "SIP over WebSocket (RFC 7118) here: connect with the sip "
                         "subprotocol")
        if request.headers.get("Upgrade"):
            return _text(404, "the only WebSocket endpoint is /ws")
        try:
            if path == "/metrics":
                return _response(200, generate_latest(self.registry), METRICS_CONTENT_TYPE)
            if path == "/healthz":
                ok, checks = await self.health()
                return _json(200 if ok else 503, {"ok": ok, "checks": checks})
            if path == "/api/status":
                return _json(200, live_state(self.edge))
            page = self.webphone.get(path)
            if page is not None:
                status, body, content_type = page
                return _response(status, body, content_type)
        except Exception as exc:  # a broken page must not take the listener down
            log.exception("HTTP %s failed", path)
            return _text(500, f"internal error: {type(exc).__name__}")
        return _text(404, "not found: / (the web phone), /ws, /metrics, /healthz, /api/status")

    async def health(self) -> tuple[bool, dict[str, str]]:
        """Each check: "ok" or what is wrong."""
        checks = {"sip": await self._sip_answers(), "ledger": self._ledger_writable()}
        if self.edge.b2bua.draining:
            checks["draining"] = "new calls are refused (503): the edge is stopping"
        return all(v == "ok" for v in checks.values()), checks

    async def _sip_answers(self) -> str:
        """An OPTIONS to our own UDP listener, through the transport, the flood guard, the
        core and the B2BUA, answered 200 within ``HEALTH_TIMEOUT_S``."""
        udp = self.edge.transport.local.get("udp")
        if udp is None:
            return "no UDP listener"
        loop = asyncio.get_running_loop()
        call_id = f"healthz-{secrets.token_hex(8)}"
        transport, probe = await loop.create_datagram_endpoint(
            lambda: _OptionsProbe(call_id), local_addr=(udp.host, 0))
        try:
            host, port = transport.get_extra_info("sockname")[:2]
            branch = f"z9hG4bK-{secrets.token_hex(8)}"
            target = f"sip:{udp.host}:{udp.port}"
            msg = (f"OPTIONS {target} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\n"
                   f"Max-Forwards: 70\r\nFrom: <sip:healthz@{host}>;tag={secrets.token_hex(4)}\r\n"
                   f"To: <{target}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
                   f"Content-Length: 0\r\n\r\n")
            transport.sendto(msg.encode(), (udp.host, udp.port))
            try:
                first = await asyncio.wait_for(probe.answer, HEALTH_TIMEOUT_S)
            except TimeoutError:
                return f"no answer to OPTIONS within {HEALTH_TIMEOUT_S:g} s"
            return "ok" if first.split(" ", 2)[1:2] == ["200"] else f"OPTIONS answered {first}"
        finally:
            transport.close()

    def _ledger_writable(self) -> str:
        """The guard's SQLite ledger takes a real write (``CounterStore.probe_write``): a full
        disk, a read-only mount or a lost file says so here."""
        writer = self.edge.store
        store = writer.store if writer is not None else None
        if store is None:
            return "no ledger"
        t0 = time.monotonic()
        try:
            store.probe_write(time.time())
        except Exception as exc:
            return f"ledger not writable: {exc}"
        took = time.monotonic() - t0
        return "ok" if took < HEALTH_TIMEOUT_S else f"ledger slow: {took:.1f} s for one write"


async def start_http(edge: Edge) -> HttpListener | None:
    """The listener of ``[http]``, or None when its port is 0."""
    cfg = edge.cfg
    if not cfg.http_port:
        return None
    listener = HttpListener(edge)
    await listener.start(cfg.http_bind, cfg.http_port, http_tls(cfg))
    return listener


def http_tls(cfg: EdgeConfig) -> SSLContext | None:
    """TLS for the listener: ``[http] tls_cert``/``tls_key`` when set; off loopback without
    them, the SIP TLS listener's certificate; on loopback, none (plain http/ws)."""
    from softphone.sip.tls import DEMO_HOSTS, ensure_demo_cert, server_context

    if cfg.http_tls_cert:
        return server_context(Path(cfg.http_tls_cert), Path(cfg.http_tls_key))
    if ipaddress.ip_address(cfg.http_bind).is_loopback:
        return None
    cert, key = ensure_demo_cert(cfg.data_dir, hosts=(*DEMO_HOSTS, cfg.bind))
    return server_context(cert, key)
