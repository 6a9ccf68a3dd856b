"""RTP/RTCP port allocator confined to the configured range (20000-22000 by default).

Every call leg gets a pair: RTP on an even port, RTCP on the next (odd) one, both inside the
range. ``allocate()`` really binds both UDP sockets, so a port another process already holds
is skipped (EADDRINUSE: try another pair, each pair at most once) instead of being discovered
later. When no pair is left it raises ``PortsExhausted``, which the edge answers with 503 +
Retry-After; it never lets an ``OSError`` escape. ``release()`` is idempotent, and
``in_use``/``owners()`` let tests prove that every port came back when a call ended.

The pair is chosen at random among the free ones (``secrets``), not in order: an attacker
cannot predict which ports the next call gets and aim RTP at them before the answer (the
RTPbleed class of attack, CVE-2017-14099). The pairs released last wait in a short quarantine
(taken only when nothing else is free), so late packets of an old call do not land in a new one.

Two shares of the range are kept for others (``allocate(owner, user=..., emergency=...)``):
``emergency_reserved`` pairs only an emergency call may take, so a range filled by ordinary
calls still gives 112 a port; and ``per_user_max_ports``, the RTP+RTCP ports one user's
ordinary calls may hold together (each pair is two), so one user cannot take the range from
everyone else. Both refusals are ``PortsExhausted`` (503 + Retry-After at the edge); an
emergency allocation ignores the per-user cap.
"""

from __future__ import annotations

import errno
import secrets
import socket
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["PortAllocator", "PortPair", "PortRangeError", "PortsExhausted",
           "UserPortsExhausted"]

# bind() errors that mean "this port is not for us, try another"
_SKIP_ERRNOS = frozenset({errno.EADDRINUSE, errno.EACCES})
RANDOM_DRAWS = 32  # random tries at a free pair before a pass over the whole range


class PortRangeError(ValueError):
    """The configured port range cannot hold an RTP/RTCP pair (odd start, outside 1024-65535)."""


class PortsExhausted(Exception):
    """No free RTP/RTCP pair in the range: answer 503 with Retry-After, do not crash."""

    def __init__(self, first: int, last: int, in_use: int, skipped: int, *,
                 why: str = "") -> None:
        super().__init__(why or f"no free RTP/RTCP port pair in {first}-{last} "
                         f"({in_use} pairs in use here, {skipped} held by other processes)")
        self.first = first
        self.last = last
        self.in_use = in_use
        self.skipped = skipped


class UserPortsExhausted(PortsExhausted):
    """The user's ordinary calls already hold ``per_user_max_ports``: 503 for this user only."""

    def __init__(self, first: int, last: int, in_use: int, user: str, held: int,
                 limit: int) -> None:
        super().__init__(first, last, in_use, 0,
                         why=f"user {user!r} already holds {held} RTP/RTCP ports "
                             f"(at most {limit} per user)")
        self.user = user
        self.held_ports = held
        self.limit = limit


class PortPair:
    """An allocated (rtp, rtcp) pair with its two bound, non-blocking UDP sockets.

    The sockets belong to the pair until a transport adopts them; releasing the pair closes
    them (closing twice is harmless)."""

    __slots__ = ("rtp", "rtcp", "host", "owner", "rtp_sock", "rtcp_sock", "released", "user",
                 "emergency")

    def __init__(self, rtp: int, host: str, owner: str, rtp_sock: socket.socket,
                 rtcp_sock: socket.socket, *, user: str = "", emergency: bool = False) -> None:
        self.rtp = rtp
        self.rtcp = rtp + 1
        self.host = host
        self.owner = owner
        self.user = user  # whose ports these are (per-user accounting); "" = nobody's
        self.emergency = emergency
        self.rtp_sock = rtp_sock
        self.rtcp_sock = rtcp_sock
        self.released = False

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"PortPair({self.host}:{self.rtp}/{self.rtcp}, owner={self.owner!r}, {state})"


