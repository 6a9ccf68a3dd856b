"""The user agent against itself and a small digest registrar, over real loopback sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from softphone.codecs.registry import OPUS, PCMA, PCMU

from softphone.phone import CallState, IncomingCall, RegState, UserAgent, uri_destination
from softphone.sip import tls
from softphone.sip.auth import DigestServer
from softphone.sip.core import SipCore
from softphone.sip.events import RequestReceived
from softphone.sip.transport import ListenSpec, TransportLayer


async def _pair(transport: str = "udp", *, callee: dict[str, Any] | None = None,
                caller: dict[str, Any] | None = None,
                ssl_dir: Path | None = None) -> tuple[UserAgent, UserAgent]:
    server_ctx = client_ctx = None
    if transport == "tls":
        assert ssl_dir is not None
        cert, key = tls.ensure_demo_cert(ssl_dir)
        server_ctx, client_ctx = tls.server_context(cert, key), tls.client_context(cert)
    b = UserAgent(listen=[ListenSpec(transport, "127.0.0.1", 0, ssl=server_ctx)], user="bob",
                  **(callee or {}))
    a = UserAgent(listen=[ListenSpec(transport, "127.0.0.1", 0, ssl=server_ctx)], user="alice",
                  transport=TransportLayer(client_ssl=client_ctx), **(caller or {}))
    await b.start()
    await a.start()
    return a, b


def _uri(ua: UserAgent, transport: str = "udp") -> str:
    local = ua.local[transport]
    return f"sip:{ua.user}@{local.host}:{local.port};transport={transport}"


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_call_answer_hangup(transport: str, tmp_path: Path) -> None:
    a, b = await _pair(transport, callee={"auto_answer": True, "ring": True}, ssl_dir=tmp_path)
    try:
        call = await a.call(_uri(b, transport))
        assert await call.wait_answered(5)
        assert call.negotiated is not None and call.negotiated.codec.name == "opus"
        assert call.negotiated.telephone_event_pt == 101
        assert call.rtp_port is not None and 20000 <= call.rtp_port <= 22000
        assert call.invite.body.count(b"m=audio ") == 1
        incoming = next(iter(b.calls.values()))
        assert incoming.state is CallState.ESTABLISHED
        assert incoming.negotiated is not None
        assert incoming.negotiated.remote_port == call.rtp_port
        await call.hangup_and_wait(5)
        assert call.bye_status == 200
        await incoming.wait_ended(2)
        assert incoming.end_reason == "remote hangup"
        # Both sides gave their RTP/RTCP pairs back.
        assert a._ports.in_use == 0 and b._ports.in_use == 0
    finally:
        await a.close()
        await b.close()


async def test_callee_hangs_up() -> None:
    a, b = await _pair(callee={"auto_answer": True})
    try:
        call = await a.call(_uri(b))
        assert await call.wait_answered(5)
        incoming = next(iter(b.calls.values()))
        await incoming.hangup_and_wait(5)
        assert incoming.bye_status == 200
        await call.wait_ended(2)
        assert call.end_reason == "remote hangup"
    finally:
        await a.close()
        await b.close()


async def test_no_common_codec_is_488_with_warning() -> None:
    a, b = await _pair(callee={"auto_answer": True, "codecs": (PCMA, PCMU)},
                       caller={"codecs": (OPUS,)})
    try:
        call = await a.call(_uri(b))
        await call.wait_ended(5)
        assert call.status == 488
        assert call.final_response is not None
        warning = call.final_response.headers.get("warning") or ""
        assert warning.startswith(("304 ", "305 ")), warning  # RFC 3261 §20.43
        assert b.stats["rejected_488"] == 1
        incoming = next(iter(b.calls.values()))
        assert incoming.end_reason == "no common codec"
        assert b._ports.in_use == 0
    finally:
        await a.close()
        await b.close()


async def test_cancel_while_ringing() -> None:
    a, b = await _pair(callee={"ring": True})
    rang: list[Any] = []
    b.on_event = lambda ev: rang.append(ev) if isinstance(ev, IncomingCall) else None
    try:
        call = await a.call(_uri(b))
        assert await call.wait_state(CallState.RINGING, timeout=5) is CallState.RINGING
        call.hangup()
        await call.wait_ended(5)
        assert call.status == 487
        incoming = rang[0].call
        await incoming.wait_ended(2)
        assert incoming.status == 487 and incoming.end_reason == "cancelled"
    finally:
        await a.close()
        await b.close()


async def test_incoming_call_answered_by_the_owner() -> None:
    a, b = await _pair()

    async def answer_after_a_while() -> None:
        async for ev in b.events():
            if isinstance(ev, IncomingCall):
                await asyncio.sleep(0.2)
                ev.call.answer()
                return

    task = asyncio.create_task(answer_after_a_while())
    try:
        call = await a.call(_uri(b))
        assert await call.wait_answered(5)
        await task
        await call.hangup_and_wait(5)
    finally:
        task.cancel()
        await a.close()
        await b.close()


async def test_options_answered_with_capabilities() -> None:
    a, b = await _pair()
    try:
        resp = await a.options(_uri(b))
        assert resp is not None and resp.status == 200
        assert "INVITE" in (resp.headers.get("allow") or "")
        assert resp.headers.get("accept") == "application/sdp"
        assert "supported" in resp.headers
    finally:
        await a.close()
        await b.close()


def test_uri_destination() -> None:
    d = uri_destination("sip:600@127.0.0.1")
    assert (d.transport, d.host, d.port) == ("udp", "127.0.0.1", 5060)
    d = uri_destination("sips:600@[::1]")
    assert (d.transport, d.host, d.port) == ("tls", "::1", 5061)
    d = uri_destination("sip:600@127.0.0.1:5080;transport=TCP")
    assert (d.transport, d.port) == ("tcp", 5080)


class Registrar:
    """A registrar made of our core and DigestServer: 401 first, then 200 with ``expires``."""

    def __init__(self, expires: int) -> None:
        self.expires = expires
        self.layer = TransportLayer()
        self.digest = DigestServer("unit.test", {"1001": "pw"}.get, algorithms=("MD5",))
        self.core: SipCore | None = None
        self.accepted: list[float] = []
        self.challenged = 0

    async def start(self) -> int:
        local = await self.layer.start([ListenSpec("udp", "127.0.0.1", 0)])
        self.core = SipCore(local=local)
        self.layer.attach(self.core, self._on_event)
        return local["udp"].port

    def _on_event(self, ev: Any) -> None:
        if not isinstance(ev, RequestReceived) or self.core is None:
            return
        now = asyncio.get_running_loop().time()
        result = self.digest.verify(ev.request, now)
        if not result.ok:
            self.challenged += 1
            self.core.send_response(ev.transaction,
                                    self.digest.challenge_response(ev.request, now,
                                                                   stale=result.stale), now)
            return
        self.accepted.append(now)
        self.core.respond(ev.transaction, 200, "OK", now, to_tag="r1",
                          extra=[("Contact", f"{ev.request.headers.get('contact')};"
                                             f"expires={self.expires}")])


async def test_register_with_digest_refreshes_before_expiry() -> None:
    registrar = Registrar(expires=2)
    port = await registrar.start()
    ua = UserAgent(listen=[ListenSpec("udp", "127.0.0.1", 0)], user="1001")
    await ua.start()
    try:
        reg = await ua.register(f"sip:127.0.0.1:{port}", username="1001", password="pw",
                                expires=3600, wait=5)
        assert reg.state is RegState.REGISTERED and reg.granted == 2
        assert await reg.wait_registered(5, count=3)
        gaps = [b - a for a, b in zip(registrar.accepted, registrar.accepted[1:], strict=False)]
        assert all(0.8 < g < 2.0 for g in gaps), gaps  # 60 % of 2 s, well before expiry
        # Refreshes reuse the nonce with the next nc: only the first REGISTER was challenged.
        assert registrar.challenged == 1
        await reg.unregister()
        assert reg.state is RegState.UNREGISTERED
    finally:
        await ua.close()
        await registrar.layer.close()


async def test_wrong_password_fails_without_looping() -> None:
    registrar = Registrar(expires=60)
    port = await registrar.start()
    ua = UserAgent(listen=[ListenSpec("udp", "127.0.0.1", 0)], user="1001")
    await ua.start()
    try:
        reg = await ua.register(f"sip:127.0.0.1:{port}", username="1001", password="nope",
                                wait=5)
        assert reg.state is RegState.FAILED and reg.status == 401
        assert registrar.challenged <= 3
    finally:
        await ua.close()
        await registrar.layer.close()


async def test_registration_retried_after_a_server_error() -> None:
    registrar = Registrar(expires=60)
    registrar.fail_first = 1  # type: ignore[attr-defined]
    port = await registrar.start()
    original = registrar._on_event

    def flaky(ev: Any) -> None:
        if isinstance(ev, RequestReceived) and registrar.fail_first > 0:  # type: ignore[attr-defined]
            registrar.fail_first -= 1  # type: ignore[attr-defined]
            assert registrar.core is not None
            registrar.core.respond(ev.transaction, 503, "Service Unavailable",
                                   asyncio.get_running_loop().time(),
                                   extra=[("Retry-After", "1")])
            return
        original(ev)

    registrar.layer.attach(registrar.core, flaky)  # type: ignore[arg-type]
    ua = UserAgent(listen=[ListenSpec("udp", "127.0.0.1", 0)], user="1001")
    await ua.start()
    try:
        reg = await ua.register(f"sip:127.0.0.1:{port}", username="1001", password="pw",
                                wait=None)
        async with asyncio.timeout(5):  # RETRYING first (wait_registered stops there)...
            while reg.registered_count == 0:
                await asyncio.sleep(0.05)  # ...then the retry after Retry-After: 1
        assert reg.status == 200 and reg.registered_count == 1
    finally:
        await ua.close()
        await registrar.layer.close()


def _has_ipv6() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback here")
async def test_call_over_ipv6() -> None:
    b = UserAgent(listen=[ListenSpec("udp", "::1", 0)], user="bob", auto_answer=True)
    a = UserAgent(listen=[ListenSpec("udp", "::1", 0)], user="alice")
    await b.start()
    await a.start()
    try:
        call = await a.call(f"sip:bob@[::1]:{b.local['udp'].port}")
        assert await call.wait_answered(5)
        assert b"c=IN IP6 ::1" in call.invite.body
        assert call.negotiated is not None and call.negotiated.remote_address == "::1"
        assert "[::1]" in (call.invite.headers.get("contact") or "")
        await call.hangup_and_wait(5)
        assert call.bye_status == 200
    finally:
        await a.close()
        await b.close()
