"""The PSAP call-back window: who made an emergency call lately, kept across restarts.

A call from the emergency gateway to a user within ``[emergency] callback_window_s`` of that
user's last emergency call is the PSAP calling back, which nothing but the terms may refuse
(R-EMERG-1: the guard lets it through whatever the account's state, limits or channels). The
window runs from the emergency call's start and again from its end, so a call that a crash cut
short still opens it: that is when the PSAP calls back most.

The last emergency call of each user is kept in ``<data dir>/emergency-callbacks.json``
(written whole, fsync'd, then renamed over the old file: a crash leaves the old file or the
new one), by the wall clock since it must span a restart. Emergency calls are rare, so a
write per call costs nothing that matters; a write that fails is logged and the window kept in
memory: the call is never held up by it. A file that cannot be read is logged and set aside
(``.bad``), and the edge starts with no window rather than not at all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

FILENAME = "emergency-callbacks.json"


class CallbackWindows:
    """Users' last emergency call (wall-clock seconds); ``path`` None keeps it in memory."""

    def __init__(self, path: Path | None, window_s: float, *,
                 wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self.window_s = window_s
        self.wall = wall
        self._last: dict[str, float] = {}
        if path is not None:
            self._last = self._load(path)

    def mark(self, user: str) -> None:
        """``user`` is in an emergency call now (its start, and again its end)."""
        now = self.wall()
        self._last[user] = now
        self._last = {u: t for u, t in self._last.items() if now - t <= self.window_s}
        self._save()

    def due(self, user: str) -> bool:
        """A call to ``user`` now is within the window after its last emergency call."""
        last = self._last.get(user)
        return last is not None and 0.0 <= self.wall() - last <= self.window_s

    def _load(self, path: Path) -> dict[str, float]:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            last = {str(u): float(t) for u, t in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as exc:
            log.error("%s unreadable (%s): set aside as %s.bad; no PSAP call-back window "
                      "from before this start", path, exc, path.name)
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name(path.name + ".bad"))
            return {}
        now = self.wall()
        kept = {u: t for u, t in last.items() if 0.0 <= now - t <= self.window_s}
        if kept:
            log.info("PSAP call-back window still open for %s", ", ".join(sorted(kept)))
        return kept

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self._last, f, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("the PSAP call-back window could not be saved to %s (%s): it is kept "
                      "in memory only", self.path, exc)
