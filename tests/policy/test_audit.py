"""softphone.audit: one fsync'd JSON line per decision, then the event bus."""

from __future__ import annotations

import json
import os

import pytest
from softphone.policy import PolicyGuard

import softphone.audit as audit_mod
from softphone.audit import AuditError, AuditLog, EventBus, FsyncPolicy

T0 = 1_768_989_600.0


@pytest.fixture()
def fsyncs(monkeypatch):
    """Counts real fsync calls (they still happen)."""
    calls: list[int] = []
    real = os.fsync

    def spy(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(audit_mod.os, "fsync", spy)
    return calls


def test_every_decision_is_a_line_with_rule_and_clause(tmp_path, guard: PolicyGuard, facts,
                                                      fsyncs) -> None:
    bus = EventBus()
    seen: list[tuple[str, dict]] = []
    bus.subscribe(lambda topic, rec: seen.append((topic, dict(rec))))
    u = facts.user()
    with AuditLog(tmp_path / "audit.jsonl", bus=bus) as log:
        log.record(guard.on_call_attempt(facts.call(u, call_id="c1")), now=T0)
        log.record(guard.on_call_attempt(facts.call(u, call_id="c2")), now=T0 + 1)
        assert len(fsyncs) == 2  # one per event
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in lines] == [1, 2]
    assert lines[1]["rule_id"] == "R-CALLS-1" and lines[1]["clause"] == \
        "Terms of service, 22 January 2026, Annex 4, point 5, paragraph 2"
    assert lines[1]["action"] == "reject" and lines[1]["sip_status"] == 403
    assert lines[0]["ts"] == "2026-01-21T10:00:00.000+00:00"
    assert [t for t, _ in seen] == ["policy/call_attempt"] * 2
    assert seen[1][1] == lines[1]


def test_emergency_routing_is_evidenced_with_the_location(tmp_path, guard: PolicyGuard,
                                                          facts) -> None:
    u = facts.user(account=facts.account(emergency_activated=True))
    with AuditLog(tmp_path / "audit.jsonl") as log:
        log.record(guard.on_call_attempt(facts.call(u, "17", call_id="e1")), now=T0)
    (rec,) = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert (rec["action"], rec["rule_id"], rec["service_urn"]) == (
        "route_emergency", "R-EMERG-1", "urn:service:sos.police")
    assert "<ca:A3>Paris</ca:A3>" in rec["location"]["pidf_lo"]
    assert rec["ai_allowed"] is False


def test_unaudited_decisions_are_not_written(tmp_path, guard: PolicyGuard) -> None:
    with AuditLog(tmp_path / "a.jsonl") as log:
        assert log.record(guard.on_dtmf("nothing", "5", T0)) is None
    assert (tmp_path / "a.jsonl").read_text() == ""


def test_batch_policy_syncs_every_n_and_bus_only_sees_synced(tmp_path, fsyncs) -> None:
    bus = EventBus()
    seen: list[int] = []
    bus.subscribe(lambda topic, rec: seen.append(rec["seq"]))
    clock = [0.0]
    log = AuditLog(tmp_path / "b.jsonl", policy=FsyncPolicy.BATCH, batch_size=3,
                   batch_interval_s=10.0, bus=bus, clock=lambda: clock[0])
    log.write("x", {"n": 1})
    log.write("x", {"n": 2})
    assert fsyncs == [] and seen == []
    # lines are already in the file (readable by tail -f), only not yet fsync'd
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 2
    log.write("x", {"n": 3})
    assert len(fsyncs) == 1 and seen == [1, 2, 3]
    log.write("x", {"n": 4})
    clock[0] = 11.0
    log.write("x", {"n": 5})  # the interval has passed since record 4
    assert len(fsyncs) == 2 and seen == [1, 2, 3, 4, 5]
    log.write("x", {"n": 6})
    log.close()
    assert len(fsyncs) == 3 and seen[-1] == 6


def test_seq_continues_after_restart_and_a_torn_line_is_fenced(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    with AuditLog(path) as log:
        log.write("x", {"n": 1})
        log.write("x", {"n": 2})
    with open(path, "ab") as f:
        f.write(b'{"seq": 3, "event": "x", "n"')  # the process died mid-write
    with AuditLog(path) as log:
        assert log.write("x", {"n": 3})["seq"] == 3
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["n"] == 3
    assert lines[-2].startswith('{"seq": 3') and len(lines) == 4


def test_failing_subscriber_is_counted_not_fatal(tmp_path) -> None:
    bus = EventBus()
    got: list[int] = []

    def broken(topic, rec) -> None:
        raise RuntimeError("mqtt down")

    bus.subscribe(broken)
    unsubscribe = bus.subscribe(lambda topic, rec: got.append(rec["seq"]))
    with AuditLog(tmp_path / "d.jsonl", bus=bus) as log:
        log.write("x", {})
        unsubscribe()
        log.write("x", {})
    assert bus.failures == 2 and got == [1]


def test_subscriber_may_write_to_the_log(tmp_path) -> None:
    bus = EventBus()
    log = AuditLog(tmp_path / "e.jsonl", bus=bus)

    def echo(topic, rec) -> None:
        if rec["event"] == "x":
            log.write("echo", {"of": rec["seq"]})

    bus.subscribe(echo)
    log.write("x", {})
    log.close()
    assert [json.loads(x)["event"] for x in (tmp_path / "e.jsonl").read_text().splitlines()] \
        == ["x", "echo"]


def test_unwritable_path_is_an_audit_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AuditError, match="file"):
        AuditLog(blocker / "audit.jsonl")
    log = AuditLog(tmp_path / "ok.jsonl")
    log.close()
    with pytest.raises(AuditError, match="closed"):
        log.write("x", {})


NASTY = "a\u2028b\u2029c\x85d\x7fe\x1bf\x00g\x0bh\x1ci\x9fj\n\rk"


def test_every_record_is_one_line_for_any_reader(tmp_path) -> None:
    """U+2028/2029, U+0085 and the other controls in a value (a phone's User-Agent, a
    Call-ID) are escaped: str.splitlines, a JavaScript reader or `wc -l` see one line each."""
    from softphone.edge.calllog import CallRecord

    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.write("policy.decision", {"details": {"user_agent": NASTY}})
        log.write("policy.decision", {"details": {"user_agent": "plain"}})
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    assert raw.count(b"\n") == 2
    lines = text.splitlines()
    assert len(lines) == 2, lines
    assert json.loads(lines[0])["details"]["user_agent"] == NASTY
    assert "\u2028" not in text and "\x85" not in text and "\x7f" not in text
    calls = CallRecord(call_id=NASTY, started=0.0, caller=NASTY, callee="1002").as_json()
    assert calls.splitlines() == [calls] and json.loads(calls)["call_id"] == NASTY
