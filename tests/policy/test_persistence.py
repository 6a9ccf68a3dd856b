"""softphone.ledgerstore: the ledger survives restarts without double counting, and a crash
mid-call releases the user's channel on restart (audited)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from softphone.policy import PolicyGuard

from softphone.audit import AuditLog
from softphone.ledgerstore import FILENAME, CounterStore, CounterStoreError, open_guard

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_768_989_600.0


def busy_day(guard: PolicyGuard, facts, n: int = 3) -> None:
    u = facts.user(account=facts.account(smart_pack=True, recording=True))
    for i in range(n):
        cid = f"c{i}"
        guard.on_call_attempt(facts.call(u, f"+3314567890{i}", call_id=cid, now=T0 + i * 60))
        guard.on_answer(cid, T0 + i * 60 + 2)
        guard.on_notice_played(cid, "recording-notice", T0 + i * 60 + 8)
        guard.on_call_end(cid, T0 + i * 60 + 12)


def test_wal_mode_and_replay(tmp_path, config, facts) -> None:
    store = CounterStore(tmp_path)
    guard = PolicyGuard(config, store.load())
    busy_day(guard, facts)
    assert store.commit(guard) > 0
    store.close()
    with sqlite3.connect(tmp_path / FILENAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with CounterStore(tmp_path) as again:
        assert again.load().persistent_view() == guard.state.persistent_view()


def test_committing_twice_counts_once(tmp_path, config, facts) -> None:
    guard = PolicyGuard(config)
    busy_day(guard, facts)
    events = guard.drain_events()
    with CounterStore(tmp_path) as store:
        assert store.append(events) == len(events)
        assert store.append(events) == 0  # a retried commit
        ledger = store.load()
    assert ledger.short_user_day == {("alice", "2026-01-21"): 3}
    assert len(ledger.contacts[("acct-1", "2026-01")]) == 3


def test_compaction_keeps_state_and_still_recognises_duplicates(tmp_path, config,
                                                               facts) -> None:
    store = CounterStore(tmp_path)
    guard = PolicyGuard(config, store.load())
    busy_day(guard, facts)
    events = list(guard.drain_events())
    store.append(events)
    store.compact(guard, T0 + 3600)
    assert store.event_count() == 0
    assert store.append(events) == 0  # ids are kept after compaction
    guard.on_call_attempt(facts.call(facts.user("bob"), call_id="after", now=T0 + 4000))
    store.commit(guard)
    store.close()
    with CounterStore(tmp_path) as again:
        assert again.load().persistent_view() == guard.state.persistent_view()


def test_crash_mid_call_releases_on_restart_and_audits(tmp_path, config) -> None:
    """A real process takes channels, commits, and dies without closing anything."""
    child = textwrap.dedent(f"""
        import os, sys
        from softphone.ledgerstore import CounterStore
        from softphone.policy import *
        cfg = load({str(ROOT / 'configs' / 'policy.toml')!r})
        store = CounterStore(sys.argv[1])
        guard = PolicyGuard(cfg, store.load())
        acct = Account("acct-1", "FR")
        alice, bob = User("alice", acct), User("bob", acct)
        T0 = {T0!r}
        def call(cid, u, dialed, now):
            return CallAttempt(cid, u, "desk", DeviceClass.SIP, Direction.OUTBOUND, dialed,
                               "+33187654321", now)
        guard.on_call_attempt(call("short", alice, "0145678901", T0))
        guard.on_call_end("short", T0 + 3)          # a short call, counted once
        guard.on_call_attempt(call("up-1", alice, "0145678902", T0 + 10))
        guard.on_answer("up-1", T0 + 12)
        guard.on_call_attempt(call("up-2", bob, "0145678903", T0 + 20))
        store.commit(guard)
        os._exit(9)                                   # crash: no close, no end of calls
    """)
    proc = subprocess.run([sys.executable, "-c", child, str(tmp_path)], timeout=60,
                          capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    audit_path = tmp_path / "audit.jsonl"
    guard, store, recovered = open_guard(config, tmp_path, now=T0 + 600)
    with AuditLog(audit_path) as audit:
        for d in recovered:
            audit.record(d)
    assert sorted(d.call_id for d in recovered) == ["up-1", "up-2"]
    assert guard.held("alice") == guard.held("bob") == 0
    assert guard.state.short_user_day == {("alice", "2026-01-21"): 1}
    store.close()
    lines = [json.loads(line) for line in audit_path.read_text().splitlines()]
    assert [(r["call_id"], r["point"], r["rule_id"]) for r in lines] == [
        ("up-1", "recovery", "R-CALLS-1"), ("up-2", "recovery", "R-CALLS-1")]
    assert all(r["details"]["reason"] == "restart" for r in lines)
    # a second restart finds nothing to release and counts nothing again
    guard2, store2, again = open_guard(config, tmp_path, now=T0 + 700)
    assert again == [] and guard2.state.short_user_day == {("alice", "2026-01-21"): 1}
    store2.close()


def test_a_file_that_is_not_a_database_is_refused(tmp_path) -> None:
    (tmp_path / FILENAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CounterStoreError, match=FILENAME):
        CounterStore(tmp_path)


def test_pruning_forgets_old_counters_and_replays_the_same(tmp_path, config, facts) -> None:
    store = CounterStore(tmp_path)
    guard = PolicyGuard(config, store.load())
    busy_day(guard, facts)  # January: short calls, contacts, recordings
    day = 86400.0
    assert guard.purge_due(T0 + 40 * day) == []  # recordings are kept 3 months
    view = guard.state.persistent_view()
    assert view["short_user_day"] == {} and view["contacts"] == {} and view["ended"] == []
    assert len(view["recordings"]) == 3
    store.commit(guard)
    store.close()
    with CounterStore(tmp_path) as again:
        assert again.load().persistent_view() == view
