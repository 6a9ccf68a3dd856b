"""What the edge does first when it starts on the data of a process that died.

A crash (SIGKILL, power cut, OOM) leaves no ``calls.jsonl`` line for the calls that were up
and a ``status.json`` that still shows them. Before the policy guard recovers their channels
(``softphone.ledgerstore.open_guard``), the edge:

- writes ``status.json`` at once, with no calls (``starting``: true until the first real
  status replaces it a moment later);
- writes one call record per call the ledger still holds, with end cause ``edge-restart``,
  from what the ledger knows: the Call-ID, the caller (the channel of the caller's side), the
  callee when it is a local user (the channel of its side), when the call started and when it
  was answered. When it ended is not known (the process died at some moment after the last
  ledger write): ``ended`` is null and the duration 0.

Records are written before the recovery is committed: a second crash between the two would
write them again at the next start (same Call-ID), never lose them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from softphone.edge.calllog import CallLog, CallRecord, LegRecord
from softphone.ledgerstore import FILENAME, CounterStore
from softphone.policy.ledger import ActiveCall

log = logging.getLogger("softphone.edge")

END_CAUSE = "edge-restart"


def write_starting_status(data_dir: Path) -> None:
    """``<data dir>/status.json`` with no calls, replaced atomically."""
    path = data_dir / "status.json"
    tmp = path.with_suffix(".tmp")
    # the keys of Edge.status(), empty: a reader of the full status reads this one too
    tmp.write_text(json.dumps({"starting": True, "live_calls": 0, "media_objects": 0,
                               "ports_in_use": 0, "registrations": 0, "transactions": 0,
                               "calls": {}, "sip": {}, "rate_limited": 0,
                               "connections": {"open": 0, "evicted": 0, "refused_full": 0,
                                               "refused_per_address": 0, "slow_closed": 0,
                                               "idle_closed": 0},
                               "trunk": None}, sort_keys=True))
    os.replace(tmp, path)


def calls_at_crash(data_dir: Path) -> list[ActiveCall]:
    """The channels the ledger still holds: the calls that were up when the edge died."""
    if not (data_dir / FILENAME).exists():
        return []
    with CounterStore(data_dir, synchronous="NORMAL") as store:
        return list(store.load().calls.values())


def restart_records(held: list[ActiveCall]) -> list[CallRecord]:
    """One record per call (its sides ``<call-id>/caller`` and ``<call-id>/callee``)."""
    sides: dict[str, dict[str, ActiveCall]] = {}
    for c in held:
        base, _, side = c.call_id.rpartition("/")
        if not base or side not in ("caller", "callee"):
            base, side = c.call_id, "caller"
        sides.setdefault(base, {})[side] = c
    out: list[CallRecord] = []
    for call_id in sorted(sides):
        caller, callee = sides[call_id].get("caller"), sides[call_id].get("callee")
        known = [c for c in (caller, callee) if c is not None]
        answered = [c.answered_at for c in known if c.answered_at is not None]
        legs = [LegRecord(role=role, user=c.user_id)
                for role, c in (("caller", caller), ("callee", callee)) if c is not None]
        out.append(CallRecord(
            call_id=call_id, started=min(c.acquired_at for c in known),
            caller=caller.user_id if caller is not None else "",
            callee=callee.user_id if callee is not None else "",
            answered=min(answered) if answered else None, ended=None,
            end_cause=END_CAUSE, status=200 if answered else 0, legs=legs))
    return out


def record_dead_calls(data_dir: Path) -> int:
    """Write ``status.json`` (no calls) and a record for each call that died with the last
    process, before the guard releases their channels; returns how many records."""
    write_starting_status(data_dir)
    records = restart_records(calls_at_crash(data_dir))
    if records:
        calls = CallLog(data_dir / "calls.jsonl")
        try:
            for rec in records:
                calls.write(rec)
        finally:
            calls.close()
        log.warning("%d call(s) were up when the edge stopped without ending them: recorded "
                    "with end cause %s", len(records), END_CAUSE)
    return len(records)
