"""CallAdmission: the edge's admit/released protocol over the guard, for local-to-local calls."""

from __future__ import annotations

import json

from softphone.policy import Account, PolicyGuard, User
from softphone.policy.admission import CallAdmission

from softphone.audit import AuditLog
from softphone.ledgerstore import CounterStore

T0 = 1_768_989_600.0
ACCT = Account("acct-1", "FR", seats=3)
USERS = {name: User(name, ACCT, numbers=(f"+3318765432{i}",))
         for i, name in enumerate(("alice", "bob", "carol"))}


def test_both_sides_take_a_channel_and_give_it_back(config) -> None:
    guard = PolicyGuard(config)
    adm = CallAdmission(guard, USERS.get)
    assert adm.admit("k1", "alice", "bob", inbound_local=True, now=T0) is None
    assert guard.held("alice") == guard.held("bob") == 1
    # carol calling busy bob hears busy, and keeps no channel herself
    assert adm.admit("k2", "carol", "bob", inbound_local=True, now=T0 + 1) == (486, "Busy Here")
    assert guard.held("carol") == 0
    # alice calling while in a call is refused with the call-limit reason
    assert adm.admit("k3", "alice", "carol", inbound_local=True, now=T0 + 2) == (
        403, "Simultaneous Call Limit Reached")
    adm.released("k1", answered=True, duration=30.0, now=T0 + 31)
    adm.released("k1", answered=True, duration=30.0, now=T0 + 32)  # idempotent
    assert guard.held("alice") == guard.held("bob") == 0


def test_unknown_parties_are_not_guarded(config) -> None:
    guard = PolicyGuard(config)
    adm = CallAdmission(guard, USERS.get)
    assert adm.admit("k1", "trunk-caller", "bob", inbound_local=False, now=T0) is None
    assert guard.held("bob") == 1


def test_a_call_from_outside_showing_a_users_name_is_only_the_callees(config) -> None:
    """From the trunk, From says "alice": still no call of alice's (no channel, no limit),
    only bob's inbound side is decided; alice can place her own call meanwhile."""
    guard = PolicyGuard(config)
    adm = CallAdmission(guard, USERS.get)
    (inbound,) = adm.admit_decisions("k1", "alice", "bob", inbound_local=False, now=T0,
                                     caller_local=False)
    assert inbound.allowed and inbound.call_id == "k1/callee" and inbound.user_id == "bob"
    assert dict(inbound.details) == {"direction": "inbound"}
    assert guard.held("alice") == 0 and guard.held("bob") == 1
    assert adm.admit("k2", "alice", "carol", inbound_local=True, now=T0 + 1) is None
    adm.released("k1", answered=True, duration=10.0, now=T0 + 11)
    assert guard.held("bob") == 0 and guard.held("alice") == 1


def test_commit_then_audit_for_every_decision(config, tmp_path) -> None:
    guard = PolicyGuard(config)
    store = CounterStore(tmp_path)
    order: list[str] = []

    with AuditLog(tmp_path / "audit.jsonl") as audit:
        def commit() -> None:
            order.append("commit")
            store.commit(guard)

        def record(d) -> None:
            order.append("audit")
            audit.record(d)

        adm = CallAdmission(guard, USERS.get, commit=commit, on_decision=record)
        adm.admit("k1", "alice", "bob", inbound_local=True, now=T0)
        adm.admit("k2", "carol", "bob", inbound_local=True, now=T0 + 1)
        adm.released("k1", answered=True, duration=5.0, now=T0 + 6)
    assert order[:2] == ["commit", "audit"]
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(r["call_id"], r["action"]) for r in lines] == [
        ("k1/caller", "allow"), ("k1/callee", "allow"),
        ("k2/caller", "allow"), ("k2/callee", "reject"), ("k2/caller", "none"),
        ("k1/caller", "none"), ("k1/callee", "none")]
    assert store.load().persistent_view() == guard.state.persistent_view()
    store.close()


def test_admit_decisions_caller_first_refusal_last_and_what_goes_with_the_call(config) -> None:
    from softphone.policy import MediaLine

    guard = PolicyGuard(config)
    adm = CallAdmission(guard, USERS.get)
    mrcp = (MediaLine("audio", "RTP/AVP", ("8",)), MediaLine("application", "TCP/MRCPv2", ()))
    out, inn = adm.admit_decisions("k1", "alice", "bob", inbound_local=True, now=T0,
                                   media=mrcp)
    assert (out.call_id, inn.call_id) == ("k1/caller", "k1/callee")
    assert out.allowed and inn.allowed and out.strip_media == (1,)  # MRCP refused, audio kept
    # bob busy: carol's side allowed, then bob's refusal last, carol's channel given back
    first, last = adm.admit_decisions("k2", "carol", "bob", inbound_local=True, now=T0 + 1)
    assert first.allowed and not last.allowed and last.sip_status == 486
    assert guard.held("carol") == 0
    # a presented number that is not the caller's first: the billing flag follows it
    (alone,) = adm.admit_decisions("k3", "carol", "+41441234567", inbound_local=False,
                                   now=T0 + 2, presented="+12125550123")
    assert alone.allowed and alone.billable


