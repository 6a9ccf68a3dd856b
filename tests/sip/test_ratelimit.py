"""The per-source request rate limit (pike-like token bucket)."""

from __future__ import annotations

import asyncio
import socket
import time
import tracemalloc
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.sip.errors import SipParseError
from softphone.sip.message import SipRequest, make_response, parse_message
from softphone.sip.ratelimit import RequestRateLimiter


def test_a_flood_from_one_source_is_limited_and_others_are_not() -> None:
    rl = RequestRateLimiter(rate_per_s=10, burst=20, penalty_s=2.0)
    now = 1000.0
    flood = 0
    calls = 0
    for i in range(5000):  # 1000 requests/s for 5 s from the scanner...
        t = now + i * 0.001
        flood += rl.allow("203.0.113.66", t)
        if i % 100 == 0:  # ...while a phone sends 10/s
            calls += rl.allow("192.0.2.10", t)
    assert calls == 50
    # The burst, then nothing while it keeps flooding: it stays hot.
    assert 20 <= flood <= 25
    assert rl.is_blocked("203.0.113.66", now + 5.0)
    assert rl.refused_total == 5000 - flood


def test_a_source_recovers_after_it_stops() -> None:
    rl = RequestRateLimiter(rate_per_s=5, burst=5, penalty_s=3.0)
    for _ in range(50):
        rl.allow("198.51.100.1", 0.0)
    assert not rl.allow("198.51.100.1", 2.0)  # in its penalty time
    assert rl.allow("198.51.100.1", 3.5)  # quiet since, penalty over: welcome back


def test_steady_rate_below_the_limit_is_never_refused() -> None:
    rl = RequestRateLimiter(rate_per_s=10, burst=10)
    assert all(rl.allow("192.0.2.1", i * 0.11) for i in range(1000))


def test_ipv6_sources_are_grouped_by_prefix() -> None:
    rl = RequestRateLimiter(rate_per_s=1, burst=3, penalty_s=60)
    results = [rl.allow(f"2001:db8:0:1::{i:x}", 0.0) for i in range(1, 10)]
    assert results.count(True) == 3  # one /64: one bucket, whatever the host part
    assert rl.allow("2001:db8:0:2::1", 0.0)
    assert rl.allow("[2001:db8:0:3::1]", 0.0)
    assert len(rl) == 3


def test_exempt_sources_are_never_limited() -> None:
    rl = RequestRateLimiter(rate_per_s=1, burst=1, exempt=["192.0.2.200"])
    assert all(rl.allow("192.0.2.200", 0.0) for _ in range(100))
    assert len(rl) == 0