class PortAllocator:
    """Hands out bound (RTP even, RTCP = RTP + 1) socket pairs from ``first``..``last``."""

    def __init__(self, first: int = 20000, last: int = 22000, host: str = "127.0.0.1", *,
                 emergency_reserved: int = 0, per_user_max_ports: int = 0) -> None:
        """``emergency_reserved``: pairs only emergency calls may take; ``per_user_max_ports``:
        ports (two per pair) one user's ordinary calls may hold, 0 = no cap."""
        for name, value in (("first", first), ("last", last),
                            ("emergency_reserved", emergency_reserved),
                            ("per_user_max_ports", per_user_max_ports)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise PortRangeError(f"{name} must be an int, got {value!r}")
        if not 1024 <= first < last <= 65535:
            raise PortRangeError(f"port range must lie within 1024-65535 with first < last, "
                                 f"got {first}-{last}")
        if first % 2:
            raise PortRangeError(f"port range must start on an even port (RTP even, RTCP odd), "
                                 f"got {first}")
        self.first = first
        self.last = last
        self.host = host
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # pairs whose odd port is still inside the range
        self.capacity = (last - first + 1) // 2
        if not 0 <= emergency_reserved < self.capacity:
            raise PortRangeError(f"emergency_reserved must be 0 to {self.capacity - 1} pairs "
                                 f"(the range holds {self.capacity}), got {emergency_reserved}")
        if per_user_max_ports < 0:
            raise PortRangeError(f"per_user_max_ports must be >= 0, got {per_user_max_ports}")
        self.emergency_reserved = emergency_reserved
        self.per_user_max_ports = per_user_max_ports
        self._held: dict[int, PortPair] = {}
        self._user_ports: Counter[str] = Counter()
        # the last pairs released, reused only when nothing else is free
        self._quarantine: deque[int] = deque(maxlen=min(64, self.capacity // 4))
        self.skipped_foreign = 0  # pairs passed over because another process holds a port
        self.refused_reserve = 0  # ordinary calls refused to keep the emergency share
        self.refused_user = 0     # ordinary calls refused by the per-user cap
        # the call media objects (``media.call.CallMedia``) on this allocator not yet closed:
        # zero once every call has ended, whatever ended it (status.json, leak checks)
        self.media_objects = 0

    @property
    def in_use(self) -> int:
        """Pairs handed out and not yet released."""
        return len(self._held)

    def owners(self) -> dict[str, int]:
        """Pairs held per owner (for leak assertions and diagnostics)."""
        return dict(Counter(p.owner for p in self._held.values()))

    def held(self) -> list[PortPair]:
        return list(self._held.values())

    def user_ports(self, user: str) -> int:
        """RTP+RTCP ports held by ``user``'s calls (emergency ones included)."""
        return self._user_ports.get(user, 0)

    def users(self) -> dict[str, int]:
        """Ports held per user (status.json, diagnostics)."""
        return {u: n for u, n in self._user_ports.items() if n}

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def allocate(self, owner: str, *, user: str = "", emergency: bool = False) -> PortPair:
        """Bind a free pair, chosen at random, for ``owner`` (a call leg) of ``user``.
        ``PortsExhausted`` when none is left, when only the emergency share is left and this
        is not an emergency call, or (``UserPortsExhausted``) when ``user`` is at the cap."""
        if not emergency:
            if self.emergency_reserved and \
                    self.capacity - len(self._held) <= self.emergency_reserved:
                self.refused_reserve += 1
                raise PortsExhausted(
                    self.first, self.last, self.in_use, 0,
                    why=f"RTP range {self.first}-{self.last} full for ordinary calls "
                        f"({self.in_use} pairs in use, {self.emergency_reserved} kept for "
                        "emergency calls)")
            limit = self.per_user_max_ports
            if user and limit and self._user_ports[user] + 2 > limit:
                self.refused_user += 1
                raise UserPortsExhausted(self.first, self.last, self.in_use, user,
                                         self._user_ports[user], limit)
        held = self._held
        quarantined = set(self._quarantine)
        # the quarantined pairs last, oldest first
        late = [(rtp - self.first) // 2 for rtp in dict.fromkeys(self._quarantine)
                if rtp not in held]
        skipped = 0
        for candidates in (self._fresh(quarantined), iter(late)):
            for index in candidates:
                rtp = self.first + 2 * index
                try:
                    rtp_sock = self._bind(rtp)
                except OSError as exc:
                    if exc.errno not in _SKIP_ERRNOS:
                        raise PortsExhausted(self.first, self.last, self.in_use,
                                             skipped) from exc
                    skipped += 1
                    continue
                try:
                    rtcp_sock = self._bind(rtp + 1)
                except OSError as exc:
                    rtp_sock.close()
                    if exc.errno not in _SKIP_ERRNOS:
                        raise PortsExhausted(self.first, self.last, self.in_use,
                                             skipped) from exc
                    skipped += 1
                    continue
                pair = PortPair(rtp, self.host, owner, rtp_sock, rtcp_sock, user=user,
                                emergency=emergency)
                held[rtp] = pair
                if user:
                    self._user_ports[user] += 2
                self.skipped_foreign += skipped
                return pair
        self.skipped_foreign += skipped
        raise PortsExhausted(self.first, self.last, self.in_use, skipped)

    def _fresh(self, quarantined: set[int]) -> Iterator[int]:
        """The free pairs (neither held nor quarantined) in random order, each once: the
        first is uniform over them. A few random draws first (a range that is mostly free
        answers at once, with no pass over it), then the rest of them shuffled."""
        held, first = self._held, self.first
        tried: set[int] = set()
        for _ in range(RANDOM_DRAWS):
            index = secrets.randbelow(self.capacity)
            rtp = first + 2 * index
            if index in tried or rtp in held or rtp in quarantined:
                continue
            tried.add(index)
            yield index
        rest = [i for i in range(self.capacity) if i not in tried
                and first + 2 * i not in held and first + 2 * i not in quarantined]
        while rest:  # a random pick, swapped out: each tried once
            k = secrets.randbelow(len(rest))
            rest[k], rest[-1] = rest[-1], rest[k]
            yield rest.pop()

    def release(self, pair: PortPair) -> None:
        """Close both sockets and return the pair; releasing twice is a no-op."""
        if pair.released:
            return
        pair.released = True
        for sock in (pair.rtp_sock, pair.rtcp_sock):
            try:
                sock.close()
            except OSError:  # already closed by a transport: nothing left to free
                pass
        if self._held.get(pair.rtp) is pair:
            del self._held[pair.rtp]
            if pair.user:
                left = self._user_ports[pair.user] - 2
                if left > 0:
                    self._user_ports[pair.user] = left
                else:
                    del self._user_ports[pair.user]
            if self._quarantine.maxlen:
                self._quarantine.append(pair.rtp)

    def release_owner(self, owner: str) -> int:
        """Release every pair held by ``owner`` (a call's last resort cleanup); returns how many."""
        pairs = [p for p in self._held.values() if p.owner == owner]
        for p in pairs:
            self.release(p)
        return len(pairs)

    def close(self) -> None:
        for p in list(self._held.values()):
            self.release(p)

    @contextmanager
    def lease(self, owner: str) -> Iterator[PortPair]:
        """``with allocator.lease("call-1") as pair:`` releases however the block ends."""
        pair = self.allocate(owner)
        try:
            yield pair
        finally:
            self.release(pair)
