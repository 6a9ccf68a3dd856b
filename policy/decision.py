"""What the policy guard answers: a ``Decision`` per decision point.

A decision says what the edge must do (allow, reject with a SIP status, route to the emergency
route with the caller's location, nothing) and what else goes with it: notices to play before
connecting, recording commands, warnings for the user or the admin, a maximum duration. It
names the rule (its id, as in docs/TERMS.md) and the clause of the terms of service that decided
it (document and article, e.g. "Terms of service, 22 January 2026, Annex 4, point 1"), so that
every decision can be written to the audit log as evidence.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from softphone.policy.facts import Party


class Action(enum.Enum):
    ALLOW = "allow"  # go on (connect, answer, keep going)
    REJECT = "reject"  # final failure response: sip_status + reason_phrase
    ROUTE_EMERGENCY = "route_emergency"  # send to `route` with `location`
    NONE = "none"  # nothing to do for the call flow (a count, a warning, a recording command)


class RecordingAction(enum.Enum):
    START = "start"
    STOP = "stop"
    STOP_AND_DELETE = "stop_and_delete"  # objection: what was recorded is destroyed
    DELETE = "delete"  # retention or option-off purge of a stored recording


class Audience(enum.Enum):
    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True)
class Notice:
    """An announcement to play, in order, before the thing it guards happens."""

    notice_id: str
    to: Party
    text: str


@dataclass(frozen=True)
class RecordingCommand:
    action: RecordingAction
    recording_id: str


@dataclass(frozen=True)
class PolicyWarning:
    """Something a person should be told; it does not change the call flow."""

    rule_id: str
    clause: str
    message: str
    audience: Audience = Audience.USER


@dataclass(frozen=True)
class CounterBump:
    """A counter the guard moved, for metrics and the audit trail (the ledger holds the value)."""

    name: str
    key: str
    amount: float
    value: float


@dataclass(frozen=True)
class LocationPayload:
    """What the edge adds to an emergency INVITE (RFC 6442): the Geolocation header value, the
    Geolocation-Routing value, and the PIDF-LO body part with its Content-ID."""

    geolocation: str
    geolocation_routing: str
    content_id: str
    content_type: str
    body: str


@dataclass(frozen=True)
class Decision:
    action: Action
    rule_id: str
    clause: str
    point: str  # decision point: "call_attempt", "answer", "dtmf", ...
    call_id: str | None = None
    user_id: str | None = None
    account_id: str | None = None
    sip_status: int | None = None
    reason_phrase: str | None = None
    announcement: str | None = None  # announcement id the caller hears (see [announcements])
    user_message: str | None = None  # the reason the apps show
    notices: tuple[Notice, ...] = ()
    recording: tuple[RecordingCommand, ...] = ()
    route: str | None = None
    service_urn: str | None = None  # RFC 5031 emergency service (urn:service:sos.police, ...)
    location: LocationPayload | None = None
    present_as: str | None = None  # caller ID to present instead of the one asked for
    counters: tuple[CounterBump, ...] = ()
    warnings: tuple[PolicyWarning, ...] = ()
    billable: bool = False  # R-CLI-1/2: out of bundle, charged at the rate
    max_duration_s: int | None = None  # tear the call down after this long (trial minutes)
    retry_after_s: int | None = None
    strip_media: tuple[int, ...] = ()  # m-line indexes to refuse with port 0 (R-TECH-9)
    ai_allowed: bool = True  # R-EMERG-12: no AI feature on this call
    details: tuple[tuple[str, str], ...] = field(default=())  # evidence, as text pairs
    audited: bool = True  # False only for no-ops that must not be logged (plain DTMF digits)

    @property
    def allowed(self) -> bool:
        return self.action in (Action.ALLOW, Action.ROUTE_EMERGENCY)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, the body of an audit event."""
        out: dict[str, Any] = {
            "action": self.action.value,
            "rule_id": self.rule_id,
            "clause": self.clause,
            "point": self.point,
        }
        for name in ("call_id", "user_id", "account_id", "sip_status", "reason_phrase",
                     "announcement", "user_message", "route", "service_urn", "present_as",
                     "max_duration_s", "retry_after_s"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.billable:
            out["billable"] = True
        if not self.ai_allowed:
            out["ai_allowed"] = False
        if self.strip_media:
            out["strip_media"] = list(self.strip_media)
        if self.notices:
            out["notices"] = [{"id": n.notice_id, "to": n.to.value} for n in self.notices]
        if self.recording:
            out["recording"] = [{"action": r.action.value, "recording_id": r.recording_id}
                                for r in self.recording]
        if self.location is not None:
            # evidence of where the call said the caller was (the audit file is 0640)
            out["location"] = {"geolocation": self.location.geolocation,
                               "content_id": self.location.content_id,
                               "pidf_lo": self.location.body}
        if self.counters:
            out["counters"] = [{"name": c.name, "key": c.key, "amount": c.amount,
                                "value": c.value} for c in self.counters]
        if self.warnings:
            out["warnings"] = [{"rule_id": w.rule_id, "clause": w.clause, "message": w.message,
                                "audience": w.audience.value} for w in self.warnings]
        if self.details:
            out["details"] = dict(self.details)
        return out
