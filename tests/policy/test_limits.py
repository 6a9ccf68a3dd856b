"""R-LIMIT-1/2/4/7, R-CLI-1/2, R-TECH-9, R-NUM-3 and account states."""

from __future__ import annotations

from dataclasses import replace

import pytest
from softphone.policy import (
    AccountState,
    Action,
    Audience,
    Direction,
    MediaLine,
    Plan,
    PolicyGuard,
)

T0 = 1_768_989_600.0  # 2026-01-21 11:00 Paris
DAY = 86400.0


def short_calls(guard: PolicyGuard, user, facts, n: int, start: float, *, answered: bool = True,
                length: float = 5.0, tag: str = "s"):
    decisions = []
    for i in range(n):
        t = start + i * 30
        cid = f"{tag}-{user.user_id}-{start}-{i}"
        assert guard.on_call_attempt(facts.call(user, f"01456{i % 100000:05d}", call_id=cid,
                                                now=t)).allowed
        if answered:
            guard.on_answer(cid, t + 1)
        decisions.append(guard.on_call_end(cid, t + 1 + length if answered else t + length))
    return decisions


# -- R-LIMIT-1 ---------------------------------------------------------------------------------

def test_a_call_under_15_s_counts_and_15_s_does_not(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_call_attempt(facts.call(u, call_id="a", now=T0))
    guard.on_answer("a", T0 + 1)
    d = guard.on_call_end("a", T0 + 15.999)
    assert ("short", "True") in d.details
    guard.on_call_attempt(facts.call(u, call_id="b", now=T0 + 100))
    guard.on_answer("b", T0 + 101)
    d = guard.on_call_end("b", T0 + 116)
    assert ("short", "False") in d.details
    assert guard.state.short_user_day[("alice", "2026-01-21")] == 1


def test_unanswered_call_counts_by_setup_time(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_call_attempt(facts.call(u, call_id="rang-briefly"))
    assert ("short", "True") in guard.on_call_end("rang-briefly", T0 + 8).details
    guard.on_call_attempt(facts.call(u, call_id="rang-long", now=T0 + 50))
    assert ("short", "False") in guard.on_call_end("rang-long", T0 + 80).details


def test_a_call_the_edge_did_not_place_is_no_short_call(guard: PolicyGuard, facts) -> None:
    """Admitted, then refused by the edge itself (488 no codec, 503 no port): the channel is
    back at once and nothing is counted; the same end as a hang-up would count."""
    from softphone.policy import EndReason

    u = facts.user()
    guard.on_call_attempt(facts.call(u, call_id="no-codec", now=T0))
    d = guard.on_call_end("no-codec", T0 + 0.01, EndReason.NOT_PLACED)
    assert dict(d.details)["short"] == "False" and dict(d.details)["reason"] == "not_placed"
    assert guard.held("alice") == 0 and not d.warnings
    assert guard.state.short_user_day.get(("alice", "2026-01-21"), 0) == 0
    guard.on_call_attempt(facts.call(u, call_id="hung-up", now=T0 + 1))
    assert dict(guard.on_call_end("hung-up", T0 + 1.01).details)["short"] == "True"


def test_inbound_calls_are_not_short_calls(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.on_call_attempt(facts.call(u, "+33187654321", call_id="in", presented="+33145678901",
                                     direction=Direction.INBOUND))
    guard.on_call_end("in", T0 + 2)
    assert guard.state.short_user_day == {}


def test_breach_is_the_account_average_reaching_60(guard: PolicyGuard, facts) -> None:
    """ "Si la moyenne ... atteint ce seuil": an average of exactly 60 is a breach day."""
    acct = facts.account(seats=2)
    alice, bob = facts.user("alice", acct), facts.user("bob", acct)
    # 119 short calls over 2 users = average 59.5: below the threshold
    short_calls(guard, alice, facts, 100, T0)
    short_calls(guard, bob, facts, 19, T0)
    assert guard.state.breach_days == {}
    d = short_calls(guard, bob, facts, 1, T0 + 5000, tag="x")[-1]  # 120 / 2 = 60
    assert guard.state.breach_days == {("acct-1", "2026-01"): {"2026-01-21"}}
    assert any(w.rule_id == "R-LIMIT-1" and w.audience is Audience.ADMIN for w in d.warnings)


def test_comparator_is_configurable(config, facts) -> None:
    assert config.limits.short_calls.comparator == ">="  # the shipped reading
    cfg = replace(config, limits=replace(config.limits, short_calls=replace(
        config.limits.short_calls, comparator=">")))
    guard = PolicyGuard(cfg)
    short_calls(guard, facts.user(), facts, 60, T0)
    assert not guard.state.breach_days  # "pas plus de 60": 60 is allowed
    short_calls(guard, facts.user(), facts, 1, T0 + 5000, tag="x")
    assert guard.state.breach_days


def test_warnings_at_1_and_2_then_suspension_at_3(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    texts = []
    for day in range(3):
        last = short_calls(guard, u, facts, 60, T0 + day * DAY)[-1]  # reaches 60
        texts.append(" ".join(w.message for w in last.warnings))
        if day < 2:
            assert guard.on_call_attempt(facts.call(u, call_id=f"ok{day}",
                                                    now=T0 + day * DAY + 5000)).allowed
            guard.on_call_end(f"ok{day}", T0 + day * DAY + 5100)
    assert "warning 1" in texts[0] and "warning 2" in texts[1]
    assert "at 3 breach days the unlimited plan is suspended for 7 days" in texts[0]
    # R-LIMIT-3: the unlimited plan is suspended for 7 days, the admin told until when
    assert "unlimited plan is suspended for 7 days, until 2026-01-30 " in texts[2]
    # calls go on, charged (unlimited_suspended), never refused for it
    d = guard.on_call_attempt(facts.call(u, call_id="after", now=T0 + 2 * DAY + 6000))
    assert d.allowed and d.billable and d.retry_after_s is None, d
    assert [w.rule_id for w in d.warnings] == ["R-LIMIT-3"]
    assert "suspended until 2026-01-30" in d.warnings[0].message
    guard.on_call_end("after", T0 + 2 * DAY + 6100)
    # emergency calls as ever
    e = facts.user("eve", account=facts.account(emergency_activated=True))
    assert guard.on_call_attempt(facts.call(e, "112", now=T0 + 2 * DAY + 6100)).action \
        is Action.ROUTE_EMERGENCY
    # and it ends after 7 days: in the bundle again
    later = guard.on_call_attempt(facts.call(u, call_id="later", now=T0 + 10 * DAY))
    assert later.allowed and not later.billable


def test_breach_days_are_per_calendar_month(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    jan30 = T0 + 9 * DAY
    for i in range(2):
        short_calls(guard, u, facts, 61, jan30 + i * DAY)  # 30 and 31 January
    short_calls(guard, u, facts, 61, jan30 + 2 * DAY)  # 1 February: a new month
    assert guard.state.suspended_until == {}
    assert len(guard.state.breach_days[("acct-1", "2026-02")]) == 1


def test_admin_can_lift_the_suspension(guard: PolicyGuard, facts) -> None:
    u = facts.user()
    guard.state.suspended_until["acct-1"] = T0 + 7 * DAY
    d = guard.on_call_attempt(facts.call(u, call_id="during", now=T0))
    assert d.allowed and d.billable
    guard.on_call_end("during", T0 + 30)
    guard.lift_suspension("acct-1", T0 + 31)
    d = guard.on_call_attempt(facts.call(u, call_id="lifted", now=T0 + 32))
    assert d.allowed and not d.billable


def suspending(config):
    """One short call a day (>=1) makes a breach day, and one breach day suspends."""
    return PolicyGuard(replace(config, limits=replace(config.limits, short_calls=replace(
        config.limits.short_calls, threshold=1, comparator=">=", warn_at_days=(),
        suspend_at_days=1))))


@pytest.mark.parametrize(("zone", "start", "end", "hours"), [
    # Paris springs forward on 29 March 2026: that week is 7 x 24 - 1 hours
    ("Europe/Paris", (2026, 3, 25, 12, 0), (2026, 4, 1, 12, 0), 167),
    # and falls back on 25 October 2026: 7 x 24 + 1
    ("Europe/Paris", (2026, 10, 22, 9, 30), (2026, 10, 29, 9, 30), 169),
    # New York springs forward on 8 March 2026, three weeks before Paris
    ("America/New_York", (2026, 3, 5, 18, 0), (2026, 3, 12, 18, 0), 167),
    ("Asia/Tokyo", (2026, 3, 25, 12, 0), (2026, 4, 1, 12, 0), 168),  # no DST
])
def test_suspension_is_seven_calendar_days_in_the_accounts_zone(
        config, facts, zone, start, end, hours) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    t = datetime(*start, tzinfo=tz).timestamp()
    guard = suspending(config)
    u = facts.user(account=facts.account(timezone=zone))
    guard.on_call_attempt(facts.call(u, call_id="short", now=t - 2))
    end_decision = guard.on_call_end("short", t)  # the breach day, and the suspension, now
    until = guard.state.suspended_until["acct-1"]
    assert datetime.fromtimestamp(until, tz) == datetime(*end, tzinfo=tz)  # same wall clock
    assert until - t == hours * 3600
    admin = [w.message for w in end_decision.warnings if w.rule_id == "R-LIMIT-3"
             and w.audience is Audience.ADMIN]
    assert len(admin) == 1 and datetime(*end, tzinfo=tz).strftime("%Y-%m-%d %H:%M") in admin[0]
    # the suspension's first second and last second
    assert guard.on_call_attempt(facts.call(u, call_id="in", now=until - 1)).billable
    guard.on_call_end("in", until - 0.5)
    assert not guard.on_call_attempt(facts.call(u, call_id="out", now=until + 1)).billable


def test_an_unknown_account_zone_is_a_clear_error_and_changes_nothing(config, facts) -> None:
    from softphone.policy import PolicyInputError

    guard = suspending(config)
    u = facts.user(account=facts.account(timezone="Europe/Atlantis"))
    with pytest.raises(PolicyInputError, match="Europe/Atlantis"):
        guard.on_call_attempt(facts.call(u, call_id="c"))
    assert guard.state.calls == {} and guard.drain_events() == []


def test_the_suspension_is_of_the_unlimited_plan_only(config, facts) -> None:
    """On a usage plan every call is charged already: nothing changes for its calls; internal
    calls never reach the provider and are not charged either."""
    guard = suspending(config)
    usage = facts.user(account=facts.account(plan=Plan.USAGE))
    guard.state.suspended_until["acct-1"] = T0 + 7 * DAY
    d = guard.on_call_attempt(facts.call(usage, call_id="u", now=T0))
    assert d.allowed and not d.billable and not d.warnings
    guard.on_call_end("u", T0 + 60)
    ext = guard.on_call_attempt(facts.call(facts.user(), "201", call_id="i", now=T0 + 100,
                                           internal=True))
    assert ext.allowed and not ext.billable


# -- R-LIMIT-4 SMART -----------------------------------------------------------------------------

def smart_user(facts):
    return facts.user(account=facts.account(smart_pack=True))


def call_and_end(guard, facts, u, dialed, now):
    d = guard.on_call_attempt(facts.call(u, dialed, now=now))
    if d.allowed:
        guard.on_call_end(d.call_id, now + 60)
    return d


def test_smart_500_distinct_contacts_then_existing_ones_only(guard: PolicyGuard, facts) -> None:
    u = smart_user(facts)
    for i in range(500):
        d = call_and_end(guard, facts, u, f"+33145{i:06d}", T0 + i * 100)
        assert d.allowed
    assert len(guard.state.contacts[("acct-1", "2026-01")]) == 500
    refused = call_and_end(guard, facts, u, "+33199999999", T0 + 60000)
    assert refused.action is Action.REJECT and refused.rule_id == "R-LIMIT-4"
    assert refused.clause == "Terms of service, 22 January 2026, Annex 1, paragraph 11"
    # an existing contact, dialed in its national form, is the same contact
    assert call_and_end(guard, facts, u, "0145000007", T0 + 60100).allowed


def test_smart_warns_near_the_cap(guard: PolicyGuard, facts) -> None:
    u = smart_user(facts)
    for i in range(449):
        call_and_end(guard, facts, u, f"+33145{i:06d}", T0 + i * 100)
    d = call_and_end(guard, facts, u, "+33145999999", T0 + 50000)
    assert any(w.rule_id == "R-LIMIT-4" and "450 of 500" in w.message for w in d.warnings)


def test_smart_counts_reset_with_the_calendar_month(guard: PolicyGuard, facts) -> None:
    u = smart_user(facts)
    guard.state.contacts[("acct-1", "2026-01")] = {f"+33145{i:06d}" for i in range(500)}
    assert call_and_end(guard, facts, u, "+33199999999", T0).action is Action.REJECT
    assert call_and_end(guard, facts, u, "+33199999999", T0 + 12 * DAY).allowed  # 2 February


def test_refused_calls_do_not_spend_a_contact(guard: PolicyGuard, facts) -> None:
    u = smart_user(facts)
    guard.on_call_attempt(facts.call(u, "+33145000001", call_id="busy"))
    guard.on_call_attempt(facts.call(u, "+33145000002", call_id="refused"))
    assert guard.state.contacts[("acct-1", "2026-01")] == {"+33145000001"}


# -- R-LIMIT-7 trial -----------------------------------------------------------------------------

def test_trial_60_minutes_then_refused(guard: PolicyGuard, facts) -> None:
    u = facts.user(account=facts.account(trial=True))
    guard.on_call_attempt(facts.call(u, call_id="t1"))
    answer = guard.on_answer("t1", T0 + 1)
    assert answer.max_duration_s == 3600
    guard.on_call_end("t1", T0 + 1 + 3000)
    guard.on_call_attempt(facts.call(u, call_id="t2", now=T0 + 4000))
    assert guard.on_answer("t2", T0 + 4001).max_duration_s == 600
    guard.on_call_end("t2", T0 + 4601)
    d = guard.on_call_attempt(facts.call(u, call_id="t3", now=T0 + 5000))
    assert d.action is Action.REJECT and d.rule_id == "R-LIMIT-7"
    assert d.announcement == "trial-minutes"


def test_trial_excludes_international_and_premium(guard: PolicyGuard, facts) -> None:
    u = facts.user(account=facts.account(trial=True))
    for dialed in ("+4930123456", "0891234567"):
        d = guard.on_call_attempt(facts.call(u, dialed))
        assert d.action is Action.REJECT and d.announcement == "trial-excluded", dialed


def test_trial_five_users(guard: PolicyGuard, facts) -> None:
    acct = facts.account(trial=True, seats=6)
    for i in range(5):
        assert guard.on_call_attempt(facts.call(facts.user(f"u{i}", acct))).allowed
    d = guard.on_call_attempt(facts.call(facts.user("u5", acct)))
    assert d.action is Action.REJECT and d.announcement == "trial-users"
    assert guard.on_call_attempt(facts.call(facts.user("u0", acct), call_id="again",
                                            now=T0 + 10)).action is Action.REJECT  # busy, not cap
    assert ("held", "1") in guard.on_call_attempt(
        facts.call(facts.user("u0", acct), call_id="again2", now=T0 + 11)).details


def test_inbound_international_is_not_trial_time(guard: PolicyGuard, facts) -> None:
    u = facts.user(account=facts.account(trial=True))
    guard.on_call_attempt(facts.call(u, "+33187654321", call_id="in", presented="+4930123456",
                                     direction=Direction.INBOUND))
    assert guard.on_answer("in", T0 + 1).max_duration_s is None
    guard.on_call_end("in", T0 + 5000)
    assert guard.state.trial_seconds == {}


# -- R-LIMIT-2 fair use ------------------------------------------------------------------------

def test_fair_use_warns_near_and_over_five_times_the_baseline(guard: PolicyGuard, facts,
                                                             config) -> None:
    u = facts.user()
    limit = config.limits.fair_use.baseline_rate * config.limits.fair_use.multiple
    window = config.limits.fair_use.window_days * DAY
    # one long call reaching 85 % of the limit
    talk = 0.85 * limit * window
    guard.on_call_attempt(facts.call(u, call_id="long"))
    guard.on_answer("long", T0)
    d = guard.on_call_end("long", T0 + talk)
    assert [w.rule_id for w in d.warnings] == ["R-LIMIT-2"] and "near" in d.warnings[0].message
    guard.on_call_attempt(facts.call(u, call_id="more", now=T0 + talk + 1))
    guard.on_answer("more", T0 + talk + 1)
    d = guard.on_call_end("more", T0 + talk + 1 + 0.2 * limit * window)
    assert "exceeded" in d.warnings[0].message
    assert guard.fair_use_rate("acct-1", 1, T0 + talk) == pytest.approx(1.05 * limit)


def test_fair_use_only_on_the_unlimited_plan(guard: PolicyGuard, facts) -> None:
    u = facts.user(account=facts.account(plan=Plan.USAGE))
    guard.on_call_attempt(facts.call(u, call_id="c"))
    guard.on_answer("c", T0)
    assert guard.on_call_end("c", T0 + 20 * DAY).warnings == ()


# -- R-CLI-1/2 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dialed,presented,billable,rule", [
    ("+4930123456", "+33187654321", False, None),  # EEA with a French number
    ("+4930123456", "+12125550100", True, "R-CLI-1"),  # EEA with a US number
    ("+41441234567", "+33187654321", True, "R-CLI-2"),  # Switzerland needs a Swiss number
    ("+41441234567", "+41441112233", False, None),
    ("+12125550100", "+12125550123", False, None),  # not EEA, not CH: not our rule
])
def test_caller_id_decides_the_bundle_never_blocks(guard: PolicyGuard, facts, dialed, presented,
                                                   billable, rule) -> None:
    d = guard.on_call_attempt(facts.call(facts.user(), dialed, presented=presented))
    assert d.allowed and d.billable is billable
    assert [w.rule_id for w in d.warnings] == ([rule] if rule else [])


# -- R-TECH-9, R-NUM-3 -----------------------------------------------------------------------------

def test_mrcp_only_offer_is_refused(guard: PolicyGuard, facts) -> None:
    d = guard.on_call_attempt(facts.call(facts.user(), media=(
        MediaLine("application", "TCP/MRCPv2", ("1",)),)))
    assert (d.action, d.sip_status, d.rule_id) == (Action.REJECT, 488, "R-TECH-9")


def test_mrcp_next_to_audio_is_stripped(guard: PolicyGuard, facts) -> None:
    d = guard.on_call_attempt(facts.call(facts.user(), media=(
        MediaLine("audio", "RTP/AVP", ("96", "8", "0")),
        MediaLine("application", "TCP/TLS/MRCPv2", ("1",)))))
    assert d.allowed and d.strip_media == (1,)


@pytest.mark.parametrize("dialed,action,kind", [
    ("0899123456", Action.REJECT, "premium"),
    ("118218", Action.REJECT, "directory"),
    ("0891234567", Action.ALLOW, "premium"),
    ("3949", Action.ALLOW, "special"),
    ("0800123456", Action.ALLOW, "freephone"),
])
def test_special_numbers_follow_the_table(guard: PolicyGuard, facts, dialed, action,
                                         kind) -> None:
    d = guard.on_call_attempt(facts.call(facts.user(), dialed))
    assert d.action is action
    assert dict(d.details)["special"].startswith(kind)
    if action is Action.REJECT:
        assert d.rule_id == "R-NUM-3" and d.announcement == "special-number"


def test_unparseable_number_is_a_clean_484(guard: PolicyGuard, facts) -> None:
    d = guard.on_call_attempt(facts.call(facts.user(), "sip:alice@example.com"))
    assert (d.action, d.sip_status) == (Action.REJECT, 484)


def test_internal_extensions_skip_numbering_rules(guard: PolicyGuard, facts) -> None:
    d = guard.on_call_attempt(facts.call(facts.user(), "201", internal=True))
    assert d.allowed and not d.billable
    by_name = guard.on_call_attempt(facts.call(facts.user("bob"), "sip:carol@pbx.example",
                                               internal=True))
    assert by_name.allowed


# -- account states ------------------------------------------------------------------------------

@pytest.mark.parametrize("state,rule", [
    (AccountState.BILLING_SUSPENDED, "R-BILL-10"), (AccountState.ABUSE_SUSPENDED, "R-LIMIT-3"),
    (AccountState.PENDING_KYC, "R-LIMIT-8"), (AccountState.TERMINATED, "R-LIFE-5")])
def test_suspended_states_refuse_outbound_and_inbound(guard: PolicyGuard, facts, state,
                                                      rule) -> None:
    u = facts.user(account=facts.account(state=state))
    out = guard.on_call_attempt(facts.call(u))
    assert (out.action, out.sip_status, out.rule_id) == (Action.REJECT, 403, rule)
    inbound = guard.on_call_attempt(facts.call(u, "+33187654321", presented="+33145678901",
                                               direction=Direction.INBOUND))
    assert (inbound.sip_status, inbound.rule_id) == (480, rule)


def test_unlimited_suspended_still_calls_but_charged(guard: PolicyGuard, facts) -> None:
    u = facts.user(account=facts.account(state=AccountState.UNLIMITED_SUSPENDED))
    d = guard.on_call_attempt(facts.call(u))
    assert d.allowed and d.billable and d.warnings[0].rule_id == "R-LIMIT-3"


def test_fair_use_window_counts_calendar_days_across_dst(guard: PolicyGuard, facts) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    # 29 March 2026 has 23 hours in Paris; 24 h before 00:30 on the 30th is the 28th
    before = datetime(2026, 3, 29, 12, 0, tzinfo=paris).timestamp()
    after = datetime(2026, 3, 30, 0, 30, tzinfo=paris).timestamp()
    guard.state.talk_account_day[("acct-1", "2026-03-29")] = 1000.0
    window = 30 * DAY
    assert guard.fair_use_rate("acct-1", 1, after) == pytest.approx(1000.0 / window)
    assert guard.fair_use_rate("acct-1", 1, before) == pytest.approx(1000.0 / window)
    # 30 calendar days later it has left the window
    gone = datetime(2026, 4, 28, 0, 30, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    assert guard.fair_use_rate("acct-1", 1, gone) == 0.0


def test_internal_calls_are_not_provider_calls(guard: PolicyGuard, facts) -> None:
    u = facts.user(account=facts.account(trial=True, smart_pack=True))
    guard.state.trial_seconds["alice"] = 3600.0  # trial minutes used up
    d = guard.on_call_attempt(facts.call(u, "201", call_id="ext", internal=True))
    assert d.allowed
    guard.on_answer("ext", T0 + 1)
    guard.on_call_end("ext", T0 + 3)
    assert guard.state.short_user_day == {} and guard.state.contacts == {}
    assert guard.state.trial_seconds["alice"] == 3600.0
