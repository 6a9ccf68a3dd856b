"""The recordings folder and the retention job, on a real guard over its SQLite ledger."""

from __future__ import annotations

import os
import stat
import wave
from pathlib import Path

from softphone.policy.admission import CallAdmission
from softphone.policy.config import load_default
from softphone.policy.decision import Decision, RecordingAction
from softphone.policy.facts import Account, RecordingOptionChange, User

from softphone.edge.recordings import RecordingStore
from softphone.edge.retention import RetentionJob
from softphone.ledgerstore import open_guard

T0 = 1_768_989_600.0  # 2026-01-21 10:00 UTC
DAY = 86400.0


def test_a_recording_is_a_private_wav_named_safely(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "rec")
    odd = "a/b@../host;x/caller"
    rec = store.start(odd, 16000)
    assert store.start(odd, 16000) is rec  # a second start is the same recording
    rec.write(b"\x01\x00" * 320)
    path = store.stop(odd)
    assert path is not None and path.parent == tmp_path / "rec" and "/" not in path.name
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o027 == 0
    assert stat.S_IMODE(os.stat(tmp_path / "rec").st_mode) & 0o007 == 0
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (16000, 1, 320)
    # two ids that clean up to the same text still get two files
    assert store.path("a/b") != store.path("a_b")
    assert store.delete(odd) and not path.exists()
    assert not store.delete(odd)  # the purge may meet it again after a restart
    assert store.stop("never-started") is None


def test_delete_while_recording_stops_writing(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "rec")
    rec = store.start("c1", 8000)
    rec.write(bytes(320))
    assert store.delete("c1") and not rec.open
    rec.write(bytes(320))  # a frame already on its way changes nothing
    assert not store.path("c1").exists() and store.active == {}


def _edge(tmp_path: Path, recording: bool) -> tuple[CallAdmission, RecordingStore, list[Decision]]:
    guard, _store, _ = open_guard(load_default(), tmp_path / "data", T0)
    audited: list[Decision] = []
    account = Account("acct", "FR", seats=2)
    users = {"1001": User("1001", account, recording=recording), "1002": User("1002", account)}
    admission = CallAdmission(guard, users.get, commit=lambda: _store.commit(guard),
                              on_decision=audited.append)
    return admission, RecordingStore(tmp_path / "rec"), audited


def _recorded_call(admission: CallAdmission, store: RecordingStore, call_id: str,
                   now: float) -> str:
    assert admission.admit(call_id, "1001", "1002", inbound_local=True, now=now) is None
    (answer,) = [d for d in admission.answered(call_id, now + 1) if d.notices]
    leg = answer.call_id
    assert leg is not None and admission.correspondent_leg(leg) == "b"
    started = admission.notice_played(leg, "recording-notice", now + 6)
    (cmd,) = started.recording
    store.start(cmd.recording_id, 16000).write(bytes(640))
    for d in admission.released(call_id, answered=True, duration=60, now=now + 60):
        for c in d.recording:
            store.stop(c.recording_id)
    return cmd.recording_id


def test_retention_purges_file_and_entry_after_three_months(tmp_path: Path) -> None:
    admission, store, audited = _edge(tmp_path, recording=True)
    rid = _recorded_call(admission, store, "call-1", T0)
    job = RetentionJob(admission, store)
    assert job.purge(T0 + 80 * DAY) == [] and store.path(rid).exists()
    (d,) = job.purge(T0 + 95 * DAY)
    assert d.rule_id == "R-REC-3" and d.point == "purge" and d in audited
    assert not store.path(rid).exists()
    assert job.purge(T0 + 96 * DAY) == []  # once


def test_a_user_who_stops_recording_loses_the_files_after_the_export_window(
        tmp_path: Path) -> None:
    admission, store, audited = _edge(tmp_path, recording=True)
    rid = _recorded_call(admission, store, "call-1", T0)
    job = RetentionJob(admission, store)
    # still on: nothing to tell the guard
    assert job.sync_options("acct", False, {"1001": True, "1002": None}, T0 + DAY) == []
    # the account switch does not matter to a user who overrides it; the user's own does
    (off,) = job.sync_options("acct", True, {"1001": False, "1002": None}, T0 + 2 * DAY)
    assert off.rule_id == "R-REC-4" and dict(off.details)["scope"] == "user:1001"
    assert off in audited
    assert job.sync_options("acct", True, {"1001": False}, T0 + 3 * DAY) == []  # said once
    assert job.purge(T0 + 20 * DAY) == [] and store.path(rid).exists()
    (d,) = job.purge(T0 + 33 * DAY)
    assert d.rule_id == "R-REC-4" and not store.path(rid).exists()


