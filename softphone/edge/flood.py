"""The edge's flood guard: the per-source request budget in front of the SIP core, with the
trunk exempt and emergency requests in a lane of their own (``edge.emergency_lane``)."""

from __future__ import annotations

from softphone.edge.config import EdgeConfig
from softphone.edge.emergency_lane import EmergencyLane
from softphone.sip.ratelimit import RequestRateLimiter


class FloodGuard:
    """The per-source request budget of ``sip.flood_rate_per_s``, except for the trunk: the
    provider sends every inbound call of the site from one address. Emergency requests have a
    lane of their own (``edge.emergency_lane``): a budget of their own per source for the
    INVITE/ACK/CANCEL of a dialled emergency call, none at all in a live emergency dialog."""

    def __init__(self, cfg: EdgeConfig, lane: EmergencyLane | None = None) -> None:
        self.limiter = RequestRateLimiter(max(1, cfg.flood_rate), cfg.flood_burst)
        self.emergency = RequestRateLimiter(max(1, cfg.flood_rate), cfg.flood_burst)
        self.lane = lane
        self.trusted: set[str] = set()

    def admit(self, data: bytes, host: str, now: float) -> bool:
        if host in self.trusted:
            return True
        kind = self.lane.kind(data) if self.lane is not None else None
        if kind == "dialog":
            return True
        if kind == "dialled":
            return self.emergency.allow(host, now)
        return self.limiter.allow_packet(data, host, now)

    def charge(self, host: str, now: float) -> None:
        """A response from ``host`` that matched no transaction costs a request's token."""
        if host not in self.trusted:
            self.limiter.charge(host, now)
