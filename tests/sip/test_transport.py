"""The asyncio transports around the real SipCore: UDP, TCP, TLS, WebSocket on loopback.

A tiny transaction user answers every request with 200 (OPTIONS-style); peers are plain
sockets, asyncio streams and the ``websockets`` client, so every assertion is on real bytes.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from softphone.sip import tls
from softphone.sip.core import Address, SipCore
from softphone.sip.events import RequestReceived
from softphone.sip.message import SipResponse, parse_message
from softphone.sip.transport import ListenSpec, TransportError, TransportLayer


def _options(via: str, *, call_id: str = "c1", cseq: int = 1) -> bytes:
    return (f"OPTIONS sip:uas@127.0.0.1 SIP/2.0\r\nVia: {via}\r\n"
            f"From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:uas@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()


class Endpoint:
    """A TransportLayer + SipCore whose TU answers every request with 200 OK."""

    def __init__(self) -> None:
        self.layer = TransportLayer(connect_timeout=1.0)
        self.core: SipCore | None = None
        self.requests: list[RequestReceived] = []
        self.events: list[Any] = []

    async def start(self, specs: list[ListenSpec]) -> dict[str, Address]:
        local = await self.layer.start(specs)
        self.core = SipCore(local=local)
        self.layer.attach(self.core, self._on_event)
        return local

    def _on_event(self, ev: Any) -> None:
        self.events.append(ev)
        if isinstance(ev, RequestReceived):
            self.requests.append(ev)
            assert self.core is not None
            self.core.respond(ev.transaction, 200, "OK", asyncio.get_running_loop().time(),
                              to_tag="t1")

    async def close(self) -> None:
        await self.layer.close()


@pytest.fixture
async def endpoint() -> Any:
    ep = Endpoint()
    yield ep
    await ep.close()


async def _udp_exchange(port: int, data: bytes, *, family: int = socket.AF_INET,
                        host: str = "127.0.0.1", expect: bool = True) -> tuple[bytes, Any] | None:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendto(sock, data, (host, port))
        try:
            async with asyncio.timeout(1.0 if expect else 0.3):
                return await loop.sock_recvfrom(sock, 65535)
        except TimeoutError:
            return None
    finally:
        sock.close()


async def test_udp_request_answered_with_rport_and_received(endpoint: Endpoint) -> None:
    local = await endpoint.start([ListenSpec("udp", "127.0.0.1", 0)])
    # The client claims a wrong sent-by port and asks for rport (RFC 3581): the answer must
    # go to the real source port and say where the request came from.
    got = await _udp_exchange(local["udp"].port,
                              _options("SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKu1;rport"))
    assert got is not None
    resp = parse_message(got[0])
    assert isinstance(resp, SipResponse) and resp.status == 200
    via = resp.top_via
    assert via.params["received"] == "127.0.0.1"
    assert via.params["rport"] not in (None, "", "9")
    assert endpoint.layer.stats.datagrams_in == 1 and endpoint.layer.stats.datagrams_out == 1


async def test_udp_crlf_keepalive_is_ignored(endpoint: Endpoint) -> None:
    local = await endpoint.start([ListenSpec("udp", "127.0.0.1", 0)])
    assert await _udp_exchange(local["udp"].port, b"\r\n\r\n", expect=False) is None
    assert endpoint.layer.stats.keepalives_in == 1
    assert endpoint.requests == []
    got = await _udp_exchange(local["udp"].port,
                              _options("SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKu2;rport"))
    assert got is not None and got[0].startswith(b"SIP/2.0 200")


async def test_tcp_ping_pong_framing_and_connection_reuse(endpoint: Endpoint) -> None:
    local = await endpoint.start([ListenSpec("tcp", "127.0.0.1", 0)])
    reader, writer = await asyncio.open_connection("127.0.0.1", local["tcp"].port)
    try:
        # RFC 5626 §4.4.1: a double-CRLF ping is answered by a single-CRLF pong.
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
        # Two requests in one segment, a third split across segments: all framed and
        # answered on this same connection (§18.2.2).
        a = _options("SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKt1", call_id="a")
        b = _options("SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKt2", call_id="b")
        c = _options("SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKt3", call_id="c")
        writer.write(a + b + c[:40])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(c[40:])
        seen = []
        for _ in range(3):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            msg = parse_message(head + b"", stream=False)
            seen.append(msg.call_id)
        assert sorted(seen) == ["a", "b", "c"]
        assert endpoint.layer.stats.pongs_out == 1
        assert {r.source.conn_id for r in endpoint.requests} == {endpoint.requests[0].source.conn_id}
    finally:
        writer.close()


async def test_tcp_garbage_closes_only_that_connection(endpoint: Endpoint) -> None:
    local = await endpoint.start([ListenSpec("tcp", "127.0.0.1", 0)])
    port = local["tcp"].port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GARBAGE\r\nNo-Length: x\r\n\r\n")
    assert await asyncio.wait_for(reader.read(100), 2) == b""  # closed by us
    writer.close()
    assert endpoint.layer.stats.framing_errors == 1
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_options("SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKt9"))
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)).startswith(b"SIP/2.0 200")
    writer.close()


async def test_tls_with_the_demo_certificate(endpoint: Endpoint, tmp_path: Path) -> None:
    cert, key = tls.ensure_demo_cert(tmp_path)
    local = await endpoint.start([ListenSpec("tls", "127.0.0.1", 0,
                                             ssl=tls.server_context(cert, key))])
    ctx = tls.client_context(cert)  # verifies the chain and that it is for 127.0.0.1
    reader, writer = await asyncio.open_connection("127.0.0.1", local["tls"].port, ssl=ctx,
                                                   server_hostname="127.0.0.1")
    writer.write(_options("SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKs1"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert head.startswith(b"SIP/2.0 200")
    writer.close()
    # A client that does not trust the certificate fails the handshake.
    with pytest.raises(ssl.SSLError):
        await asyncio.open_connection("127.0.0.1", local["tls"].port,
                                      ssl=ssl.create_default_context())


def test_demo_certificate_is_reused_and_key_private(tmp_path: Path) -> None:
    cert, key = tls.ensure_demo_cert(tmp_path)
    first = cert.read_bytes()
    assert tls.ensure_demo_cert(tmp_path) == (cert, key)
    assert cert.read_bytes() == first  # still valid: not remade
    assert key.stat().st_mode & 0o077 == 0
    with pytest.raises(tls.TlsError, match="cannot load certificate"):
        tls.server_context(tmp_path / "missing.pem", key)


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_websocket_needs_sip_subprotocol(endpoint: Endpoint, scheme: str,
                                               tmp_path: Path) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    server_ctx = client_ctx = None
    if scheme == "wss":
        cert, key = tls.ensure_demo_cert(tmp_path)
        server_ctx, client_ctx = tls.server_context(cert, key), tls.client_context(cert)
    local = await endpoint.start([ListenSpec(scheme, "127.0.0.1", 0, ssl=server_ctx)])
    url = f"{scheme}://127.0.0.1:{local[scheme].port}"
    async with connect(url, subprotocols=["sip"], ssl=client_ctx) as ws:  # type: ignore[list-item]
        via = f"SIP/2.0/{scheme.upper()} df7jal23ls0d.invalid;branch=z9hG4bKw1"
        await ws.send(_options(via).decode())
        reply = await asyncio.wait_for(ws.recv(), 2)
        assert isinstance(reply, str) and reply.startswith("SIP/2.0 200")
    assert endpoint.requests[0].source.transport == scheme
    # RFC 7118 §4.1: no "sip" subprotocol, no SIP: the handshake is refused (HTTP 400).
    with pytest.raises(InvalidStatus, match="400"):
        async with connect(url, ssl=client_ctx):
            pass
    assert len(endpoint.requests) == 1


async def test_bind_error_names_the_address(endpoint: Endpoint) -> None:
    local = await endpoint.start([ListenSpec("udp", "127.0.0.1", 0)])
    other = TransportLayer()
    with pytest.raises(TransportError, match=rf"udp 127\.0\.0\.1:{local['udp'].port}"):
        await other.start([ListenSpec("udp", "127.0.0.1", local["udp"].port)])
    with pytest.raises(TransportError, match="needs an ssl context"):
        ListenSpec("tls", "127.0.0.1", 5061)


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback here")
async def test_ipv6_udp(endpoint: Endpoint) -> None:
    local = await endpoint.start([ListenSpec("udp", "::1", 0)])
    assert local["udp"].host == "[::1]"  # what goes into Via/Contact (RFC 5118)
    got = await _udp_exchange(local["udp"].port,
                              _options("SIP/2.0/UDP [::1]:9;branch=z9hG4bK6;rport"),
                              family=socket.AF_INET6, host="::1")
    assert got is not None and got[0].startswith(b"SIP/2.0 200")


async def test_outgoing_udp_request_is_retransmitted_by_the_timer(endpoint: Endpoint) -> None:
    local = await endpoint.start([ListenSpec("udp", "127.0.0.1", 0)])
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    port = sink.getsockname()[1]
    assert endpoint.core is not None
    req = parse_message(_options("SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx"))
    req.headers.remove("via")
    loop = asyncio.get_running_loop()
    endpoint.core.send_request(req, Address("udp", "127.0.0.1", port), loop.time())  # type: ignore[arg-type]
    endpoint.layer.flush()
    times = []
    try:
        async with asyncio.timeout(2.5):
            while len(times) < 3:
                await loop.sock_recv(sink, 65535)
                times.append(time.monotonic())
    except TimeoutError:
        pass
    finally:
        sink.close()
    # Timer E with T1 = 0.5 s: sent at 0, 0.5 and 1.5 s.
    assert len(times) == 3, times
    # (generous bounds: the machine may be busy; the doubling is what matters)
    assert 0.3 < times[1] - times[0] < 0.9
    assert 0.75 < times[2] - times[1] < 1.5
    assert local["udp"].port != port


async def test_connect_failure_reaches_the_core_at_once(endpoint: Endpoint) -> None:
    await endpoint.start([ListenSpec("tcp", "127.0.0.1", 0)])
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nobody listens there
    assert endpoint.core is not None
    req = parse_message(_options("SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKy"))
    req.headers.remove("via")
    loop = asyncio.get_running_loop()
    endpoint.core.send_request(req, Address("tcp", "127.0.0.1", port), loop.time())  # type: ignore[arg-type]
    endpoint.layer.flush()
    start = loop.time()
    async with asyncio.timeout(3):
        while not any(type(e).__name__ == "TransportFailure" for e in endpoint.events):
            await asyncio.sleep(0.02)
    assert loop.time() - start < 2.0  # not timer F (32 s)
    assert endpoint.layer.stats.connect_failures == 1


async def test_outgoing_connection_sends_crlf_pings() -> None:
    """RFC 5626 §4.4.1: the side that opened a connection keeps it alive with CRLFCRLF."""
    layer = TransportLayer(keepalive_interval=0.1)
    await layer.start([ListenSpec("tcp", "127.0.0.1", 0)])
    core = SipCore(local=layer.local)
    layer.attach(core, lambda ev: None)
    received = bytearray()
    got_two_pings = asyncio.Event()

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not got_two_pings.is_set():
            data = await reader.read(4096)
            if not data:
                return
            received.extend(data)
            if received.count(b"\r\n\r\n") >= 3:  # the request's blank line + two pings
                got_two_pings.set()
            writer.write(b"\r\n")  # pong
        writer.close()

    srv = await asyncio.start_server(server, "127.0.0.1", 0)
    try:
        port = srv.sockets[0].getsockname()[1]
        req = parse_message(_options("SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKk"))
        req.headers.remove("via")
        core.send_request(req, Address("tcp", "127.0.0.1", port),  # type: ignore[arg-type]
                          asyncio.get_running_loop().time())
        layer.flush()
        await asyncio.wait_for(got_two_pings.wait(), 2)
        assert received.startswith(b"OPTIONS ")
        assert received.endswith(b"\r\n\r\n\r\n\r\n")
    finally:
        srv.close()
        await layer.close()


async def test_idle_inbound_connection_is_closed() -> None:
    layer = TransportLayer(idle_timeout=1.0)
    local = await layer.start([ListenSpec("tcp", "127.0.0.1", 0)])
    layer.attach(SipCore(local=local), lambda ev: None)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", local["tcp"].port)
        # Pings count as traffic: the connection survives while they flow...
        for _ in range(6):
            writer.write(b"\r\n\r\n")
            assert await asyncio.wait_for(reader.readexactly(2), 1) == b"\r\n"
            await asyncio.sleep(0.25)
        assert layer.connection_count() == 1
        # ...and is closed once silent for longer than the idle timeout.
        assert await asyncio.wait_for(reader.read(10), 3) == b""
        assert layer.stats.idle_closed == 1 and layer.connection_count() == 0
        writer.close()
    finally:
        await layer.close()


def test_default_listen_specs(tmp_path: Path) -> None:
    from softphone.sip.transport import default_listen_specs

    specs = default_listen_specs()
    assert [(s.transport, s.port) for s in specs] == [("udp", 5060), ("tcp", 5060)]
    cert, key = tls.ensure_demo_cert(tmp_path)
    specs = default_listen_specs("127.0.0.1", tls_port=443,
                                 tls_context=tls.server_context(cert, key))
    assert [(s.transport, s.host, s.port) for s in specs] == [
        ("udp", "127.0.0.1", 5060), ("tcp", "127.0.0.1", 5060), ("tls", "127.0.0.1", 443)]


async def test_tcp_any_segmentation_delivers_every_message_in_order(endpoint: Endpoint) -> None:
    """Messages and pings cut at random places (a seeded sweep, 40 streams): every request
    is answered, in order, and every ping gets its pong."""
    import random

    local = await endpoint.start([ListenSpec("tcp", "127.0.0.1", 0)])
    rng = random.Random(3261)
    for round_ in range(40):
        items: list[bytes] = []
        for i in range(rng.randint(1, 5)):
            if rng.random() < 0.3:
                items.append(b"\r\n\r\n")
            items.append(_options(f"SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKr{round_}x{i}",
                                  call_id=f"r{round_}-{i}"))
        stream = b"".join(items)
        cuts = sorted(rng.sample(range(1, len(stream)), k=min(len(stream) - 1,
                                                              rng.randint(0, 12))))
        reader, writer = await asyncio.open_connection("127.0.0.1", local["tcp"].port)
        start = 0
        for cut in [*cuts, len(stream)]:
            writer.write(stream[start:cut])
            await writer.drain()
            await asyncio.sleep(0)
            start = cut
        expected = [parse_message(x).call_id for x in items if x != b"\r\n\r\n"]
        pongs = items.count(b"\r\n\r\n")
        got: list[str] = []
        seen_pongs = 0
        while len(got) < len(expected):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            while head.startswith(b"\r\n"):  # pongs come before or between responses
                seen_pongs += 1
                head = head[2:]
            if head:
                got.append(parse_message(head).call_id)
        writer.close()
        assert got == expected
        assert seen_pongs == pongs
    assert endpoint.layer.stats.framing_errors == 0