def test_registered_decides_for_users_only_and_audits(config, tmp_path) -> None:
    guard = PolicyGuard(config)
    seen: list[str] = []
    adm = CallAdmission(guard, USERS.get, on_decision=lambda d: seen.append(d.rule_id))
    assert adm.registered("stranger", device="sip:x@h", source_ip="127.0.0.1", expires_s=60,
                          user_agent="", now=T0) is None
    d = adm.registered("alice", device="sip:alice@10.0.0.5", source_ip="10.0.0.5",
                       expires_s=60, user_agent="phone/1", now=T0)
    assert d is not None and d.allowed and seen == ["R-ACCT-1"]
    d = adm.registered("alice", device="sip:alice@192.0.2.9", source_ip="192.0.2.9",
                       expires_s=60, user_agent="phone/1", now=T0 + 1)
    assert d is not None and any(w.rule_id == "R-ACCT-1" for w in d.warnings)  # two places


def test_a_retry_on_an_ended_call_id_is_decided_afresh(config) -> None:
    """A phone may retry a refused or failed call on the same Call-ID (RFC 3261 §8.1.1.4
    only asks for a new CSeq): once the edge released the earlier attempt, the retry is a new
    attempt for the guard, not "481 Call Already Ended" for the two days ended calls are
    kept. Each attempt is its own guard call id, so the ledger still counts each once."""
    guard = PolicyGuard(config)
    adm = CallAdmission(guard, USERS.get)
    assert adm.admit("k1", "alice", "bob", inbound_local=True, now=T0) is None
    adm.released("k1", answered=False, duration=0.0, now=T0 + 1)
    for n in range(2, 5):
        taken = adm.admit_decisions("k1", "alice", "bob", inbound_local=True, now=T0 + n)
        assert [d.allowed for d in taken] == [True, True], taken
        assert taken[0].call_id == f"k1#{n}/caller"
        assert guard.held("alice") == guard.held("bob") == 1
        adm.released("k1", answered=False, duration=0.0, now=T0 + n + 0.5)
        assert guard.held("alice") == guard.held("bob") == 0


def test_a_refused_retry_keeps_nothing_and_the_next_one_is_decided_too(config) -> None:
    guard = PolicyGuard(config)
    adm = CallAdmission(guard, USERS.get)
    assert adm.admit("busy", "carol", "bob", inbound_local=True, now=T0) is None
    assert adm.admit("k1", "alice", "bob", inbound_local=True, now=T0 + 1) == (486, "Busy Here")
    assert adm.admit("k1", "alice", "bob", inbound_local=True, now=T0 + 2) == (486, "Busy Here")
    adm.released("busy", answered=True, duration=2.0, now=T0 + 3)
    assert adm.admit("k1", "alice", "bob", inbound_local=True, now=T0 + 4) is None
    assert guard.held("alice") == guard.held("bob") == 1


def test_what_the_edge_asks_without_a_time_is_dated_by_the_injected_wall_clock(config) -> None:
    """The edge passes no ``now`` (its own clock is monotonic): the admission dates every
    decision point by the wall clock it was given, as the policy counts days and months."""
    guard = PolicyGuard(config)
    wall = [T0]
    adm = CallAdmission(guard, USERS.get, clock=lambda: wall[0])
    taken = adm.admit_decisions("k1", "alice", "bob", inbound_local=True)
    assert [d.allowed for d in taken] == [True, True]
    assert {guard.state.calls[leg].acquired_at for leg in ("k1/caller", "k1/callee")} == {T0}
    wall[0] = T0 + 5
    adm.answered("k1")
    assert {guard.state.calls[leg].answered_at for leg in ("k1/caller", "k1/callee")} == {T0 + 5}
    wall[0] = T0 + 65
    adm.released("k1", answered=True, duration=60.0)
    assert guard.held("alice") == guard.held("bob") == 0
    # a time given still wins: tests and replays date their own decisions
    adm.admit_decisions("k2", "alice", "carol", inbound_local=True, now=T0 + 100)
    assert guard.state.calls["k2/caller"].acquired_at == T0 + 100
