"""Authentication failures: the security log and the lock-out (terms R-ACCT-5, credential
security: brute force on REGISTER/INVITE digest is stopped at the edge).

Every failure (bad or replayed credentials, another user's credentials) is one JSON line in
``<data dir>/security.jsonl``, in a fixed key order a fail2ban filter can anchor on
(docs/fail2ban/softphone-edge.conf)::

    {"ts": "2026-12-06T22:40:01.250Z", "event": "auth-failure", "src": "127.0.0.2",
     "sport": 5070, "user": "1001", "method": "REGISTER", "reason": "unknown user or wrong password"}

``max_failures`` failures within ``window_s`` from one source address lock that address out
for ``lockout_s``; as many failures for one user (from any addresses) lock that user out for
the same time, except from addresses where that user authenticated successfully before (so a
stranger guessing a user's password cannot lock the user's own phone out). Each lock-out is
one line too (``"event": "lockout"``). What a locked-out request gets is the B2BUA's business
(403, emergency calls excepted). :class:`AuthLockout` is pure (times are passed in); memory is
bounded (``max_tracked`` addresses and users, oldest forgotten first).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

# The fail2ban filter's anchor: these keys, in this order, at the start of every line.
LINE_KEYS = ("ts", "event", "src", "sport", "user", "method", "reason")


@dataclass(frozen=True)
class SecuritySettings:
    max_failures: int = 10
    window_s: float = 60.0
    lockout_s: float = 600.0


@dataclass(frozen=True)
class Lockout:
    """A lock-out that has just started: of an address (``kind`` "source") or a user."""

    kind: str
    key: str
    until: float
    failures: int


class AuthLockout:
    """Failures per source address and per user in a sliding window; lock-outs."""

    def __init__(self, settings: SecuritySettings, *, max_tracked: int = 10000) -> None:
        self.settings = settings
        self._max = max_tracked
        self._failures: dict[str, OrderedDict[str, deque[float]]] = {
            "source": OrderedDict(), "user": OrderedDict()}
        self._locked: dict[str, dict[str, float]] = {"source": {}, "user": {}}
        # user -> addresses it authenticated from (exempt from that user's lock-out)
        self._trusted: OrderedDict[str, set[str]] = OrderedDict()

    def _count(self, kind: str, key: str, now: float) -> int:
        table = self._failures[kind]
        times = table.pop(key, None) or deque()
        table[key] = times  # most recent last
        times.append(now)
        while times and times[0] <= now - self.settings.window_s:
            times.popleft()
        while len(table) > self._max:
            table.popitem(last=False)
        return len(times)

    def failed(self, source: str, user: str, now: float) -> list[Lockout]:
        """Record one failure; the lock-outs it starts (none, the address's, the user's)."""
        started: list[Lockout] = []
        for kind, key in (("source", source), ("user", user)):
            if not key or self._until(kind, key, now) is not None:
                continue
            n = self._count(kind, key, now)
            if n >= self.settings.max_failures and self.settings.lockout_s > 0:
                until = now + self.settings.lockout_s
                self._locked[kind][key] = until
                self._failures[kind].pop(key, None)
                started.append(Lockout(kind, key, until, n))
        return started

    def succeeded(self, source: str, user: str) -> None:
        """``user`` authenticated from ``source``: that address is never locked out for
        that user's failures (its own address's failures still count)."""
        known = self._trusted.pop(user, set())
        known.add(source)
        while len(known) > 16:
            known.pop()
        self._trusted[user] = known
        while len(self._trusted) > self._max:
            self._trusted.popitem(last=False)

    def _until(self, kind: str, key: str, now: float) -> float | None:
        until = self._locked[kind].get(key)
        if until is None:
            return None
        if until <= now:
            del self._locked[kind][key]
            return None
        return until

    def locked(self, source: str, user: str, now: float) -> str | None:
        """Why a request from ``source`` claiming ``user`` is refused now, or None."""
        if self._until("source", source, now) is not None:
            return "source locked out"
        if user and self._until("user", user, now) is not None \
                and source not in self._trusted.get(user, ()):
            return "user locked out"
        return None


class SecurityLog:
    """``security.jsonl``: one JSON object per line, written and flushed at once."""

    def __init__(self, path: Path | None, *, wall: type[datetime] = datetime) -> None:
        self.path = path
        self._wall = wall
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def write(self, event: str, src: str, sport: int, user: str, method: str,
              reason: str) -> dict[str, object]:
        now = self._wall.now(UTC)
        entry: dict[str, object] = {
            "ts": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            "event": event, "src": src, "sport": sport, "user": user, "method": method,
            "reason": reason}
        if self._file is not None:
            self._file.write(json.dumps(entry, ensure_ascii=True) + "\n")
            self._file.flush()
        return entry

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Security:
    """What the B2BUA calls: ``auth_failed`` where it refuses credentials, ``succeeded`` when
    it accepts them, ``locked`` before anything else."""

    def __init__(self, settings: SecuritySettings, log: SecurityLog,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lockout = AuthLockout(settings)
        self.log = log
        self.settings = settings
        self.clock = clock
        self.refused = 0  # requests refused while locked out

    def auth_failed(self, src: str, sport: int, user: str, method: str,
                    reason: str) -> list[Lockout]:
        now = self.clock()
        self.log.write("auth-failure", src, sport, user, method, reason)
        started = self.lockout.failed(src, user, now)
        for lock in started:
            self.log.write("lockout", src, sport, user, method,
                           f"{lock.kind} {lock.key}: {lock.failures} failures within "
                           f"{self.settings.window_s:g} s, locked out for "
                           f"{self.settings.lockout_s:g} s")
        return started

    def succeeded(self, src: str, user: str) -> None:
        self.lockout.succeeded(src, user)

    def locked(self, src: str, user: str) -> str | None:
        return self.lockout.locked(src, user, self.clock())
