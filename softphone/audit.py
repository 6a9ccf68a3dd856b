"""The audit log: every policy decision as one JSON line on disk, then on the event bus.

Evidence for the provider's terms (who was refused, which emergency call went where, which
recording was deleted on objection) must survive a crash, so the default flush policy is
``fsync`` after every event. ``FsyncPolicy.BATCH`` trades that for throughput: lines are
written at once but fsync'd every ``batch_size`` events or when ``batch_interval_s`` has passed
since the first unsynced one (checked on each write), and at ``flush()``/``close()``; a crash
loses at most that window. Subscribers of the bus only ever see events that are on disk.

The bus is a plain callback list so the MQTT bridge can subscribe later; a failing subscriber
is counted in ``EventBus.failures`` and never breaks the audit trail.

Each record: ``{"seq", "ts" (UTC, ISO 8601), "t" (POSIX), "event", ...body}``; a decision's
body is ``Decision.to_dict()`` (rule_id, clause, action, SIP status, ...). ``seq`` continues
across restarts; a torn last line from a crash is skipped, never continued.
"""

from __future__ import annotations

import enum
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from softphone.policy.decision import Decision

Subscriber = Callable[[str, Mapping[str, Any]], None]


# Characters JSON leaves raw in a string but some readers take for the end of a line: DEL
# and the C1 controls (U+0085 NEL among them), U+2028 and U+2029 (str.splitlines, JavaScript).
# json.dumps already escapes the C0 controls.
_LINE_BREAKERS = re.compile("[\x7f-\x9f\u2028\u2029]")


def json_line(obj: Any, *, sort_keys: bool = False) -> str:
    """``obj`` as one line of JSON that every reader splits as one line: UTF-8 kept, every
    control character and Unicode line separator escaped (``\\u2028``...)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    return _LINE_BREAKERS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class AuditError(RuntimeError):
    """The audit log cannot be written (names the file)."""


class EventBus:
    """In-process publish/subscribe: ``subscribe(cb)`` returns the function that unsubscribes."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.failures = 0

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, topic: str, record: Mapping[str, Any]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for cb in subscribers:
            try:
                cb(topic, record)
            except Exception:  # a subscriber's bug must not lose the audit trail
                self.failures += 1


class FsyncPolicy(enum.Enum):
    EVERY_EVENT = "every_event"
    BATCH = "batch"


class AuditLog:
    def __init__(self, path: str | Path, *, policy: FsyncPolicy = FsyncPolicy.EVERY_EVENT,
                 batch_size: int = 64, batch_interval_s: float = 0.2,
                 bus: EventBus | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if batch_size < 1 or batch_interval_s < 0:
            raise ValueError("batch_size must be >= 1 and batch_interval_s >= 0")
        self.path = Path(path)
        self.policy = policy
        self.batch_size = batch_size
        self.batch_interval_s = batch_interval_s
        self.bus = bus
        self._clock = clock
        self._lock = threading.Lock()
        self._unsynced: list[tuple[str, dict[str, Any]]] = []
        self._first_unsynced: float | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._seq = self._last_seq()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise AuditError(f"{self.path}: {exc.strerror}") from None
        self._closed = False

    def _last_seq(self) -> int:
        """The last complete record's seq; a torn last line (crash mid-write) is fenced off."""
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            tail = f.read()
        if tail and not tail.endswith(b"\n"):
            with open(self.path, "ab") as f:
                f.write(b"\n")  # the torn line stays, alone; the next record starts clean
        for line in reversed(tail.splitlines()):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("seq"), int):
                return int(rec["seq"])
        return 0

    @property
    def seq(self) -> int:
        return self._seq

    def write(self, event: str, body: Mapping[str, Any], now: float | None = None,
              topic: str | None = None) -> dict[str, Any]:
        t = self._clock() if now is None else now
        with self._lock:
            if self._closed:
                raise AuditError(f"{self.path}: closed")
            self._seq += 1
            record: dict[str, Any] = {
                "seq": self._seq,
                "ts": datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds"),
                "t": t, "event": event, **body,
            }
            line = json_line(record) + "\n"
            try:
                os.write(self._fd, line.encode("utf-8"))
            except OSError as exc:
                raise AuditError(f"{self.path}: {exc.strerror}") from None
            self._unsynced.append((topic or event, record))
            if self._first_unsynced is None:
                self._first_unsynced = self._clock()
            done: list[tuple[str, dict[str, Any]]] = []
            if (self.policy is FsyncPolicy.EVERY_EVENT
                    or len(self._unsynced) >= self.batch_size
                    or self._clock() - self._first_unsynced >= self.batch_interval_s):
                done = self._sync_locked()
        self._publish(done)
        return record

    def record(self, decision: Decision, now: float | None = None) -> dict[str, Any] | None:
        """Audit one decision (skipped when the decision says it must not be logged)."""
        if not decision.audited:
            return None
        return self.write("policy.decision", decision.to_dict(), now,
                          topic=f"policy/{decision.point}")

    def _sync_locked(self) -> list[tuple[str, dict[str, Any]]]:
        if not self._unsynced:
            return []
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise AuditError(f"{self.path}: fsync: {exc.strerror}") from None
        done, self._unsynced, self._first_unsynced = self._unsynced, [], None
        return done

    def _publish(self, done: list[tuple[str, dict[str, Any]]]) -> None:
        # outside the lock: a subscriber may itself write to the log
        if self.bus is not None:
            for topic, record in done:
                self.bus.publish(topic, record)

    def flush(self) -> None:
        """fsync what is written and deliver it to the bus."""
        with self._lock:
            done = [] if self._closed else self._sync_locked()
        self._publish(done)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            done = self._sync_locked()
            os.close(self._fd)
            self._closed = True
        self._publish(done)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
