"""One structured JSON line per finished call: legs, codecs, ports, duration, end cause, quality.

Written to ``<data dir>/calls.jsonl`` and to the ``softphone.calls`` logger, so an operator can
follow calls with ``tail -f`` or ship the file; the line is flushed when the call ends.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger("softphone.calls")


@dataclass
class LegRecord:
    role: str                    # "caller" or "callee"
    user: str                    # extension or remote URI
    transport: str = ""
    codec: str = ""
    local_rtp: int = 0
    remote_rtp: str = ""
    packets_in: int = 0
    packets_out: int = 0
    lost: int = 0
    jitter_ms: float = 0.0
    rtt_ms: float | None = None
    latched: str = ""            # the RTP source the leg latched to ("" = none)
    foreign: int = 0             # RTP packets dropped: not from the peer (RTPbleed guard)
    source_switches: int = 0     # latch moves (NAT rebinding, after probation)
    flushed: int = 0             # datagrams that reached the ports before the answer, unread


@dataclass
class CallRecord:
    call_id: str
    started: float
    caller: str
    callee: str
    answered: float | None = None
    ended: float | None = None
    end_cause: str = ""
    status: int = 0
    legs: list[LegRecord] = field(default_factory=list)
    transcoded: bool = False
    policy: list[str] = field(default_factory=list)   # rule ids of the guard's warnings
    billable: bool = False       # out of the bundle, charged (R-CLI-1/2, unlimited suspended)
    # who sent the BYE that ended it: party (caller/callee), user, source address, and how
    # the edge knew it was that party ("address" of the dialog peer, or "digest")
    ended_by: dict[str, str] = field(default_factory=dict)

    def duration(self) -> float:
        if self.answered is None or self.ended is None:
            return 0.0
        return round(self.ended - self.answered, 3)

    def as_json(self) -> str:
        d: dict[str, Any] = asdict(self)
        d["duration_s"] = self.duration()
        # ASCII JSON: every control character and line separator (U+0085, U+2028...) of a
        # Call-ID or a name is escaped, so each record is one line for any reader
        return json.dumps(d, separators=(",", ":"), sort_keys=True, ensure_ascii=True)


class CallLog:
    def __init__(self, path: Path | None) -> None:
        self._fh: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torn = _torn(path)
            self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives with the edge
            if torn:  # a crash cut the last line: it stays alone, the next one starts clean
                self._fh.write("\n")
        # totals of the calls written so far, for the metrics: calls by end cause, and the
        # RTP packets, losses and transcoded calls of the ended ones
        self.causes: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()

    def write(self, record: CallRecord) -> None:
        self.causes[record.end_cause] += 1
        for leg in record.legs:
            self.totals["packets_in"] += leg.packets_in
            self.totals["packets_out"] += leg.packets_out
            self.totals["lost"] += max(0, leg.lost)
        self.totals["transcoded"] += record.transcoded
        line = record.as_json()
        log.info(line)
        if self._fh is not None:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _torn(path: Path) -> bool:
    """The file's last line has no newline (the process died while writing it)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            if f.tell() == 0:
                return False
            f.seek(-1, 2)
            return f.read(1) != b"\n"
    except OSError:
        return False
