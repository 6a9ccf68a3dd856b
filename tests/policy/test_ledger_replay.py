"""``Ledger.apply`` on its own: a replayed, duplicated or reordered event changes nothing.

The store keeps events by id, but the ledger must not lean on it: after a restart the log is
replayed into a ledger rebuilt from a snapshot, and a retried commit may carry events the
ledger has already applied. Four direct cases (each one a one-line change of
policy/ledger.py that the rest of the suite let through), then a property over logs shaped
like the ones the guard writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from softphone.policy.ledger import Ledger, LedgerEvent, Scalar, from_snapshot, to_snapshot

T0 = 1_768_989_600.0  # 2026-01-21 10:00 UTC
DAY = 86400.0


def ev(event_id: str, kind: str, at: float, **fields: Scalar) -> LedgerEvent:
    return LedgerEvent(event_id, kind, at, fields)


def acquired(cid: str, at: float, user: str = "alice", account: str = "acct-1", *,
             trial: bool = False, recording_on: bool = False) -> LedgerEvent:
    return ev(f"acq:{cid}", "acquired", at, call_id=cid, user_id=user, account_id=account,
              device="desk", direction="outbound", emergency=False, seats=1,
              recording_on=recording_on, trial=trial, fair_use=True, short_calls=True)


def day_of(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).date().isoformat()


def released(cid: str, at: float, acquired_at: float, talk_s: float = 0.0,
             short: bool = False) -> LedgerEvent:
    return ev(f"rel:{cid}", "released", at, call_id=cid, day=day_of(acquired_at), short=short,
              talk_s=talk_s, reason="bye")


def option(scope: str, at: float, enabled: bool) -> LedgerEvent:
    return ev(f"recopt:{scope}:{at!r}:{enabled}", "recording_option", at, scope=scope,
              enabled=enabled)


def rec_started(cid: str, at: float, user: str = "alice",
                account: str = "acct-1") -> LedgerEvent:
    return ev(f"recstart:{cid}", "recording_started", at, recording_id=cid, call_id=cid,
              user_id=user, account_id=account)


def state(led: Ledger) -> str:
    """Everything the ledger holds, in a comparable form (the snapshot without its event
    counter, which counts applications, not state)."""
    snap = to_snapshot(led)
    del snap["applied"]
    snap["calls"] = sorted(snap["calls"], key=lambda c: c["call_id"])
    snap["recordings"] = sorted(snap["recordings"], key=lambda r: r["recording_id"])
    snap["user_calls"] = {u: sorted(c) for u, c in sorted(led.user_calls.items())}
    return json.dumps(snap, sort_keys=True)


def applied(events: Sequence[LedgerEvent], led: Ledger | None = None) -> Ledger:
    led = led if led is not None else Ledger()
    led.apply_all(events)
    return led


# -- the four direct cases -----------------------------------------------------------------------


def test_an_acquire_replayed_after_the_release_takes_no_channel() -> None:
    """acquired -> released -> the same acquired again: the call stays ended, the user holds
    nothing, and a second release counts nothing twice."""
    acq, rel = acquired("c1", T0), released("c1", T0 + 5, T0, short=True)
    led = applied([acq, rel, acq])
    assert led.held("alice") == 0 and "c1" not in led.calls and led.ended == {"c1": T0 + 5}
    led.apply(rel)
    assert led.short_user_day == {("alice", day_of(T0)): 1}


def test_a_second_recording_off_keeps_the_first_deletion_clock() -> None:
    """R-REC-4: the export window runs from when the option went off; another "off" later (a
    second admin action, or the edge telling it again at start) does not restart it."""
    led = applied([option("user:alice", T0, False), option("user:alice", T0 + 10 * DAY, False)])
    assert led.option_off == {"user:alice": T0}


def test_a_replayed_answer_keeps_the_first_answer_time() -> None:
    """The answer time is where talk time, trial minutes and fair-use time start: an
    ``answered`` for the same call later (replayed or from another fork) does not move it."""
    led = applied([acquired("c1", T0, trial=True), ev("ans:c1", "answered", T0 + 2, call_id="c1"),
                   ev("ans:c1", "answered", T0 + 40, call_id="c1")])
    call = led.calls["c1"]
    assert (call.answered_at, call.last_seen) == (T0 + 2, T0 + 2)


def test_a_recording_start_replayed_after_the_release_keeps_the_entry() -> None:
    """The entry keeps its start and its end (the retention clock, R-REC-3) when the
    ``recording_started`` event is applied again after the call ended."""
    start = rec_started("c1", T0 + 8)
    led = applied([acquired("c1", T0, recording_on=True),
                   ev("ans:c1", "answered", T0 + 2, call_id="c1"), start,
                   released("c1", T0 + 60, T0, talk_s=58.0), start])
    rec = led.recordings["c1"]
    assert (rec.started_at, rec.ended_at) == (T0 + 8, T0 + 60)


def test_a_recording_start_replayed_after_its_deletion_brings_nothing_back() -> None:
    """An objection deleted the recording mid-call; the start applied again (while the call is
    still up, or after it ended) does not recreate an entry the purge job would then chase."""
    start = rec_started("c1", T0 + 8)
    deleted = ev("recdel:c1", "recording_deleted", T0 + 20, recording_id="c1",
                 reason="objection")
    led = applied([acquired("c1", T0, recording_on=True),
                   ev("ans:c1", "answered", T0 + 2, call_id="c1"), start, deleted, start])
    assert led.recordings == {}
    led.apply_all([released("c1", T0 + 60, T0, talk_s=58.0), start])
    assert led.recordings == {}


def test_an_older_suspension_or_option_change_applied_late_changes_nothing() -> None:
    """Last change wins per account, user or scope: a suspension lifted stays lifted, an
    option back on stays on, a newer throttle keeps its end, when an older event is applied
    again after the newer one."""
    susp = ev("susp:acct-1:2026-01:3", "suspended", T0, account_id="acct-1", until=T0 + 7 * DAY)
    lift = ev(f"lift:acct-1:{T0 + DAY!r}", "suspension_lifted", T0 + DAY, account_id="acct-1")
    off, on = option("account:acct-1", T0, False), option("account:acct-1", T0 + DAY, True)
    thr1 = ev(f"throttle:alice:{T0!r}", "throttled", T0, user_id="alice", until=T0 + 3600)
    thr2 = ev(f"throttle:alice:{T0 + 7200!r}", "throttled", T0 + 7200, user_id="alice",
              until=T0 + 10800)
    led = applied([susp, lift, off, on, thr1, thr2])
    before = state(led)
    led.apply_all([susp, off, thr1])
    assert state(led) == before
    assert led.suspended_until == {} and led.option_off == {}
    assert led.throttled_until == {"alice": T0 + 10800}


def test_a_snapshot_from_before_these_fields_still_loads() -> None:
    """A snapshot written before the ledger kept its last-change times loads as it did."""
    led = applied([acquired("c1", T0), option("user:alice", T0, False)])
    snap = to_snapshot(led)
    snap.pop("last_change", None)
    assert from_snapshot(snap).option_off == {"user:alice": T0}


# -- the property ----------------------------------------------------------------------------------

CALLS = [f"c{i}" for i in range(6)]
USERS = {"alice": "acct-1", "bob": "acct-1", "carol": "acct-2"}


@st.composite
def logs(draw: st.DrawFn) -> list[LedgerEvent]:
    """A log as the guard writes it: per call acquired -> [answered -> [recording started ->
    [deleted on objection]]] -> released -> [deleted by the purge]; in between, counters,
    suspensions and lifts, throttles and recording option changes; time only moves forward."""
    t = T0
    out: list[LedgerEvent] = []
    owner = {c: draw(st.sampled_from(sorted(USERS))) for c in CALLS}
    phase: dict[str, str] = {}  # "" new, "up", "answered", "rec", "recdel", "ended", "gone"
    started: dict[str, float] = {}
    answered_at: dict[str, float] = {}
    steps = draw(st.lists(st.tuples(
        st.sampled_from(["call", "call", "call", "contact", "trial", "breach", "susp", "lift",
                         "throttle", "opt"]),
        st.sampled_from(CALLS[:3]) | st.sampled_from(CALLS), st.floats(0.5, 4 * 3600.0),
        st.booleans()), max_size=60))
    for kind, cid, dt, flag in steps:
        t += dt
        user = owner[cid]
        acct = USERS[user]
        p = phase.get(cid, "")
        if kind == "call" and p == "":
            out.append(acquired(cid, t, user, acct, trial=flag, recording_on=True))
            phase[cid], started[cid] = "up", t
        elif kind == "call" and p == "up" and flag:
            out.append(ev(f"ans:{cid}", "answered", t, call_id=cid))
            phase[cid], answered_at[cid] = "answered", t
        elif kind == "call" and p == "answered" and flag:
            out.append(rec_started(cid, t, user, acct))
            phase[cid] = "rec"
        elif kind == "call" and p == "rec" and flag:
            out.append(ev(f"recdel:{cid}", "recording_deleted", t, recording_id=cid,
                          reason="objection"))
            phase[cid] = "recdel"
        elif kind == "call" and p in ("up", "answered", "rec", "recdel"):
            talk = t - answered_at[cid] if cid in answered_at else 0.0
            out.append(released(cid, t, started[cid], talk_s=talk,
                                short=(talk if talk else t - started[cid]) < 15))
            phase[cid] = "ended" if p == "rec" else "gone"
        elif kind == "call" and p == "ended":
            out.append(ev(f"recdel:{cid}", "recording_deleted", t, recording_id=cid,
                          reason="R-REC-3"))
            phase[cid] = "gone"
        elif kind == "contact":
            month = day_of(t)[:7]
            number = f"+3314567890{CALLS.index(cid)}"
            out.append(ev(f"contact:{acct}:{month}:{number}", "contact", t, account_id=acct,
                          month=month, number=number))
        elif kind == "trial":
            out.append(ev(f"trialuser:{acct}:{user}", "trial_user", t, account_id=acct,
                          user_id=user))
        elif kind == "breach":
            out.append(ev(f"breach:{acct}:{day_of(t)}", "breach_day", t, account_id=acct,
                          day=day_of(t), month=day_of(t)[:7]))
        elif kind == "susp":
            out.append(ev(f"susp:{acct}:{day_of(t)[:7]}:{t!r}", "suspended", t, account_id=acct,
                          until=t + 7 * DAY))
        elif kind == "lift":
            out.append(ev(f"lift:{acct}:{t!r}", "suspension_lifted", t, account_id=acct))
        elif kind == "throttle":
            out.append(ev(f"throttle:{user}:{t!r}", "throttled", t, user_id=user,
                          until=t + 3600))
        elif kind == "opt":
            out.append(option(f"user:{user}" if flag else f"account:{acct}", t,
                              CALLS.index(cid) % 2 == 0))
    return out


PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(log=logs(), data=st.data())
def test_any_prefix_applied_twice_is_the_prefix_applied_once(log: list[LedgerEvent],
                                                             data: Any) -> None:
    k = data.draw(st.integers(0, len(log)), label="prefix")
    prefix = log[:k]
    assert state(applied(prefix + prefix)) == state(applied(prefix))
    # a restart replays the whole log into a ledger that already holds part of it
    assert state(applied(log, applied(prefix))) == state(applied(log))


@PROPERTY
@given(log=logs(), data=st.data())
def test_duplicates_and_reorderings_of_applied_events_change_nothing(
        log: list[LedgerEvent], data: Any) -> None:
    again = data.draw(st.lists(st.sampled_from(log), max_size=30) if log else st.just([]),
                      label="applied again")
    once = applied(log)
    assert state(applied(again, once)) == state(applied(log))


@PROPERTY
@given(log=logs(), data=st.data())
def test_a_snapshot_then_the_rest_of_the_log_is_the_whole_log(log: list[LedgerEvent],
                                                              data: Any) -> None:
    """The store's compaction point: snapshot after k events, JSON round trip, then the
    events from some j <= k on (the ones after the snapshot, and some it already covers)."""
    k = data.draw(st.integers(0, len(log)), label="snapshot at")
    j = data.draw(st.integers(0, k), label="replay from")
    snap = json.loads(json.dumps(to_snapshot(applied(log[:k]))))
    assert state(applied(log[j:], from_snapshot(snap))) == state(applied(log))
