"""R-CALLS-1: one simultaneous call per user; what counts as a call in progress."""

from __future__ import annotations

import threading

import pytest
from softphone.policy import Action, Direction, EndReason, PolicyGuard

T0 = 1_768_989_600.0


def test_second_outbound_call_is_refused_with_a_reason(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    assert guard.on_call_attempt(facts.call(u, call_id="c1")).action is Action.ALLOW
    d = guard.on_call_attempt(facts.call(u, call_id="c2"))
    assert d.action is Action.REJECT
    assert (d.sip_status, d.reason_phrase) == (403, "Simultaneous Call Limit Reached")
    assert d.rule_id == "R-CALLS-1"
    assert d.clause == "Terms of service, 22 January 2026, Annex 4, point 5, paragraph 2"
    assert d.announcement == "call-limit" and "paid option" in (d.user_message or "")
    assert guard.held("alice") == 1


def test_inbound_to_a_busy_user_gets_486(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_call_attempt(facts.call(u, call_id="c1"))
    d = guard.on_call_attempt(facts.call(u, "+33187654321", call_id="in-1",
                                         direction=Direction.INBOUND, presented="+33145678901"))
    assert (d.action, d.sip_status, d.reason_phrase) == (Action.REJECT, 486, "Busy Here")
    assert d.announcement == "busy"


def test_early_dialog_counts(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_call_attempt(facts.call(u, call_id="ringing"))  # never answered yet
    assert guard.on_call_attempt(facts.call(u, call_id="c2")).action is Action.REJECT


def test_held_call_still_counts(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_call_attempt(facts.call(u, call_id="c1"))
    guard.on_answer("c1", T0 + 2)
    # re-INVITE sendonly changes nothing for the guard: the call is still up
    guard.on_keepalive("c1", T0 + 60)
    assert guard.on_call_attempt(facts.call(u, call_id="consult", now=T0 + 61)).action \
        is Action.REJECT


def test_transfer_keeps_the_channel_until_our_leg_ends(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_call_attempt(facts.call(u, call_id="c1"))
    guard.on_answer("c1", T0 + 1)
    # blind transfer: REFER accepted, the channel is held until our leg is gone
    assert guard.on_call_attempt(facts.call(u, call_id="c2", now=T0 + 30)).action is Action.REJECT
    guard.on_call_end("c1", T0 + 31, EndReason.TRANSFERRED)
    assert guard.held("alice") == 0
    assert guard.on_call_attempt(facts.call(u, call_id="c2", now=T0 + 32)).action is Action.ALLOW


def test_forked_legs_share_one_channel(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    first = guard.on_call_attempt(facts.call(u, call_id="in-1", direction=Direction.INBOUND,
                                             dialed="+33187654321", presented="+33145678901",
                                             device="desk"))
    # the same call presented to the user's other device
    fork = guard.on_call_attempt(facts.call(u, call_id="in-1", direction=Direction.INBOUND,
                                            dialed="+33187654321", presented="+33145678901",
                                            device="browser"))
    assert first.action is Action.ALLOW and fork.action is Action.ALLOW
    assert ("fork", "same call") in fork.details
    assert guard.held("alice") == 1


def test_devices_of_one_user_share_the_count(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_call_attempt(facts.call(u, call_id="c1", device="desk"))
    d = guard.on_call_attempt(facts.call(u, call_id="c2", device="browser"))
    assert d.action is Action.REJECT


def test_other_users_are_independent(guard: PolicyGuard, facts) -> None:
    guard.on_call_attempt(facts.call(facts.user("alice"), call_id="c1"))
    assert guard.on_call_attempt(facts.call(facts.user("bob"), call_id="c2")).allowed


def test_extra_channels_are_an_entitlement(guard: PolicyGuard, facts) -> None:
    u = facts.user(extra_channels=2)
    assert all(guard.on_call_attempt(facts.call(u, call_id=f"c{i}")).allowed for i in range(3))
    assert guard.on_call_attempt(facts.call(u, call_id="c4")).action is Action.REJECT
    assert guard.held("alice") == 3


def test_vanished_peer_is_released_by_the_sweep(guard: PolicyGuard, facts, config) -> None:
    u = facts.user()
    guard.on_call_attempt(facts.call(u, call_id="c1"))
    guard.on_answer("c1", T0 + 1)
    stale = config.calls.stale_after_s
    guard.on_keepalive("c1", T0 + 100)
    assert guard.sweep(T0 + 100 + stale) == []  # exactly at the limit: still alive
    released = guard.sweep(T0 + 101 + stale)
    assert [d.call_id for d in released] == ["c1"]
    assert ("reason", "stale") in released[0].details
    assert guard.held("alice") == 0


def test_rtp_timeout_end_releases(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_call_attempt(facts.call(u, call_id="c1"))
    guard.on_call_end("c1", T0 + 40, EndReason.RTP_TIMEOUT)
    assert guard.held("alice") == 0


def test_release_is_idempotent_and_never_releases_what_was_not_held(guard: PolicyGuard,
                                                                   facts) -> None:
    u = facts.user()
    guard.on_call_attempt(facts.call(u, call_id="c1"))
    refused = guard.on_call_attempt(facts.call(u, call_id="c2"))
    assert refused.action is Action.REJECT
    # the refused call ends: it never had a channel, so c1 keeps its own
    d = guard.on_call_end("c2", T0 + 1)
    assert d.action is Action.NONE and not d.audited
    assert guard.held("alice") == 1
    guard.on_call_end("c1", T0 + 2)
    again = guard.on_call_end("c1", T0 + 3)
    assert not again.audited and guard.held("alice") == 0
    events = guard.drain_events()
    assert [e.event_id for e in events if e.kind == "released"] == ["rel:c1"]


def test_ended_call_id_cannot_take_a_channel_again(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_call_attempt(facts.call(u, call_id="c1"))
    guard.on_call_end("c1", T0 + 1)
    d = guard.on_call_attempt(facts.call(u, call_id="c1", now=T0 + 2))
    assert d.sip_status == 481 and guard.held("alice") == 0


@pytest.mark.timeout(60)
def test_two_invites_at_the_same_instant_exactly_one_proceeds(
        config, facts, thread_switch_every_microsecond) -> None:
    """Threads released together by a barrier, 500 rounds, switching threads about every
    microsecond so that they interleave inside the decision: never two channels. (With the
    guard's lock taken out of on_call_attempt, both are allowed within a few rounds.)"""
    u = facts.user()
    for rnd in range(500):
        guard = PolicyGuard(config)
        barrier = threading.Barrier(2)
        results: list[Action] = []

        def invite(n: int, guard: PolicyGuard = guard, barrier: threading.Barrier = barrier,
                   rnd: int = rnd, results: list[Action] = results) -> None:
            attempt = facts.call(u, call_id=f"r{rnd}-{n}", device=f"dev{n}")
            barrier.wait()
            results.append(guard.on_call_attempt(attempt).action)

        threads = [threading.Thread(target=invite, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        assert sorted(a.value for a in results) == ["allow", "reject"], f"round {rnd}: {results}"
        assert guard.held("alice") == 1


def test_a_call_id_of_another_user_is_an_input_error(guard: PolicyGuard, facts) -> None:
    from dataclasses import replace

    from softphone.policy import PolicyInputError

    guard.on_call_attempt(facts.call(facts.user("alice"), call_id="same"))
    with pytest.raises(PolicyInputError, match="already belongs"):
        guard.on_call_attempt(facts.call(facts.user("bob"), call_id="same"))
    with pytest.raises(PolicyInputError, match="call id"):
        guard.on_call_attempt(replace(facts.call(facts.user("bob")), call_id=""))
    with pytest.raises(PolicyInputError, match="POSIX"):
        guard.on_call_attempt(facts.call(facts.user("bob"), now=float("nan")))


def test_ended_call_ids_are_forgotten_after_ended_keep_s(guard: PolicyGuard, facts,
                                                         config) -> None:
    """The guard's memory of ended calls is bounded in time (``[calls] ended_keep_s``, two
    hours: past the hourly compaction, a replay cannot reach them), so an edge carrying calls
    for months keeps a flat memory instead of every call id of the last two days."""
    u = facts.user()
    for n in range(200):
        guard.on_call_attempt(facts.call(u, call_id=f"c{n}", now=T0 + n))
        guard.on_call_end(f"c{n}", T0 + n + 0.5)
    assert len(guard.state.ended) == 200
    keep = config.calls.ended_keep_s
    assert keep == 7200
    guard.purge_due(T0 + 100 + keep)  # the hourly job: only the first hundred are old enough
    assert sorted(guard.state.ended) == sorted(f"c{n}" for n in range(100, 200))
    guard.purge_due(T0 + 300 + keep)
    assert guard.state.ended == {}
