"""The guard's memory: channels held per user, and the counters of the usage limits.

The ledger changes only by applying ``LedgerEvent``s, the same way live and on replay: the guard
decides, turns each change into an event with a stable id (``rel:<call_id>``,
``contact:<account>:<month>:<number>``), applies it, and queues it for the store. The store
keeps events by id, so writing one twice, or replaying the log after a restart, counts once.
The ledger does not lean on that: applying an event it has already applied, again or after
newer ones, changes nothing (a channel is taken once per call id and never after its end; the
answer time, a recording's entry and the R-REC-4 clock keep their first value; suspensions,
throttles and the recording option follow their latest change). tests/policy/
test_ledger_replay.py checks this on its own. Everything here is plain data and arithmetic: no
clock, no I/O.

What does not survive a restart on purpose (soft state, rebuilt by the phones): registrations,
the recent-attempt history of the automated-dialing heuristic, notices not yet played.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Scalar = str | int | float | bool


@dataclass(frozen=True)
class LedgerEvent:
    event_id: str
    kind: str
    at: float
    fields: Mapping[str, Scalar]

    def s(self, key: str) -> str:
        return str(self.fields[key])

    def f(self, key: str) -> float:
        return float(self.fields[key])

    def b(self, key: str) -> bool:
        return bool(self.fields[key])

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "kind": self.kind, "at": self.at,
                "fields": dict(self.fields)}


@dataclass
class ActiveCall:
    call_id: str
    user_id: str
    account_id: str
    device: str
    direction: str
    emergency: bool
    acquired_at: float
    seats: int
    recording_on: bool
    trial: bool  # counts against the trial minutes
    fair_use: bool  # outbound on the unlimited plan: counts in the usage rate
    short_calls: bool  # outbound non-emergency: a short one counts (R-LIMIT-1)
    answered_at: float | None = None
    last_seen: float = 0.0
    # call-scoped soft state
    notices_pending: tuple[str, ...] = ()
    recording: str = "none"  # none | pending | on | objected | stopped
    # its recording was deleted while the call was up (objection): a replayed start is ignored
    recording_deleted: bool = False


@dataclass
class RecordingEntry:
    recording_id: str
    call_id: str
    user_id: str
    account_id: str
    started_at: float
    ended_at: float | None = None


@dataclass
class Ledger:
    calls: dict[str, ActiveCall] = field(default_factory=dict)
    user_calls: dict[str, set[str]] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)  # call id -> end time (idempotency)
    short_user_day: dict[tuple[str, str], int] = field(default_factory=dict)
    short_account_day: dict[tuple[str, str], int] = field(default_factory=dict)
    breach_days: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    suspended_until: dict[str, float] = field(default_factory=dict)
    contacts: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    trial_users: dict[str, set[str]] = field(default_factory=dict)
    trial_seconds: dict[str, float] = field(default_factory=dict)
    talk_account_day: dict[tuple[str, str], float] = field(default_factory=dict)
    throttled_until: dict[str, float] = field(default_factory=dict)
    recordings: dict[str, RecordingEntry] = field(default_factory=dict)
    option_off: dict[str, float] = field(default_factory=dict)  # "user:<id>"/"account:<id>"
    # time of the latest change per suspended account, throttled user, recording-option scope:
    # an older event applied after a newer one (a replay, a retried commit) changes nothing
    last_change: dict[str, float] = field(default_factory=dict)
    applied: int = 0

    # -- queries -------------------------------------------------------------------------------

    def held(self, user_id: str) -> int:
        return len(self.user_calls.get(user_id, ()))

    def held_calls(self, user_id: str) -> list[ActiveCall]:
        return [self.calls[c] for c in sorted(self.user_calls.get(user_id, ()))]

    # -- the one way to change it ----------------------------------------------------------------

    def apply(self, ev: LedgerEvent) -> None:
        handler = _HANDLERS.get(ev.kind)
        if handler is None:
            raise ValueError(f"unknown ledger event kind {ev.kind!r} ({ev.event_id})")
        handler(self, ev)
        self.applied += 1

    def apply_all(self, events: Iterable[LedgerEvent]) -> None:
        for ev in events:
            self.apply(ev)

    def persistent_view(self) -> dict[str, Any]:
        """Everything that must survive a restart, in a comparable form (tests use it)."""
        return {
            "calls": sorted(self.calls), "ended": sorted(self.ended),
            "short_user_day": dict(self.short_user_day),
            "short_account_day": dict(self.short_account_day),
            "breach_days": {k: sorted(v) for k, v in self.breach_days.items()},
            "suspended_until": dict(self.suspended_until),
            "contacts": {k: sorted(v) for k, v in self.contacts.items()},
            "trial_users": {k: sorted(v) for k, v in self.trial_users.items()},
            "trial_seconds": dict(self.trial_seconds),
            "talk_account_day": dict(self.talk_account_day),
            "throttled_until": dict(self.throttled_until),
            "recordings": {k: (v.call_id, v.started_at, v.ended_at)
                           for k, v in self.recordings.items()},
            "option_off": dict(self.option_off),
            "last_change": dict(self.last_change),
        }


def _pairs(d: Mapping[tuple[str, str], Any]) -> list[list[Any]]:
    return [[k[0], k[1], sorted(v) if isinstance(v, set) else v] for k, v in sorted(d.items())]


def to_snapshot(led: Ledger) -> dict[str, Any]:
    """A JSON-ready copy of the ledger (the store's compaction point)."""
    return {
        "calls": [vars(c) | {"notices_pending": list(c.notices_pending)}
                  for c in led.calls.values()],
        "ended": dict(led.ended),
        "short_user_day": _pairs(led.short_user_day),
        "short_account_day": _pairs(led.short_account_day),
        "breach_days": _pairs(led.breach_days),
        "suspended_until": dict(led.suspended_until),
        "contacts": _pairs(led.contacts),
        "trial_users": {k: sorted(v) for k, v in led.trial_users.items()},
        "trial_seconds": dict(led.trial_seconds),
        "talk_account_day": _pairs(led.talk_account_day),
        "throttled_until": dict(led.throttled_until),
        "recordings": [vars(r) for r in led.recordings.values()],
        "option_off": dict(led.option_off),
        "last_change": dict(led.last_change),
        "applied": led.applied,
    }


def from_snapshot(snap: Mapping[str, Any]) -> Ledger:
    led = Ledger()
    for c in snap["calls"]:
        call = ActiveCall(**{**c, "notices_pending": tuple(c["notices_pending"])})
        led.calls[call.call_id] = call
        led.user_calls.setdefault(call.user_id, set()).add(call.call_id)
    led.ended = {str(k): float(v) for k, v in snap["ended"].items()}
    led.short_user_day = {(a, b): int(v) for a, b, v in snap["short_user_day"]}
    led.short_account_day = {(a, b): int(v) for a, b, v in snap["short_account_day"]}
    led.breach_days = {(a, b): set(v) for a, b, v in snap["breach_days"]}
    led.suspended_until = {str(k): float(v) for k, v in snap["suspended_until"].items()}
    led.contacts = {(a, b): set(v) for a, b, v in snap["contacts"]}
    led.trial_users = {str(k): set(v) for k, v in snap["trial_users"].items()}
    led.trial_seconds = {str(k): float(v) for k, v in snap["trial_seconds"].items()}
    led.talk_account_day = {(a, b): float(v) for a, b, v in snap["talk_account_day"]}
    led.throttled_until = {str(k): float(v) for k, v in snap["throttled_until"].items()}
    led.recordings = {r["recording_id"]: RecordingEntry(**r) for r in snap["recordings"]}
    led.option_off = {str(k): float(v) for k, v in snap["option_off"].items()}
    led.last_change = {str(k): float(v) for k, v in snap.get("last_change", {}).items()}
    led.applied = int(snap["applied"])
    return led


def _acquired(led: Ledger, ev: LedgerEvent) -> None:
    cid = ev.s("call_id")
    if cid in led.calls or cid in led.ended:
        return  # a channel is taken once per call, and never again after its end
    call = ActiveCall(
        call_id=cid, user_id=ev.s("user_id"), account_id=ev.s("account_id"),
        device=ev.s("device"), direction=ev.s("direction"), emergency=ev.b("emergency"),
        acquired_at=ev.at, seats=int(ev.f("seats")), recording_on=ev.b("recording_on"),
        trial=ev.b("trial"), fair_use=ev.b("fair_use"), short_calls=ev.b("short_calls"),
        last_seen=ev.at,
    )
    led.calls[cid] = call
    led.user_calls.setdefault(call.user_id, set()).add(cid)


def _answered(led: Ledger, ev: LedgerEvent) -> None:
    call = led.calls.get(ev.s("call_id"))
    if call is not None and call.answered_at is None:
        call.answered_at = ev.at
        call.last_seen = ev.at


def _released(led: Ledger, ev: LedgerEvent) -> None:
    cid = ev.s("call_id")
    call = led.calls.pop(cid, None)
    if call is None:
        return  # never held, or already released: nothing to give back, nothing to count
    held = led.user_calls.get(call.user_id)
    if held is not None:
        held.discard(cid)
        if not held:
            del led.user_calls[call.user_id]
    led.ended[cid] = ev.at
    day = ev.s("day")
    if ev.b("short"):
        k = (call.user_id, day)
        led.short_user_day[k] = led.short_user_day.get(k, 0) + 1
        a = (call.account_id, day)
        led.short_account_day[a] = led.short_account_day.get(a, 0) + 1
    talk = ev.f("talk_s")
    if call.fair_use and talk > 0:
        a = (call.account_id, day)
        led.talk_account_day[a] = led.talk_account_day.get(a, 0.0) + talk
    if call.trial and talk > 0:
        led.trial_seconds[call.user_id] = led.trial_seconds.get(call.user_id, 0.0) + talk
    rec = led.recordings.get(cid)  # a call's recording is named after the call
    if rec is not None and rec.ended_at is None:
        rec.ended_at = ev.at


def _breach(led: Ledger, ev: LedgerEvent) -> None:
    led.breach_days.setdefault((ev.s("account_id"), ev.s("month")), set()).add(ev.s("day"))


def _latest(led: Ledger, key: str, ev: LedgerEvent) -> bool:
    """Whether ``ev`` is not older than the last change of ``key`` (and record it if so)."""
    if ev.at < led.last_change.get(key, float("-inf")):
        return False
    led.last_change[key] = ev.at
    return True


def _suspended(led: Ledger, ev: LedgerEvent) -> None:
    if _latest(led, f"suspension:{ev.s('account_id')}", ev):
        led.suspended_until[ev.s("account_id")] = ev.f("until")


def _lifted(led: Ledger, ev: LedgerEvent) -> None:
    if _latest(led, f"suspension:{ev.s('account_id')}", ev):
        led.suspended_until.pop(ev.s("account_id"), None)


def _contact(led: Ledger, ev: LedgerEvent) -> None:
    led.contacts.setdefault((ev.s("account_id"), ev.s("month")), set()).add(ev.s("number"))


def _trial_user(led: Ledger, ev: LedgerEvent) -> None:
    led.trial_users.setdefault(ev.s("account_id"), set()).add(ev.s("user_id"))


def _throttled(led: Ledger, ev: LedgerEvent) -> None:
    if _latest(led, f"throttle:{ev.s('user_id')}", ev):
        led.throttled_until[ev.s("user_id")] = ev.f("until")


def _rec_started(led: Ledger, ev: LedgerEvent) -> None:
    rid = ev.s("recording_id")
    call = led.calls.get(ev.s("call_id"))
    # A recording starts during its call, once: applied again after the call ended, or after
    # an objection deleted it, it is a replay and changes nothing.
    if rid in led.recordings or call is None or call.recording_deleted:
        return
    led.recordings[rid] = RecordingEntry(rid, ev.s("call_id"), ev.s("user_id"),
                                         ev.s("account_id"), ev.at)


def _rec_deleted(led: Ledger, ev: LedgerEvent) -> None:
    rid = ev.s("recording_id")
    rec = led.recordings.pop(rid, None)
    call = led.calls.get(rec.call_id if rec is not None else rid)
    if call is not None:
        call.recording_deleted = True


def _rec_option(led: Ledger, ev: LedgerEvent) -> None:
    scope = ev.s("scope")
    if not _latest(led, f"option:{scope}", ev):
        return
    if ev.b("enabled"):
        led.option_off.pop(scope, None)
    else:
        led.option_off.setdefault(scope, ev.at)


def _pruned(led: Ledger, ev: LedgerEvent) -> None:
    """Forget what no rule can look at any more (old days, months, ended call ids)."""
    day, month, ended_before = ev.s("before_day"), ev.s("before_month"), ev.f("ended_before")
    for d in (led.short_user_day, led.short_account_day):
        for k in [k for k in d if k[1] < day]:
            del d[k]
    for k in [k for k in led.talk_account_day if k[1] < day]:
        del led.talk_account_day[k]
    for k2 in [k for k in led.breach_days if k[1] < month]:
        del led.breach_days[k2]
    for k2 in [k for k in led.contacts if k[1] < month]:
        del led.contacts[k2]
    for cid in [c for c, t in led.ended.items() if t < ended_before]:
        del led.ended[cid]
    for uid in [u for u, t in led.throttled_until.items() if t < ev.at]:
        del led.throttled_until[uid]
    for aid in [a for a, t in led.suspended_until.items() if t < ev.at]:
        del led.suspended_until[aid]


_HANDLERS = {
    "acquired": _acquired, "answered": _answered, "released": _released,
    "breach_day": _breach, "suspended": _suspended, "suspension_lifted": _lifted,
    "contact": _contact, "trial_user": _trial_user, "throttled": _throttled,
    "recording_started": _rec_started, "recording_deleted": _rec_deleted,
    "recording_option": _rec_option, "pruned": _pruned,
}
