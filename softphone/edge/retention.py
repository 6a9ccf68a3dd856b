"""Keeping recordings only as long as the terms allow (R-REC-3, R-REC-4), at the edge.

Two jobs around the guard's pure decisions (``PolicyGuard.purge_due`` and
``on_recording_option_change``), each decision committed to the ledger and then audited, as
for calls:

- ``sync_options`` at start: the configuration is where an admin switches recording on or off
  (``[account] recording``, a user's ``recording``). A user who no longer records while the
  ledger still holds recordings of theirs had the option switched off: the guard warns that
  they will be deleted after the export window (R-REC-4). Back on within the window cancels
  that.
- ``purge`` at start and then every ``PURGE_EVERY_S``: recordings past retention (three
  calendar months by default, R-REC-3) or past the export window are deleted, file and entry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from softphone.edge.recordings import RecordingStore
from softphone.policy.admission import CallAdmission
from softphone.policy.decision import Decision, RecordingAction
from softphone.policy.facts import RecordingOptionChange

log = logging.getLogger(__name__)


class RetentionJob:
    def __init__(self, admission: CallAdmission, recordings: RecordingStore) -> None:
        self.admission = admission
        self.recordings = recordings

    def sync_options(self, account_id: str, account_on: bool,
                     users: Mapping[str, bool | None], now: float) -> list[Decision]:
        """Tell the guard about recording options that changed since the ledger last saw
        them. ``users``: each user's own setting (None follows the account). Decided per user
        on the setting in effect, so that an account switch and a user's own override give
        the same answer: recordings of a user who no longer records go after the window."""
        guard = self.admission.guard
        out: list[Decision] = []
        for user_id, own in sorted(users.items()):
            enabled = account_on if own is None else own
            scope = f"user:{user_id}"
            off_since = guard.state.option_off.get(scope)
            if enabled and off_since is not None:
                change = RecordingOptionChange(account_id, True, now, user_id)
            elif not enabled and off_since is None and any(
                    rec.user_id == user_id for rec in guard.state.recordings.values()):
                change = RecordingOptionChange(account_id, False, now, user_id)
            else:
                continue
            out.append(self.admission.record(guard.on_recording_option_change(change)))
            log.warning("recording option %s for %s%s", "on" if enabled else "off", scope,
                        "" if enabled else ": its recordings are deleted after the export window")
        return out

    def purge(self, now: float) -> list[Decision]:
        """Delete what is due; the decisions, each audited with its rule."""
        decisions = self.admission.guard.purge_due(now)
        self.admission.commit()  # the pruning of old counters, even with nothing to delete
        for d in decisions:
            self.admission.record(d)
            for cmd in d.recording:
                if cmd.action in (RecordingAction.DELETE, RecordingAction.STOP_AND_DELETE):
                    self.recordings.delete(cmd.recording_id)
        if decisions:
            log.info("recordings purge: %d deleted", len(decisions))
        return decisions
