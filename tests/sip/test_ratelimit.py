"""The per-source request rate limit (pike-like token bucket)."""

from __future__ import annotations

import tracemalloc

import pytest

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


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RequestRateLimiter(rate_per_s=0)
    with pytest.raises(ValueError):
        RequestRateLimiter(ipv6_prefix=0)
