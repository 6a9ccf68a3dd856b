"""Properties of the usage limits over random traffic."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from softphone.policy import (
    Account,
    Action,
    CallAttempt,
    DeviceClass,
    Direction,
    PolicyGuard,
    User,
    load,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load(ROOT / "configs" / "policy.toml")
T0 = 1_768_989_600.0


@settings(max_examples=200, deadline=None)
@given(numbers=st.lists(st.integers(0, 12), min_size=1, max_size=60),
       national=st.lists(st.booleans(), min_size=60, max_size=60))
def test_smart_cap_holds_and_known_contacts_stay_callable(numbers: list[int],
                                                         national: list[bool]) -> None:
    cap = 5
    cfg = replace(CONFIG, limits=replace(CONFIG.limits, smart=replace(
        CONFIG.limits.smart, max_contacts=cap, warn_at=cap)))
    guard = PolicyGuard(cfg)
    user = User("alice", Account("acct", "FR", smart_pack=True))
    known: set[str] = set()
    for i, n in enumerate(numbers):
        e164 = f"+3314500{n:04d}"
        dialed = f"014500{n:04d}" if national[i] else e164  # two spellings, one contact
        d = guard.on_call_attempt(CallAttempt(f"c{i}", user, "desk", DeviceClass.SIP,
                                              Direction.OUTBOUND, dialed, "+33187654321",
                                              T0 + i * 60))
        if e164 in known or len(known) < cap:
            assert d.action is Action.ALLOW
            known.add(e164)
        else:
            assert d.action is Action.REJECT and d.rule_id == "R-LIMIT-4"
        guard.on_call_end(f"c{i}", T0 + i * 60 + 30)
        assert guard.state.contacts.get(("acct", "2026-01"), set()) == known


@settings(max_examples=100, deadline=None)
@given(per_user=st.lists(st.integers(0, 130), min_size=1, max_size=4),
       idle_seats=st.integers(0, 2))
def test_breach_day_iff_account_average_reaches_60(per_user: list[int], idle_seats: int) -> None:
    acct = Account("acct", "FR", seats=len(per_user) + idle_seats)
    guard = PolicyGuard(CONFIG)
    t = T0
    for u_index, count in enumerate(per_user):
        user = User(f"u{u_index}", acct)
        for i in range(count):
            cid = f"{u_index}-{i}"
            guard.on_call_attempt(CallAttempt(cid, user, "desk", DeviceClass.SIP,
                                              Direction.OUTBOUND, "0145678901", "+33187654321",
                                              t))
            guard.on_call_end(cid, t + 3)
            t += 4  # all within the same Paris day (T0 is 11:00; at most 35 minutes of calls)
    average = sum(per_user) / acct.seats
    breached = bool(guard.state.breach_days)
    assert breached == (average >= 60), (per_user, acct.seats)  # "atteint ce seuil"
