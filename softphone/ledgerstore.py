"""Persistence of the policy ledger (channels held, usage counters, recordings) in SQLite.

The guard changes its ledger only through events with stable ids; this store keeps those events
in a WAL-mode SQLite file under the data dir and rebuilds the ledger by replaying them. An event
is stored once (``INSERT OR IGNORE`` on its id), so committing the same events twice, or a
restart in the middle of a commit, never counts anything twice. By default ``synchronous=FULL``:
a commit that returned is on disk, which is what the edge relies on before answering the INVITE.

Compaction writes a snapshot of the ledger and drops the payload of the events it covers; their
ids stay for ``KEEP_IDS_S`` so a late duplicate is still recognised.

After a crash, :func:`open_guard` rebuilds the guard and releases every channel that was still
held (those calls died with the process), returning the decisions so they can be audited.

Integration (the edge, at each decision point)::

    guard, store, recovered = open_guard(config, data_dir, now=time.time())
    for d in recovered: audit.record(d)
    ...
    decision = guard.on_call_attempt(attempt)
    store.commit(guard)          # before the response leaves: write-ahead
    audit.record(decision)
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from softphone.policy.config import PolicyConfig
from softphone.policy.decision import Decision
from softphone.policy.guard import PolicyGuard
from softphone.policy.ledger import Ledger, LedgerEvent, from_snapshot

FILENAME = "policy-ledger.sqlite3"
KEEP_IDS_S = 35 * 86400.0
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT            -- NULL once covered by a snapshot
);
CREATE TABLE IF NOT EXISTS snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    body TEXT NOT NULL
);
"""


class CounterStoreError(RuntimeError):
    """The ledger database cannot be opened or is not ours (names the file)."""


class CounterStore:
    """``synchronous="FULL"`` (default): a returned commit survives power loss. ``"NORMAL"``:
    it survives the process crashing (WAL is never corrupted) but the last commits may be lost
    on power loss; about 50x cheaper per commit on a disk with slow flushes (bench/policy.py).
    Either way, committing once per event-loop turn batches all decisions made in it."""

    def __init__(self, data_dir: str | Path, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        self.path = Path(data_dir) / FILENAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise CounterStoreError(f"{self.path}: schema {row[0]}, expected {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise CounterStoreError(f"{self.path}: {exc}") from None
        if str(mode).lower() != "wal":
            raise CounterStoreError(f"{self.path}: WAL mode refused ({mode})")
        self._lock = threading.Lock()

    # -- writes

    def append(self, events: Iterable[LedgerEvent]) -> int:
        """Store events in one transaction; returns how many were new (duplicates ignored)."""
        rows = [(e.event_id, e.at, e.kind, json.dumps(dict(e.fields), sort_keys=True))
                for e in events]
        if not rows:
            return 0
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                new = 0
                for row in rows:
                    cur.execute("INSERT OR IGNORE INTO events (event_id, at, kind, payload) "
                                "VALUES (?, ?, ?, ?)", row)
                    new += cur.rowcount
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return new

    def commit(self, guard: PolicyGuard) -> int:
        """Persist what the guard changed since the last commit."""
        return self.append(guard.drain_events())

    def compact(self, guard: PolicyGuard, now: float) -> None:
        """Snapshot the ledger; events it covers keep only their id (for KEEP_IDS_S)."""
        with self._lock:
            pending, snapshot = guard.checkpoint()
            body = json.dumps(snapshot, sort_keys=True)
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for e in pending:
                    cur.execute("INSERT OR IGNORE INTO events (event_id, at, kind, payload) "
                                "VALUES (?, ?, ?, ?)",
                                (e.event_id, e.at, e.kind, json.dumps(dict(e.fields))))
                seq = cur.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
                cur.execute("INSERT OR REPLACE INTO snapshot (id, seq, body) VALUES (1, ?, ?)",
                            (seq, body))
                cur.execute("UPDATE events SET payload = NULL WHERE seq <= ?", (seq,))
                cur.execute("DELETE FROM events WHERE payload IS NULL AND at < ?",
                            (now - KEEP_IDS_S,))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    # -- reads

    def load(self) -> Ledger:
        """The ledger as of the last commit: snapshot, then the events after it, in order."""
        with self._lock:
            snap = self._db.execute("SELECT seq, body FROM snapshot WHERE id = 1").fetchone()
            ledger = from_snapshot(json.loads(snap[1])) if snap else Ledger()
            since = snap[0] if snap else 0
            for event_id, at, kind, payload in self._db.execute(
                    "SELECT event_id, at, kind, payload FROM events WHERE seq > ? "
                    "AND payload IS NOT NULL ORDER BY seq", (since,)):
                ledger.apply(LedgerEvent(event_id, kind, at, json.loads(payload)))
            return ledger

    def probe_write(self, now: float) -> None:
        """A real write (the time of this probe in ``meta``, committed): raises
        ``sqlite3.Error`` or ``OSError`` when the ledger cannot be written (disk full, a
        read-only mount, the file gone). For the edge's health check."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute("INSERT OR REPLACE INTO meta VALUES ('write_probe', ?)", (repr(now),))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def event_count(self) -> int:
        with self._lock:
            n: int = self._db.execute(
                "SELECT COUNT(*) FROM events WHERE payload IS NOT NULL").fetchone()[0]
            return n

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CounterStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_guard(config: PolicyConfig, data_dir: str | Path, now: float,
               synchronous: str = "FULL") -> tuple[PolicyGuard, CounterStore, list[Decision]]:
    """Open the store, rebuild the guard from it, and release the channels of calls that were
    up when the previous process died. The recovery is committed before returning; the
    returned decisions (one per released call) are for the audit log."""
    store = CounterStore(data_dir, synchronous)
    guard = PolicyGuard(config, store.load())
    recovered = guard.recover(now)
    store.commit(guard)
    return guard, store, recovered
