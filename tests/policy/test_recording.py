"""R-REC-2/3/4 and R-AI-2: notice before recording, objection by DTMF, retention, option off."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from softphone.policy import (
    Action,
    Direction,
    Party,
    PolicyGuard,
    RecordingAction,
    RecordingOptionChange,
)

T0 = 1_768_989_600.0
DAY = 86400.0


def recorded_user(facts, **kw):
    return facts.user(account=facts.account(recording=True), **kw)


def start_recording(guard: PolicyGuard, facts, call_id: str = "c1", *,
                    direction: Direction = Direction.OUTBOUND, now: float = T0):
    u = recorded_user(facts)
    kw = {} if direction is Direction.OUTBOUND else {"dialed": "+33187654321",
                                                      "presented": "+33145678901"}
    guard.on_call_attempt(facts.call(u, call_id=call_id, direction=direction, now=now, **kw))
    answer = guard.on_answer(call_id, now + 2)
    played = guard.on_notice_played(call_id, "recording-notice", now + 8)
    return answer, played


@pytest.mark.parametrize("direction", list(Direction))
def test_correspondent_hears_the_notice_before_recording_starts(guard: PolicyGuard, facts,
                                                                direction) -> None:
    answer, played = start_recording(guard, facts, direction=direction)
    assert answer.rule_id == "R-REC-2" and answer.recording == ()
    (notice,) = answer.notices
    assert notice.notice_id == "recording-notice" and notice.to is Party.CORRESPONDENT
    assert "press 9" in notice.text and "object" in notice.text
    assert [c.action for c in played.recording] == [RecordingAction.START]


def test_no_notice_no_recording(guard: PolicyGuard, facts) -> None:
    u = recorded_user(facts)
    guard.on_call_attempt(facts.call(u, call_id="c1"))
    guard.on_answer("c1", T0 + 1)
    # the notice never finished playing: a DTMF or the end must not start anything
    end = guard.on_call_end("c1", T0 + 60)
    assert end.recording == ()
    assert guard.state.recordings == {}


def test_recording_off_means_no_notice(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_call_attempt(facts.call(u, call_id="c1"))
    assert guard.on_answer("c1", T0 + 1).notices == ()


def test_user_setting_overrides_account(guard: PolicyGuard, facts) -> None:
    u = facts.user(account=facts.account(recording=False), recording=True)
    guard.on_call_attempt(facts.call(u, call_id="c1"))
    assert [n.notice_id for n in guard.on_answer("c1", T0 + 1).notices] == ["recording-notice"]


def test_objection_stops_and_deletes_and_is_audited(guard: PolicyGuard, facts) -> None:
    start_recording(guard, facts)
    d = guard.on_dtmf("c1", "9", T0 + 20)
    assert d.audited and d.rule_id == "R-REC-2"
    assert [(c.action, c.recording_id) for c in d.recording] == [
        (RecordingAction.STOP_AND_DELETE, "c1")]
    assert "c1" not in guard.state.recordings
    # a second press changes nothing, and the end does not try to stop it again
    assert not guard.on_dtmf("c1", "9", T0 + 21).audited
    assert guard.on_call_end("c1", T0 + 30).recording == ()


def test_objection_during_the_notice_means_recording_never_starts(guard: PolicyGuard,
                                                                  facts) -> None:
    u = recorded_user(facts)
    guard.on_call_attempt(facts.call(u, call_id="c1"))
    guard.on_answer("c1", T0 + 1)
    d = guard.on_dtmf("c1", "9", T0 + 3)
    assert d.audited and d.recording == ()
    assert guard.on_notice_played("c1", "recording-notice", T0 + 8).recording == ()


def test_other_digits_and_our_user_are_not_objections(guard: PolicyGuard, facts) -> None:
    start_recording(guard, facts)
    other = guard.on_dtmf("c1", "5", T0 + 10)
    assert other.action is Action.NONE and not other.audited  # DTMF may be a PIN: not logged
    assert not guard.on_dtmf("c1", "9", T0 + 11, from_party=Party.USER).audited
    assert "c1" in guard.state.recordings


def test_objection_digit_is_configurable(config, facts) -> None:
    from dataclasses import replace

    cfg = replace(config, recording=replace(config.recording, objection_digit="*"))
    guard = PolicyGuard(cfg)
    answer, _ = start_recording(guard, facts)
    assert "press *" in answer.notices[0].text
    assert not guard.on_dtmf("c1", "9", T0 + 10).recording
    assert guard.on_dtmf("c1", "*", T0 + 11).recording


def test_ai_agent_announces_itself_first(guard: PolicyGuard, facts) -> None:
    u = recorded_user(facts)
    guard.on_call_attempt(facts.call(u, call_id="c1", direction=Direction.INBOUND,
                                     dialed="+33187654321", presented="+33145678901",
                                     automated_agent=True))
    answer = guard.on_answer("c1", T0 + 1)
    assert [n.notice_id for n in answer.notices] == ["ai-disclosure", "recording-notice"]
    played = guard.on_notice_played("c1", "ai-disclosure", T0 + 4)
    assert played.rule_id == "R-AI-2" and played.audited and played.recording == ()


def test_retention_three_calendar_months_after_the_call(guard: PolicyGuard, facts) -> None:
    start_recording(guard, facts)
    end = guard.on_call_end("c1", T0 + 100)
    assert [c.action for c in end.recording] == [RecordingAction.STOP]
    paris = ZoneInfo("Europe/Paris")
    ended = datetime.fromtimestamp(T0 + 100, paris)
    due = ended.replace(month=ended.month + 3).timestamp()
    assert guard.purge_due(due - 1) == []
    (d,) = guard.purge_due(due)
    assert d.rule_id == "R-REC-3"
    assert d.clause == "Terms of service, 5 February 2020, Article 4, paragraph 19"
    assert [(c.action, c.recording_id) for c in d.recording] == [(RecordingAction.DELETE, "c1")]
    assert guard.purge_due(due + DAY) == []  # deleted once


def test_month_end_retention_clamps_the_day(config, facts) -> None:
    guard = PolicyGuard(config)
    # a call ending on 30 November: three months later is 28 February (no 30 February)
    nov30 = datetime(2026, 11, 30, 12, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    start_recording(guard, facts, now=nov30 - 60)
    guard.on_call_end("c1", nov30)
    feb28 = datetime(2027, 2, 28, 12, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    assert guard.purge_due(feb28 - 1) == []
    assert len(guard.purge_due(feb28)) == 1


def test_option_off_deletes_after_the_export_window(guard: PolicyGuard, facts, config) -> None:
    start_recording(guard, facts, "old")
    guard.on_call_end("old", T0 + 60)
    off = guard.on_recording_option_change(RecordingOptionChange("acct-1", False, T0 + DAY))
    assert off.rule_id == "R-REC-4" and any("deleted on" in w.message for w in off.warnings)
    window = config.recording.export_window_days * DAY
    assert guard.purge_due(T0 + DAY + window - 1) == []
    (d,) = guard.purge_due(T0 + DAY + window)
    assert d.rule_id == "R-REC-4" and d.recording[0].action is RecordingAction.DELETE


def test_option_back_on_within_the_window_cancels_deletion(guard: PolicyGuard, facts,
                                                          config) -> None:
    start_recording(guard, facts, "old")
    guard.on_call_end("old", T0 + 60)
    guard.on_recording_option_change(RecordingOptionChange("acct-1", False, T0 + DAY))
    guard.on_recording_option_change(RecordingOptionChange("acct-1", True, T0 + 2 * DAY))
    window = config.recording.export_window_days * DAY
    assert guard.purge_due(T0 + DAY + window + 1) == []


def test_option_off_mid_call_stops_the_recording(guard: PolicyGuard, facts) -> None:
    start_recording(guard, facts)
    d = guard.on_recording_option_change(RecordingOptionChange("acct-1", False, T0 + 30,
                                                               user_id="alice"))
    assert [(c.action, c.recording_id) for c in d.recording] == [(RecordingAction.STOP, "c1")]
    assert guard.on_call_end("c1", T0 + 40).recording == ()


def test_objection_after_the_option_went_off_mid_call_still_deletes(guard: PolicyGuard,
                                                                    facts) -> None:
    """The option goes off mid-call: the recording stops but its file is kept for the export
    window; the correspondent's objection afterwards still deletes it, at once."""
    start_recording(guard, facts)
    guard.on_recording_option_change(RecordingOptionChange("acct-1", False, T0 + 30,
                                                           user_id="alice"))
    assert "c1" in guard.state.recordings
    d = guard.on_dtmf("c1", "9", T0 + 35)
    assert d.audited and dict(d.details)["recording_was"] == "stopped"
    assert [(c.action, c.recording_id) for c in d.recording] == [
        (RecordingAction.STOP_AND_DELETE, "c1")]
    assert guard.state.recordings == {}
    assert guard.on_dtmf("c1", "9", T0 + 36).recording == ()  # once


def test_option_off_while_the_notice_plays_starts_nothing(guard: PolicyGuard, facts) -> None:
    u = recorded_user(facts)
    guard.on_call_attempt(facts.call(u, call_id="c1"))
    guard.on_answer("c1", T0 + 1)
    guard.on_recording_option_change(RecordingOptionChange("acct-1", False, T0 + 2))
    assert guard.on_notice_played("c1", "recording-notice", T0 + 8).recording == ()
    assert guard.state.recordings == {}
