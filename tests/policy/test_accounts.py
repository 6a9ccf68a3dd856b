"""R-ACCT-1/2/3: one person per account, several devices are one user, PBX user agents,
automated dialing flagged and throttled under the SIP option on the unlimited plan."""

from __future__ import annotations

from dataclasses import replace

import pytest
from softphone.policy import (
    Action,
    Audience,
    DeviceClass,
    Plan,
    PolicyGuard,
    PolicyInputError,
    Registration,
)

T0 = 1_768_989_600.0


def reg(user, device, ip, now=T0, ua="Yealink SIP-T46U", expires=3600):
    return Registration(user, device, DeviceClass.SIP, ip, now, expires, ua)


def acct(d):
    """The R-ACCT warnings of a decision (a registration also carries R-EMERG-6 status)."""
    return [w for w in d.warnings if w.rule_id.startswith("R-ACCT")]


def test_two_devices_in_one_place_are_fine(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_registration(reg(u, "desk", "192.0.2.10"))
    d = guard.on_registration(reg(u, "browser", "192.0.2.77"))
    assert d.action is Action.ALLOW and acct(d) == []
    assert guard.registered_devices("alice", T0) == ["browser", "desk"]


def test_two_places_are_one_user_and_flagged(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_registration(reg(u, "desk", "192.0.2.10"))
    d = guard.on_registration(reg(u, "laptop", "198.51.100.4"))
    assert d.action is Action.ALLOW
    (w,) = acct(d)
    assert w.rule_id == "R-ACCT-1" and w.audience is Audience.ADMIN and "2 places" in w.message
    # still one channel count for both
    assert guard.on_call_attempt(facts.call(u, device="desk")).allowed
    assert guard.on_call_attempt(facts.call(u, device="laptop")).action is Action.REJECT


def test_expired_or_removed_bindings_are_no_place(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_registration(reg(u, "desk", "192.0.2.10", expires=60))
    assert acct(guard.on_registration(reg(u, "laptop", "198.51.100.4", now=T0 + 61))) == []
    guard.on_registration(reg(u, "desk", "192.0.2.10", now=T0 + 62))
    guard.on_registration(reg(u, "desk", "192.0.2.10", now=T0 + 63, expires=0))
    assert guard.registered_devices("alice", T0 + 64) == ["laptop"]


def test_ipv6_place_is_the_64(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_registration(reg(u, "a", "2001:db8:1:2::10"))
    assert acct(guard.on_registration(reg(u, "b", "2001:db8:1:2:ffff::1"))) == []
    assert acct(guard.on_registration(reg(u, "c", "2001:db8:1:3::1")))


def test_bad_source_address_is_a_policy_input_error(guard: PolicyGuard, facts) -> None:
    with pytest.raises(PolicyInputError, match="not an IP address"):
        guard.on_registration(reg(facts.user(), "desk", "999.1.1.1"))


def test_pbx_user_agent_is_flagged_or_refused(guard: PolicyGuard, facts, config) -> None:
    u = facts.user()
    d = guard.on_registration(reg(u, "box", "192.0.2.10", ua="Asterisk PBX 20.5.0"))
    assert d.action is Action.ALLOW and acct(d)[0].rule_id == "R-ACCT-2"
    strict = PolicyGuard(replace(config, accounts=replace(config.accounts, pbx_action="reject")))
    d = strict.on_registration(reg(u, "box", "192.0.2.10", ua="FreeSWITCH-mod_sofia/1.10"))
    assert (d.action, d.sip_status, d.rule_id) == (Action.REJECT, 403, "R-ACCT-2")


def test_a_pbx_that_calls_without_registering_is_judged_the_same(guard: PolicyGuard, facts,
                                                                   config) -> None:
    """R-ACCT-2 on INVITE: no REGISTER first, the call's own User-Agent decides; warned,
    or refused before any channel with the REGISTER's status; emergency calls still go."""
    u = facts.user(emergency_activated=True)
    d = guard.on_call_attempt(facts.call(u, call_id="w", user_agent="Asterisk PBX 20.5.0"))
    assert d.allowed and [w.rule_id for w in d.warnings] == ["R-ACCT-2"]
    assert d.warnings[0].audience is Audience.ADMIN
    guard.on_call_end("w", T0 + 60)
    strict = PolicyGuard(replace(config, accounts=replace(config.accounts, pbx_action="reject")))
    d = strict.on_call_attempt(facts.call(u, call_id="r", user_agent="FreeSWITCH-mod_sofia"))
    assert (d.action, d.sip_status, d.reason_phrase, d.rule_id, d.point) == (
        Action.REJECT, 403, "Switches Not Allowed", "R-ACCT-2", "call_attempt")
    assert dict(d.details)["user_agent"] == "FreeSWITCH-mod_sofia" and strict.held("alice") == 0
    assert strict.on_call_attempt(facts.call(u, call_id="p", user_agent="Yealink SIP-T46U")).allowed
    strict.on_call_end("p", T0 + 30)
    sos = strict.on_call_attempt(facts.call(u, "112", call_id="e", user_agent="Asterisk PBX"))
    assert sos.action is Action.ROUTE_EMERGENCY


def sip_option_user(facts):
    return facts.user(account=facts.account(sip_option=True, plan=Plan.UNLIMITED))


def test_call_rate_flags_and_throttles(guard: PolicyGuard, facts, config) -> None:
    cfg = config.accounts.automated
    u = sip_option_user(facts)
    t = T0
    for i in range(cfg.max_attempts):
        d = guard.on_call_attempt(facts.call(u, f"+331456789{i:02d}", call_id=f"c{i}", now=t))
        assert d.allowed, i
        guard.on_call_end(f"c{i}", t + 10)
        t += 25  # 20 calls in 500 s: busy, but not past the threshold
    assert "alice" not in guard.state.throttled_until
    d = guard.on_call_attempt(facts.call(u, "+33145000000", call_id="c-next", now=t))
    assert d.action is Action.REJECT and d.rule_id == "R-ACCT-3"  # 21 in 600 s: throttled
    assert d.retry_after_s is not None and 0 < d.retry_after_s <= cfg.throttle_gap_s
    assert guard.state.throttled_until["alice"] == pytest.approx(t + cfg.throttle_s)
    # one attempt per throttle gap goes through
    ok = guard.on_call_attempt(facts.call(u, call_id="paced", now=t + cfg.throttle_gap_s))
    assert ok.allowed


def test_back_to_back_redial_streak_flags(guard: PolicyGuard, facts, config) -> None:
    cfg = config.accounts.automated
    u = sip_option_user(facts)
    t = T0
    decisions = []
    for i in range(cfg.gap_streak + 1):
        d = guard.on_call_attempt(facts.call(u, call_id=f"c{i}", now=t))
        decisions.append(d.action)
        if d.allowed:
            guard.on_call_end(f"c{i}", t + 40)
        t += 40 + cfg.min_gap_s / 2  # each new call half a gap after the last one ended
    assert decisions[: cfg.gap_streak] == [Action.ALLOW] * cfg.gap_streak
    assert decisions[-1] is Action.REJECT


def test_humans_pace_is_not_flagged(guard: PolicyGuard, facts) -> None:
    u = sip_option_user(facts)
    t = T0
    for i in range(40):
        assert guard.on_call_attempt(facts.call(u, call_id=f"c{i}", now=t)).allowed
        guard.on_call_end(f"c{i}", t + 90)
        t += 90 + 20  # 20 s to dial the next number
    assert guard.state.throttled_until == {}


def test_heuristics_apply_only_to_the_sip_option_on_unlimited(guard: PolicyGuard, facts) -> None:
    u = facts.user(account=facts.account(sip_option=True, plan=Plan.USAGE))
    for i in range(50):
        assert guard.on_call_attempt(facts.call(u, call_id=f"c{i}", now=T0 + i)).allowed
        guard.on_call_end(f"c{i}", T0 + i + 0.5)
    assert guard.state.throttled_until == {}
