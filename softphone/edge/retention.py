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
  calendar months by default, R-REC-3) or past the export window are deleted, file and entry,
  in that order (unlink, fsync of the folder, then the ledger); a failed delete keeps its entry
  and is retried at every run, audited (``purge_failed``) each time; files the ledger does not
  know are deleted once past retention (audited, ``orphan_file``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from softphone.edge.recordings import RecordingStore
from softphone.policy.admission import CallAdmission
from softphone.policy.decision import Decision
from softphone.policy.facts import RecordingOptionChange

log = logging.getLogger(__name__)


class RetentionJob:
    def __init__(self, admission: CallAdmission, recordings: RecordingStore) -> None:
        self.admission = admission
        self.recordings = recordings
        recordings.on_failure = self._objection_failed

    def sync_options(self, account_id: str, account_on: bool,
                     users: Mapping[str, bool | None], now: float, *,
                     terminated: bool = False) -> list[Decision]:
        """Tell the guard about recording options that changed since the ledger last saw
        them. ``users``: each user's own setting (None follows the account). Decided per user
        on the setting in effect, so that an account switch and a user's own override give
        the same answer: recordings of a user who no longer records go after the window.
        A user with recordings who is no longer in the configuration, and every user of a
        terminated account, no longer records either (R-REC-4 too: deleted after the
        window, not kept until retention)."""
        guard = self.admission.guard
        out: list[Decision] = []
        settings: dict[str, tuple[bool, str]] = {
            user_id: (False, "account terminated") if terminated
            else (account_on if own is None else own, "")
            for user_id, own in users.items()}
        for rec in guard.state.recordings.values():
            if rec.account_id == account_id and rec.user_id not in settings:
                settings[rec.user_id] = (False, "account terminated" if terminated
                                         else "user removed from the configuration")
        for user_id, (enabled, why) in sorted(settings.items()):
            scope = f"user:{user_id}"
            off_since = guard.state.option_off.get(scope)
            if enabled and off_since is not None:
                change = RecordingOptionChange(account_id, True, now, user_id)
            elif not enabled and off_since is None and any(
                    rec.user_id == user_id for rec in guard.state.recordings.values()):
                change = RecordingOptionChange(account_id, False, now, user_id, why)
            else:
                continue
            out.append(self.admission.record(guard.on_recording_option_change(change)))
            log.warning("recording option %s for %s%s%s", "on" if enabled else "off", scope,
                        f" ({why})" if why else "",
                        "" if enabled else ": its recordings are deleted after the export window")
        return out

    def purge(self, now: float) -> list[Decision]:
        """Delete what is due; the decisions, each audited with its rule. Each file is
        unlinked and its folder fsync'd before the ledger forgets it; a delete that fails
        leaves the ledger as it was (retried at the next run, audited each time). Then the
        folder is reconciled with the ledger (``reconcile``)."""
        guard = self.admission.guard
        out: list[Decision] = []
        due = guard.recordings_due(now)
        for rid, rule in due:
            out.append(self._delete(rid, rule, now))
        # deletes of the call path (an objection) that failed: the ledger forgot them already
        for rid in sorted(set(self.recordings.failed) - {rid for rid, _ in due}):
            out.append(self._delete(rid, "R-REC-2", now))
        out += self.reconcile(now)
        guard.prune(now)
        self.admission.commit()  # the pruning of old counters, even with nothing to delete
        deleted = sum(1 for d in out if d.point == "purge")
        if out:
            log.info("recordings purge: %d deleted, %d failed", deleted, len(out) - deleted)
        return out

    def _delete(self, rid: str, rule: str, now: float) -> Decision:
        guard = self.admission.guard
        try:
            self.recordings.remove(rid)  # unlink, fsync the folder: then the ledger
        except OSError as exc:
            log.error("recording %s: delete failed (%s), retried at the next run", rid, exc)
            return self.admission.record(guard.recording_delete_failed(rid, rule, str(exc), now))
        return self.admission.record(guard.recording_purged(rid, rule, now))

    def reconcile(self, now: float) -> list[Decision]:
        """Files in the folder that the ledger does not know (a crash between creating a file
        and committing its start, a failed objection delete before a restart...): one last
        written more than the retention period ago is deleted and audited (R-REC-3); a
        younger one is left for a later run."""
        guard = self.admission.guard
        store = self.recordings
        known = {store.path(rid).name
                 for rid in (*guard.state.recordings, *store.active, *store.failed)}
        out: list[Decision] = []
        for path in store.files():
            if path.name in known:
                continue
            try:
                written = path.stat().st_mtime
                if not guard.retention_over(written, now):
                    continue
                path.unlink()
                store.sync_folder()
            except FileNotFoundError:
                continue
            except OSError as exc:
                out.append(self.admission.record(
                    guard.recording_delete_failed(path.name, "R-REC-3", str(exc), now)))
                continue
            log.warning("recording file %s: not in the ledger, past retention: deleted",
                        path.name)
            out.append(self.admission.record(guard.orphan_recording_purged(path.name, written,
                                                                            now)))
        return out

    def _objection_failed(self, rid: str, error: str) -> None:
        """A delete of the call path failed: audited now, retried by ``purge``."""
        self.admission.record(self.admission.guard.recording_delete_failed(
            rid, "R-REC-2", error, time.time()))
