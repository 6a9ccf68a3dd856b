"""Per-source request rate limit, in the spirit of Kamailio's pike module (sans-I/O).

A SIP scanner (friendly-scanner, sipvicious...) sends hundreds of OPTIONS/REGISTER/INVITE per
second from one address; parsing and answering each of them would starve real calls. Each
source address gets a token bucket: ``rate_per_s`` requests per second on average and bursts
of up to ``burst``. A source that empties its bucket is refused for ``penalty_s`` more seconds
whatever it sends (pike's "hot" state), so a flood stays cheap to drop. IPv6 sources are keyed
by their /64 by default: one host owns a whole /64 and could otherwise rotate addresses.

Memory is bounded: at most ``max_sources`` entries (least recently seen evicted first) and an
entry idle for ``idle_s`` is forgotten. The caller passes the clock (``now``, seconds,
monotonic) and decides what to do with a refusal (drop silently: a 503 would answer the flood);
a transport calls ``allow_packet(data, source_ip, now)`` before parsing a datagram.
Our own instead of a library: a few dozen lines, and it must be sans-I/O for the core.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    last: float
    blocked_until: float = 0.0


class RequestRateLimiter:
    """``allow(source_ip, now)`` says whether to process one request from ``source_ip``."""

    def __init__(self, rate_per_s: float = 20.0, burst: int = 40, *, penalty_s: float = 5.0,
                 idle_s: float = 120.0, max_sources: int = 65536, ipv6_prefix: int = 64,
                 exempt: Iterable[str] = ()) -> None:
        if rate_per_s <= 0 or burst < 1 or max_sources < 1 or penalty_s < 0 or idle_s <= 0:
            raise ValueError("rate_per_s, burst, max_sources, idle_s must be > 0, penalty_s >= 0")
        if not 0 < ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be in 1..128")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self.penalty_s = float(penalty_s)
        self.idle_s = float(idle_s)
        self.max_sources = max_sources
        self.ipv6_prefix = ipv6_prefix
        self._exempt = frozenset(self._key(ip) for ip in exempt)
        self._table: OrderedDict[str, _Bucket] = OrderedDict()
        self.allowed_total = 0
        self.refused_total = 0
        self.evicted_total = 0

    def _key(self, source_ip: str) -> str:
        if ":" not in source_ip:
            return source_ip
        try:
            net = ipaddress.IPv6Network(f"{source_ip.strip('[]')}/{self.ipv6_prefix}", strict=False)
        except ValueError:
            return source_ip  # not an address we can group: key it as it is
        return str(net.network_address)

    def allow(self, source_ip: str, now: float) -> bool:
        """Take one token for ``source_ip`` at time ``now``; False: drop this request."""
        key = self._key(source_ip)
        if key in self._exempt:
            self.allowed_total += 1
            return True
        table = self._table
        bucket = table.get(key)
        if bucket is None:
            self._make_room(now)
            bucket = _Bucket(tokens=self.burst, last=now)
            table[key] = bucket
        else:
            table.move_to_end(key)
            elapsed = now - bucket.last
            if elapsed > 0:
                bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate_per_s)
                bucket.last = now
        if now < bucket.blocked_until or bucket.tokens < 1.0:
            if bucket.tokens < 1.0:
                bucket.blocked_until = max(bucket.blocked_until, now + self.penalty_s)
            # Refused requests still cost: a source stays hot for as long as it floods.
            bucket.tokens = max(bucket.tokens - 1.0, -self.burst)
            self.refused_total += 1
            return False
        bucket.tokens -= 1.0
        self.allowed_total += 1
        return True

    def allow_packet(self, data: bytes, source_ip: str, now: float) -> bool:
        """For a transport, before parsing: requests are counted, the rest passes.

        Responses answer our own requests and CRLF keep-alives must be answered, so only
        bytes that start like a request take a token here; a response that matches no
        transaction is charged afterwards (:meth:`charge`), and a source in its penalty
        time has its responses dropped too (a flood of forged responses stays cheap).
        """
        head = data.lstrip(b"\r\n")
        if not head:
            return True
        if head.startswith(b"SIP/"):
            return not self.is_blocked(source_ip, now)
        return self.allow(source_ip, now)

    def charge(self, source_ip: str, now: float) -> None:
        """Take a token for something ``source_ip`` sent that was not allowed for (a
        response to no request of ours): the budget of requests covers those too."""
        self.allow(source_ip, now)

    def _make_room(self, now: float) -> None:
        table = self._table
        # Forget idle sources from the least recently seen end (amortised: a few per call).
        for _ in range(4):
            if not table:
                return
            key, oldest = next(iter(table.items()))
            if now - oldest.last < self.idle_s or now < oldest.blocked_until:
                break
            del table[key]
        while len(table) >= self.max_sources:
            table.popitem(last=False)
            self.evicted_total += 1

    def is_blocked(self, source_ip: str, now: float) -> bool:
        """True while ``source_ip`` is in its penalty time (for logs and metrics)."""
        bucket = self._table.get(self._key(source_ip))
        return bucket is not None and now < bucket.blocked_until

    def __len__(self) -> int:
        return len(self._table)
