"""The location service of the edge's registrar (RFC 3261 §10.3): AoR -> contact bindings.

Pure and clock-driven (``now`` is passed in): bindings expire by themselves, several devices of
one user are several bindings of one AoR (they are one user for the policy guard), and a
REGISTER with ``Expires: 0`` or ``Contact: *`` removes bindings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MIN_EXPIRES = 60
MAX_EXPIRES = 3600
DEFAULT_EXPIRES = 3600
MAX_BINDINGS_PER_AOR = 8


@dataclass(frozen=True)
class Binding:
    """One registered contact of a user.

    ``source`` is where the REGISTER came from (transport, host, port, connection): requests
    to this contact go there, which also works behind NAT (RFC 5626 in spirit).
    """

    aor: str                 # the extension, e.g. "1001"
    contact: str             # the Contact URI as registered
    source: tuple[str, str, int, int | None]
    expires_at: float
    call_id: str
    cseq: int
    device_class: str = "sip"   # "sip" desk phone or "webrtc" browser (R-TECH-1)
    user_agent: str = ""
    # RFC 3327: the REGISTER's Path values, first hop first; requests to this contact go to
    # the first hop with these as Route headers (a front proxy for TLS, WebSocket or NAT)
    path: tuple[str, ...] = ()

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


class RegistrationError(Exception):
    """A REGISTER that must be refused; ``status`` and ``reason`` go into the response."""

    def __init__(self, status: int, reason: str, *, min_expires: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.min_expires = min_expires


class LocationService:
    def __init__(self, *, min_expires: int = MIN_EXPIRES, max_expires: int = MAX_EXPIRES,
                 max_bindings: int = MAX_BINDINGS_PER_AOR) -> None:
        self._bindings: dict[str, dict[str, Binding]] = {}
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.max_bindings = max_bindings

    def register(self, aor: str, contacts: Iterable[tuple[str, int | None]], *,
                 default_expires: int | None, source: tuple[str, str, int, int | None],
                 call_id: str, cseq: int, now: float, device_class: str = "sip",
                 user_agent: str = "", path: tuple[str, ...] = ()) -> list[Binding]:
        """Apply one REGISTER's contacts (uri, expires param or None); return the bindings.

        Raises :class:`RegistrationError` (423 Interval Too Brief, 400 for an out-of-order
        CSeq of the same Call-ID, 403 beyond the binding limit) and then changes nothing.
        """
        self.expire(now)
        current = dict(self._bindings.get(aor, {}))
        for uri, expires in contacts:
            secs = expires if expires is not None else default_expires
            if secs is None:
                secs = DEFAULT_EXPIRES
            old = current.get(uri)
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                raise RegistrationError(400, "CSeq out of order for this Call-ID")
            if secs == 0:
                current.pop(uri, None)
                continue
            if secs < self.min_expires:
                raise RegistrationError(423, "Interval Too Brief", min_expires=self.min_expires)
            secs = min(secs, self.max_expires)
            current[uri] = Binding(aor=aor, contact=uri, source=source, expires_at=now + secs,
                                   call_id=call_id, cseq=cseq, device_class=device_class,
                                   user_agent=user_agent, path=path)
        if len(current) > self.max_bindings:
            raise RegistrationError(403, f"At most {self.max_bindings} devices per user")
        if current:
            self._bindings[aor] = current
        else:
            self._bindings.pop(aor, None)
        return list(current.values())

    def unregister_all(self, aor: str, *, call_id: str, cseq: int) -> None:
        """``Contact: *`` with ``Expires: 0``."""
        self._bindings.pop(aor, None)

    def lookup(self, aor: str, now: float) -> list[Binding]:
        found = self._bindings.get(aor)
        if not found:
            return []
        live = [b for b in found.values() if b.expires_at > now]
        return sorted(live, key=lambda b: -b.expires_at)

    def expire(self, now: float) -> int:
        """Drop expired bindings; returns how many were dropped."""
        dropped = 0
        for aor in list(self._bindings):
            live = {u: b for u, b in self._bindings[aor].items() if b.expires_at > now}
            dropped += len(self._bindings[aor]) - len(live)
            if live:
                self._bindings[aor] = live
            else:
                del self._bindings[aor]
        return dropped

    def bindings(self) -> list[Binding]:
        """Every binding held (some may have expired since the last ``expire``)."""
        return [b for per in self._bindings.values() for b in per.values()]

    def connections(self, now: float) -> set[int]:
        """The stream connections (conn ids) that carry a live binding: the transport must
        keep them, a registered phone is reached on them."""
        return {b.source[3] for v in self._bindings.values() for b in v.values()
                if b.expires_at > now and b.source[3] is not None}

    def __len__(self) -> int:
        return sum(len(v) for v in self._bindings.values())
