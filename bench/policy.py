"""Policy guard costs per call, each next to a reference run.

    .venv/bin/python bench/policy.py [--calls N]

Rows (per call = attempt + answer + end, the three decision points every call goes through):
  guard          the full PolicyGuard   | reference: a bare dict "is the user busy" counter
  store FULL     CounterStore, 2 commits per call (write-ahead at attempt and end)
  store NORMAL   the same with synchronous=NORMAL | reference for both: the same INSERTs,
                 synchronous=OFF (no fsync)
  audit          AuditLog fsync/event   | reference: AuditLog batched (fsync every 64)
The references bound what the rules and the durability cost on this machine: the guard's
decisions are pure CPU, the commit and the audit are disk flushes.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from softphone.policy import (
    Account,
    CallAttempt,
    CivicAddress,
    DeviceClass,
    Direction,
    Location,
    PolicyGuard,
    User,
    load,
)

from softphone.audit import AuditLog, FsyncPolicy
from softphone.ledgerstore import CounterStore

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_768_989_600.0


def users(n: int) -> list[User]:
    acct = Account("acct", "FR", seats=n, smart_pack=True, recording=True)
    loc = Location("FR", civic=CivicAddress("FR", a3="Paris"))
    return [User(f"u{i}", acct, location=loc, numbers=("+33187654321",)) for i in range(n)]


def run_guard(calls: int) -> tuple[float, PolicyGuard]:
    guard = PolicyGuard(load(ROOT / "configs" / "policy.toml"))
    us = users(50)
    start = time.perf_counter()
    for i in range(calls):
        u = us[i % len(us)]
        t = T0 + i
        cid = f"c{i}"
        guard.on_call_attempt(CallAttempt(cid, u, "desk", DeviceClass.SIP, Direction.OUTBOUND,
                                          f"0145{i % 400:06d}", "+33187654321", t))
        guard.on_answer(cid, t + 0.5)
        guard.on_call_end(cid, t + 30)
    return time.perf_counter() - start, guard


def run_reference_counter(calls: int) -> float:
    busy: dict[str, int] = {}
    start = time.perf_counter()
    for i in range(calls):
        u = f"u{i % 50}"
        if busy.get(u, 0) < 1:
            busy[u] = busy.get(u, 0) + 1
        busy[u] -= 1
    return time.perf_counter() - start


def run_store(calls: int, tmp: Path, synchronous: str = "FULL") -> float:
    guard = PolicyGuard(load(ROOT / "configs" / "policy.toml"))
    store = CounterStore(tmp / f"store-{synchronous}", synchronous)
    us = users(50)
    start = time.perf_counter()
    for i in range(calls):
        t = T0 + i
        guard.on_call_attempt(CallAttempt(f"c{i}", us[i % 50], "desk", DeviceClass.SIP,
                                          Direction.OUTBOUND, f"0145{i % 400:06d}",
                                          "+33187654321", t))
        store.commit(guard)  # write-ahead, as the edge does before answering
        guard.on_call_end(f"c{i}", t + 30)
        store.commit(guard)
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def run_store_reference(calls: int, tmp: Path) -> float:
    db = sqlite3.connect(tmp / "ref.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT "
               "UNIQUE, at REAL, kind TEXT, payload TEXT)")
    start = time.perf_counter()
    for i in range(calls):
        for kind in ("acq", "rel"):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR IGNORE INTO events (event_id, at, kind, payload) "
                       "VALUES (?, ?, ?, ?)", (f"{kind}:c{i}", T0 + i, kind, "{}"))
            db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def run_audit(calls: int, path: Path, policy: FsyncPolicy, guard: PolicyGuard) -> float:
    d = guard.on_dtmf("none", "9", T0)  # any decision; the body size is what matters
    from dataclasses import replace

    d = replace(d, audited=True, call_id="c", user_id="u", account_id="a")
    with AuditLog(path, policy=policy, batch_size=64) as log:
        start = time.perf_counter()
        for _ in range(calls * 3):  # three decisions per call
            log.record(d, now=T0)
        log.flush()
        return time.perf_counter() - start


def row(name: str, ours: float, ref_name: str, ref: float, calls: int) -> str:
    us_ours, us_ref = ours / calls * 1e6, ref / calls * 1e6
    return (f"| {name:<14} | {us_ours:>10.1f} | {calls / ours:>10.0f} | {ref_name:<26} | "
            f"{us_ref:>10.1f} | {ours / ref:>7.1f}x |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--disk-calls", type=int, default=300)
    args = p.parse_args(argv)
    best: Callable[[Callable[[], float]], float] = lambda f: min(f() for _ in range(3))  # noqa: E731
    g_time, guard = run_guard(args.calls)
    g_time = min(g_time, best(lambda: run_guard(args.calls)[0]))
    r_time = best(lambda: run_reference_counter(args.calls))
    with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp_s:
        tmp = Path(tmp_s)
        s_time = run_store(args.disk_calls, tmp)
        sn_time = run_store(args.disk_calls, tmp, "NORMAL")
        sr_time = run_store_reference(args.disk_calls, tmp)
        a_time = run_audit(args.disk_calls, tmp / "every.jsonl", FsyncPolicy.EVERY_EVENT, guard)
        ab_time = run_audit(args.disk_calls, tmp / "batch.jsonl", FsyncPolicy.BATCH, guard)
    print("| per call       |   ours µs  |  calls/s   | reference                  |  ref µs    |  ratio  |")
    print("|----------------|-----------:|-----------:|----------------------------|-----------:|--------:|")
    print(row("guard", g_time, "dict busy counter", r_time, args.calls))
    print(row("store FULL", s_time, "same INSERTs, no fsync", sr_time, args.disk_calls))
    print(row("store NORMAL", sn_time, "same INSERTs, no fsync", sr_time, args.disk_calls))
    print(row("audit (3/call)", a_time, "AuditLog batched (64)", ab_time, args.disk_calls))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