def test_switching_recording_back_on_within_the_window_keeps_the_files(tmp_path: Path) -> None:
    admission, store, _ = _edge(tmp_path, recording=True)
    rid = _recorded_call(admission, store, "call-1", T0)
    job = RetentionJob(admission, store)
    job.sync_options("acct", False, {"1001": None}, T0 + DAY)  # follows the account: now off
    (on,) = job.sync_options("acct", False, {"1001": True}, T0 + 5 * DAY)
    assert dict(on.details)["enabled"] == "True"
    assert job.purge(T0 + 40 * DAY) == [] and store.path(rid).exists()


def test_an_objection_after_the_option_went_off_mid_call_deletes_the_file(
        tmp_path: Path) -> None:
    """Recording is switched off for 1001 while a recorded call is up: the file stops growing
    and is kept for the export window; then the correspondent (1002, leg b) presses 9: the
    file is deleted at once and the objection audited."""
    admission, store, audited = _edge(tmp_path, recording=True)
    assert admission.admit("call-1", "1001", "1002", inbound_local=True, now=T0) is None
    (answer,) = [d for d in admission.answered("call-1", T0 + 1) if d.notices]
    leg = answer.call_id
    assert leg is not None and admission.correspondent_leg(leg) == "b"
    (start,) = admission.notice_played(leg, "recording-notice", T0 + 6).recording
    store.start(start.recording_id, 16000).write(bytes(640))
    off = admission.record(admission.guard.on_recording_option_change(
        RecordingOptionChange("acct", False, T0 + 20, "1001")))
    for cmd in off.recording:
        store.stop(cmd.recording_id)
    path = store.path(start.recording_id)
    assert path.exists() and store.active == {}
    (objection,) = admission.dtmf("call-1", "b", "9", T0 + 25)
    assert objection in audited and objection.rule_id == "R-REC-2"
    for cmd in objection.recording:
        assert cmd.action is RecordingAction.STOP_AND_DELETE
        store.delete(cmd.recording_id)
    assert not path.exists()
    assert RetentionJob(admission, store).purge(T0 + 40 * DAY) == []  # nothing left to purge


def test_a_failed_objection_delete_is_audited_and_retried_by_the_purge(tmp_path: Path) -> None:
    """The correspondent objects but the file cannot be removed (a directory stands in its
    place): the failure is audited at once, each purge run retries and audits again, and once
    the obstacle is gone the next run deletes the file and says so."""
    admission, store, audited = _edge(tmp_path, recording=True)
    job = RetentionJob(admission, store)
    assert admission.admit("call-1", "1001", "1002", inbound_local=True, now=T0) is None
    (answer,) = [d for d in admission.answered("call-1", T0 + 1) if d.notices]
    assert answer.call_id is not None
    (start,) = admission.notice_played(answer.call_id, "recording-notice", T0 + 6).recording
    rid = start.recording_id
    store.start(rid, 16000).write(bytes(640))
    store.stop(rid)
    path = store.path(rid)
    path.unlink()
    path.mkdir()
    (objection,) = admission.dtmf("call-1", "b", "9", T0 + 10)
    (cmd,) = objection.recording
    assert not store.delete(cmd.recording_id) and rid in store.failed
    failures = [d for d in audited if d.point == "purge_failed"]
    assert len(failures) == 1 and failures[0].rule_id == "R-REC-2"
    (again,) = job.purge(T0 + 3600)
    assert again.point == "purge_failed" and again in audited
    path.rmdir()
    path.write_bytes(b"RIFF")
    (done,) = job.purge(T0 + 7200)
    assert done.point == "purge" and done in audited and not path.exists()
    assert store.failed == {} and job.purge(T0 + 10800) == []