def test_memory_is_bounded_with_many_sources() -> None:
    rl = RequestRateLimiter(max_sources=500, idle_s=30)
    tracemalloc.start()
    try:
        for i in range(5000):  # a spoofed sweep: every packet from a new address
            rl.allow(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", i * 0.0001)
        mid = tracemalloc.get_traced_memory()[0]
        for i in range(5000, 15000):
            rl.allow(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", i * 0.0001)
        end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(rl) <= 500
    assert rl.evicted_total >= 15000 - 500
    assert end - mid < 64 * 1024  # flat once the table is full


def test_idle_sources_are_forgotten() -> None:
    rl = RequestRateLimiter(idle_s=10, max_sources=100)
    for i in range(50):
        rl.allow(f"192.0.2.{i}", 0.0)
    for i in range(50):
        rl.allow(f"198.51.100.{i}", 100.0)
    assert len(rl) < 100 and rl.evicted_total == 0


def test_only_requests_take_tokens() -> None:
    rl = RequestRateLimiter(rate_per_s=1, burst=1)
    req = b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"
    resp = b"SIP/2.0 200 OK\r\n\r\n"
    assert all(rl.allow_packet(resp, "192.0.2.8", 0.0) for _ in range(10))  # free
    assert rl.allow_packet(req, "192.0.2.9", 0.0)
    assert not rl.allow_packet(b"\r\n" + req, "192.0.2.9", 0.0)
    assert rl.allow_packet(b"\r\n\r\n", "192.0.2.9", 0.0)
    # a source in its penalty time has its responses dropped too; after it, they pass
    assert not rl.allow_packet(resp, "192.0.2.9", 0.0)
    assert rl.allow_packet(resp, "192.0.2.9", 6.0)


def test_responses_to_no_request_are_charged_like_requests() -> None:
    """A flood of forged responses (matching no transaction) empties the bucket as requests
    would: then the source's requests and responses are all dropped before parsing."""
    rl = RequestRateLimiter(rate_per_s=10, burst=5, penalty_s=5.0)
    resp = b"SIP/2.0 200 OK\r\n\r\n"
    passed = 0
    for _ in range(50):
        if rl.allow_packet(resp, "192.0.2.7", 1.0):
            passed += 1
            rl.charge("192.0.2.7", 1.0)  # the core found no transaction for it
    assert passed == 6  # the burst, then the one that found the bucket empty
    assert rl.is_blocked("192.0.2.7", 1.0)
    assert not rl.allow_packet(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", "192.0.2.7", 2.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RequestRateLimiter(rate_per_s=0)
    with pytest.raises(ValueError):
        RequestRateLimiter(ipv6_prefix=0)


# ------------------------------------------------------------ on a real UDP socket
OPTIONS = (
    "OPTIONS sip:edge@127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {host}:{cport};branch=z9hG4bK-{n}\r\n"
    "Max-Forwards: 70\r\nTo: <sip:edge@127.0.0.1>\r\nFrom: <sip:{host}>;tag={n}\r\n"
    "Call-ID: {n}@{host}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


class GuardedListener(asyncio.DatagramProtocol):
    """Answers OPTIONS with 200 unless the source is over its rate: then drops silently."""

    def __init__(self, limiter: RequestRateLimiter) -> None:
        self.limiter = limiter
        self.transport: asyncio.DatagramTransport | None = None
        self.answered: dict[str, int] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        assert self.transport is not None
        if not self.limiter.allow_packet(data, addr[0], time.monotonic()):
            return  # before parsing: a flood costs one dict lookup per packet
        try:
            msg = parse_message(data)
        except SipParseError:
            return
        if isinstance(msg, SipRequest):
            self.answered[addr[0]] = self.answered.get(addr[0], 0) + 1
            self.transport.sendto(make_response(msg, 200, "OK", to_tag="g").to_bytes(), addr)


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got = 0

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.got += 1


@pytest.mark.timeout(60)
async def test_a_scanner_flood_does_not_starve_a_phone() -> None:
    loop = asyncio.get_running_loop()
    port = 15110
    server_t, server = await loop.create_datagram_endpoint(
        lambda: GuardedListener(RequestRateLimiter(rate_per_s=20, burst=20, penalty_s=5)),
        local_addr=("127.0.0.1", port), family=socket.AF_INET)
    # Two sources on loopback: the scanner on 127.0.0.2, the phone on 127.0.0.1.
    scan_t, scan = await loop.create_datagram_endpoint(
        Collector, local_addr=("127.0.0.2", 0), family=socket.AF_INET)
    phone_t, phone = await loop.create_datagram_endpoint(
        Collector, local_addr=("127.0.0.1", 0), family=socket.AF_INET)
    try:
        scan_port = scan_t.get_extra_info("sockname")[1]
        phone_port = phone_t.get_extra_info("sockname")[1]
        for i in range(3000):  # about 2 s of flood
            scan_t.sendto(OPTIONS.format(port=port, host="127.0.0.2", cport=scan_port, n=i).encode(),
                          ("127.0.0.1", port))
            if i % 150 == 0:  # the phone: 20 requests over the same 2 s
                phone_t.sendto(OPTIONS.format(port=port, host="127.0.0.1", cport=phone_port,
                                              n=f"p{i}").encode(), ("127.0.0.1", port))
            if i % 10 == 0:
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.3)
    finally:
        server_t.close()
        scan_t.close()
        phone_t.close()
    assert phone.got == 20  # every request of the phone answered
    assert server.answered.get("127.0.0.2", 0) <= 20 + 2 * 20 + 5  # burst + rate * ~2 s
    assert scan.got == server.answered.get("127.0.0.2", 0)
    assert server.limiter.refused_total > 2000


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"]),
                       st.floats(0, 0.5)), max_size=400),
    st.integers(1, 20), st.floats(0.5, 50),
)
def test_no_source_ever_exceeds_burst_plus_rate(events: list[tuple[str, float]], burst: int,
                                                rate: float) -> None:
    rl = RequestRateLimiter(rate_per_s=rate, burst=burst, penalty_s=0.0)
    now = 0.0
    allowed: dict[str, list[float]] = {}
    for source, gap in events:
        now += gap
        if rl.allow(source, now):
            allowed.setdefault(rl._key(source), []).append(now)
    for times in allowed.values():
        for i, start in enumerate(times):  # in every window: at most burst + rate * length
            for j in range(i, len(times)):
                assert j - i + 1 <= burst + rate * (times[j] - start) + 1e-9
