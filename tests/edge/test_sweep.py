"""The channel sweep under the edge's teardown: live calls keep their channels, an orphan
(a channel no edge call holds any more) is released after ``stale_after_s`` and audited."""

from __future__ import annotations

from pathlib import Path

from softphone.policy.admission import CallAdmission
from softphone.policy.config import load_default
from softphone.policy.decision import Decision
from softphone.policy.facts import Account, User

from softphone.ledgerstore import open_guard

T0 = 1_768_989_600.0


def test_live_calls_stay_and_orphans_go(tmp_path: Path) -> None:
    guard, store, _ = open_guard(load_default(), tmp_path, T0)
    stale = guard.config.calls.stale_after_s
    account = Account("acct", "FR", seats=4)
    users = {u: User(u, account) for u in ("1001", "1002", "1003", "1004")}
    audited: list[Decision] = []
    admission = CallAdmission(guard, users.get, commit=lambda: store.commit(guard),
                              on_decision=audited.append)
    assert admission.admit("live", "1001", "1002", inbound_local=True, now=T0) is None
    assert admission.admit("orphan", "1003", "1004", inbound_local=True, now=T0) is None
    # a long call on hold sends nothing, but it is still an edge call: kept
    swept = {minute: admission.sweep(["live"], T0 + 60 * minute)
             for minute in range(1, int(2 * stale / 60))}
    # the orphan goes at the first sweep after stale_after_s without a sign of life, once
    when = [m for m, ds in swept.items() if ds]
    assert when == [int(stale // 60) + 1], when
    # "orphan" left the edge without a release (say, an error between admission and media)
    assert guard.held("1003") == 0 and guard.held("1004") == 0
    assert guard.held("1001") == 1 and guard.held("1002") == 1
    released = [d for d in audited if d.point == "call_end"]
    assert sorted(d.user_id or "" for d in released) == ["1003", "1004"]
    assert all(dict(d.details)["reason"] == "stale" for d in released)
    store.close()
