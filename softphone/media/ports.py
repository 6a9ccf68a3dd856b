"""RTP/RTCP port allocator confined to the configured range (20000-22000 by default).

Every call leg gets a pair: RTP on an even port, RTCP on the next (odd) one, both inside the
range. ``allocate()`` really binds both UDP sockets, so a port another process already holds
is skipped (EADDRINUSE: try the next pair, at most one pass over the range) instead of being
discovered later. When no pair is left it raises ``PortsExhausted``, which the edge answers with
503 + Retry-After; it never lets an ``OSError`` escape. ``release()`` is idempotent, and
``in_use``/``owners()`` let tests prove that every port came back when a call ended.

The scan starts after the last pair handed out (round robin) so a port just freed is not reused
at once: late packets of the old call then do not land in the new one.
"""

from __future__ import annotations

import errno
import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["PortAllocator", "PortPair", "PortRangeError", "PortsExhausted"]

# bind() errors that mean "this port is not for us, try another"
_SKIP_ERRNOS = frozenset({errno.EADDRINUSE, errno.EACCES})


class PortRangeError(ValueError):
    """The configured port range cannot hold an RTP/RTCP pair (odd start, outside 1024-65535)."""


class PortsExhausted(Exception):
    """No free RTP/RTCP pair in the range: answer 503 with Retry-After, do not crash."""

    def __init__(self, first: int, last: int, in_use: int, skipped: int) -> None:
        super().__init__(f"no free RTP/RTCP port pair in {first}-{last} "
                         f"({in_use} pairs in use here, {skipped} held by other processes)")
        self.first = first
        self.last = last
        self.in_use = in_use
        self.skipped = skipped


class PortPair:
    """An allocated (rtp, rtcp) pair with its two bound, non-blocking UDP sockets.

    The sockets belong to the pair until a transport adopts them; releasing the pair closes
    them (closing twice is harmless)."""

    __slots__ = ("rtp", "rtcp", "host", "owner", "rtp_sock", "rtcp_sock", "released")

    def __init__(self, rtp: int, host: str, owner: str, rtp_sock: socket.socket,
                 rtcp_sock: socket.socket) -> None:
        self.rtp = rtp
        self.rtcp = rtp + 1
        self.host = host
        self.owner = owner
        self.rtp_sock = rtp_sock
        self.rtcp_sock = rtcp_sock
        self.released = False

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"PortPair({self.host}:{self.rtp}/{self.rtcp}, owner={self.owner!r}, {state})"


class PortAllocator:
    """Hands out bound (RTP even, RTCP = RTP + 1) socket pairs from ``first``..``last``."""

    def __init__(self, first: int = 20000, last: int = 22000, host: str = "127.0.0.1") -> None:
        for name, value in (("first", first), ("last", last)):
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
        self._held: dict[int, PortPair] = {}
        self._cursor = 0
        self.skipped_foreign = 0  # pairs passed over because another process holds a port

    @property
    def in_use(self) -> int:
        """Pairs handed out and not yet released."""
        return len(self._held)

    def owners(self) -> dict[str, int]:
        """Pairs held per owner (for leak assertions and diagnostics)."""
        return dict(Counter(p.owner for p in self._held.values()))

    def held(self) -> list[PortPair]:
        return list(self._held.values())

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def allocate(self, owner: str) -> PortPair:
        """Bind the next free pair for ``owner``; ``PortsExhausted`` when none is left."""
        skipped = 0
        for i in range(self.capacity):
            index = (self._cursor + i) % self.capacity
            rtp = self.first + 2 * index
            if rtp in self._held:
                continue
            try:
                rtp_sock = self._bind(rtp)
            except OSError as exc:
                if exc.errno not in _SKIP_ERRNOS:
                    raise PortsExhausted(self.first, self.last, self.in_use, skipped) from exc
                skipped += 1
                continue
            try:
                rtcp_sock = self._bind(rtp + 1)
            except OSError as exc:
                rtp_sock.close()
                if exc.errno not in _SKIP_ERRNOS:
                    raise PortsExhausted(self.first, self.last, self.in_use, skipped) from exc
                skipped += 1
                continue
            self._cursor = (index + 1) % self.capacity
            pair = PortPair(rtp, self.host, owner, rtp_sock, rtcp_sock)
            self._held[rtp] = pair
            self.skipped_foreign += skipped
            return pair
        self.skipped_foreign += skipped
        raise PortsExhausted(self.first, self.last, self.in_use, skipped)

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
