"""R-EMERG-1..7 and R-EMERG-12: emergency numbers first, routed only when available, with the
location; otherwise a spoken notice, a clear status, an audit record. Never AI."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from softphone.policy import (
    AccountState,
    Action,
    CivicAddress,
    Direction,
    Location,
    Party,
    PolicyGuard,
)

T0 = 1_768_989_600.0
FR_CODES = ["112", "15", "17", "18", "115", "114", "119", "191", "196", "197"]


def ready(facts, **kw):
    return facts.user(account=facts.account(emergency_activated=True, **kw))


@pytest.mark.parametrize("code", FR_CODES)
def test_every_french_code_is_routed_with_location(guard: PolicyGuard, facts, code) -> None:
    d = guard.on_call_attempt(facts.call(ready(facts), code))
    assert d.action is Action.ROUTE_EMERGENCY and d.rule_id == "R-EMERG-1"
    assert d.route == "sip:sos@emergency.invalid"
    assert d.service_urn is not None and d.service_urn.startswith("urn:service:sos")
    assert d.location is not None and d.location.geolocation.startswith("<cid:")
    assert d.location.geolocation_routing == "yes"
    assert d.ai_allowed is False


def test_service_urns_follow_the_code(guard: PolicyGuard, facts) -> None:
    u = ready(facts)
    urns = {code: dict(guard.on_call_attempt(facts.call(u, code, call_id=code)).details)[
        "service_urn"] for code in ("15", "17", "18", "112")}
    assert urns == {"15": "urn:service:sos.ambulance", "17": "urn:service:sos.police",
                    "18": "urn:service:sos.fire", "112": "urn:service:sos"}


@pytest.mark.parametrize("country,code", [("GB", "999"), ("DE", "110"), ("CH", "144"),
                                          ("IT", "113"), ("ES", "091"), ("AT", "133"),
                                          ("BE", "101"), ("IE", "999"), ("SE", "112")])
def test_each_eligible_country_has_its_own_codes(guard: PolicyGuard, facts, country,
                                                 code) -> None:
    u = facts.user(account=facts.account(emergency_activated=True),
                   location=Location(country, civic=CivicAddress(country, a3="Town")))
    d = guard.on_call_attempt(facts.call(u, code))
    assert d.action is Action.ROUTE_EMERGENCY
    assert dict(d.details)["country"] == country


def test_a_code_means_what_it_means_where_the_user_is(guard: PolicyGuard, facts) -> None:
    # 999 is not an emergency number in France: it is a short code with no class there
    d = guard.on_call_attempt(facts.call(ready(facts), "999"))
    assert d.action is Action.REJECT and d.rule_id == "R-NUM-3"


def test_location_body_is_pidf_lo_with_the_civic_address(guard: PolicyGuard, facts) -> None:
    d = guard.on_call_attempt(facts.call(ready(facts), "112", call_id="e1"))
    assert d.location is not None
    root = ET.fromstring(d.location.body)
    ns = {"p": "urn:ietf:params:xml:ns:pidf", "ca": "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"}
    assert root.tag == "{urn:ietf:params:xml:ns:pidf}presence"
    assert root.find(".//ca:civicAddress/ca:A3", ns).text == "Paris"
    assert d.location.content_id == "<" + d.location.geolocation[5:-1] + ">"


@pytest.mark.parametrize("state", [s for s in AccountState if s is not AccountState.TERMINATED])
def test_never_blocked_by_suspension_or_states(guard: PolicyGuard, facts, state) -> None:
    d = guard.on_call_attempt(facts.call(ready(facts, state=state), "112"))
    assert d.action is Action.ROUTE_EMERGENCY


def test_terminated_account_hears_the_notice(guard: PolicyGuard, facts) -> None:
    d = guard.on_call_attempt(facts.call(ready(facts, state=AccountState.TERMINATED), "112"))
    assert d.action is Action.REJECT and d.announcement == "emergency-unavailable"


def test_never_blocked_by_the_channel_limit(guard: PolicyGuard, facts) -> None:
    u = ready(facts)
    assert guard.on_call_attempt(facts.call(u, call_id="busy")).allowed
    d = guard.on_call_attempt(facts.call(u, "112", call_id="e1", device="browser"))
    assert d.action is Action.ROUTE_EMERGENCY
    # the emergency call occupies the user: a call towards them meanwhile is busy
    guard.on_call_end("busy", T0 + 5)
    inbound = guard.on_call_attempt(facts.call(u, "+33187654321", call_id="in",
                                               direction=Direction.INBOUND,
                                               presented="+33145678901"))
    assert inbound.sip_status == 486


def test_never_blocked_by_trial_or_short_call_suspension(guard: PolicyGuard, facts) -> None:
    u = ready(facts, trial=True)
    guard.state.trial_seconds["alice"] = 10_000.0  # trial minutes long gone
    guard.state.suspended_until["acct-1"] = T0 + 86400
    assert guard.on_call_attempt(facts.call(u, "0145678901")).action is Action.REJECT
    assert guard.on_call_attempt(facts.call(u, "18")).action is Action.ROUTE_EMERGENCY


@pytest.mark.parametrize("why,kw,rule", [
    ("not activated", {"account": "off"}, "R-EMERG-1"),
    ("no location", {"location": None}, "R-EMERG-3"),
    ("ineligible country", {"location": Location("PL", civic=CivicAddress("PL"))}, "R-EMERG-2"),
])
def test_unavailable_gives_notice_status_reason_and_audit(guard: PolicyGuard, facts, why, kw,
                                                         rule) -> None:
    acct = facts.account(emergency_activated=kw.pop("account", "on") == "on")
    u = facts.user(account=acct, **kw)
    d = guard.on_call_attempt(facts.call(u, "112"))
    assert d.action is Action.REJECT and d.rule_id == rule, why
    assert (d.sip_status, d.reason_phrase) == (403, "Emergency Calls Not Available From This Line")
    assert d.announcement == "emergency-unavailable"
    assert d.notices and d.notices[0].to is Party.USER
    assert "mobile phone or a landline" in d.notices[0].text
    assert d.audited and d.ai_allowed is False
    assert any(w.rule_id == "R-EMERG-7" for w in d.warnings)
    assert guard.held("alice") == 0


def test_a_mobile_number_is_routed_best_effort_or_replaced_by_a_fixed_one(guard: PolicyGuard,
                                                                          facts) -> None:
    """R-EMERG-4: "not guaranteed" from a mobile number is not "forbidden": routed, with a
    warning to the caller and to the admin; a fixed number of the user's is shown instead
    when there is one."""
    acct = facts.account(emergency_activated=True)
    only_mobile = facts.user(account=acct, numbers=("+33612345678",))
    d = guard.on_call_attempt(facts.call(only_mobile, "112", presented="+33612345678"))
    assert d.action is Action.ROUTE_EMERGENCY and d.present_as is None
    warned = {(w.rule_id, w.audience.value) for w in d.warnings}
    assert {("R-EMERG-4", "user"), ("R-EMERG-4", "admin")} <= warned, d.warnings
    assert ("best_effort", "mobile number presented") in d.details
    both = facts.user("bob", account=acct, numbers=("+33612345678", "+33187654321"))
    d = guard.on_call_attempt(facts.call(both, "112", presented="+33612345678"))
    assert d.action is Action.ROUTE_EMERGENCY and d.present_as == "+33187654321"


def test_an_automated_agent_never_places_an_emergency_call(guard: PolicyGuard, facts) -> None:
    d = guard.on_call_attempt(facts.call(ready(facts), "112", automated_agent=True))
    assert d.action is Action.REJECT and d.rule_id == "R-EMERG-12"
    assert d.clause == "Terms of service, 22 January 2026, Annex 6, point a), paragraph 4"


def test_no_recording_and_no_ai_on_an_emergency_call(guard: PolicyGuard, facts) -> None:
    u = facts.user(account=facts.account(emergency_activated=True, recording=True))
    guard.on_call_attempt(facts.call(u, "112", call_id="e1"))
    answer = guard.on_answer("e1", T0 + 3)
    assert answer.notices == () and answer.ai_allowed is False


def test_emergency_calls_are_not_counted_as_short_calls(guard: PolicyGuard, facts) -> None:
    u = ready(facts)
    guard.on_call_attempt(facts.call(u, "112", call_id="e1"))
    guard.on_call_end("e1", T0 + 2)
    assert guard.state.short_user_day == {}


def test_registration_tells_a_user_without_emergency_service(guard: PolicyGuard, facts) -> None:
    from softphone.policy import DeviceClass, Registration

    u = facts.user()  # emergency not activated
    d = guard.on_registration(Registration(u, "desk", DeviceClass.SIP, "192.0.2.10", T0))
    assert any(w.rule_id == "R-EMERG-6" for w in d.warnings)


@pytest.mark.parametrize("dialed,prefix,code", [
    ("112", "", "112"), ("+112", "", "112"), ("0112", "0", "112"), ("917", "9", "17"),
    ("0112", "", None), ("01120000", "0", None), ("+33112", "", None), ("9112", "0", None),
])
def test_emergency_digits_as_dialled_behind_a_prefix_or_a_plus(config, dialed, prefix,
                                                               code) -> None:
    from softphone.policy.numbers import emergency_digits

    assert emergency_digits(dialed, "FR", prefix, config) == code


def test_the_us_table_knows_911_and_the_933_test_call(config) -> None:
    from softphone.policy.numbers import emergency_codes, emergency_urn

    assert emergency_urn("911", "US", config) == "urn:service:sos"
    assert emergency_urn("933", "US", config) == "urn:service:test.sos"
    assert emergency_urn("911", "FR", config) is None
    assert {"112", "911", "933", "15", "999"} <= emergency_codes(config)


def test_a_us_located_user_dialling_911_hears_the_notice(guard: PolicyGuard, facts) -> None:
    """Not an eligible country: the notice and a clear refusal, never an unknown number."""
    u = facts.user(account=facts.account(emergency_activated=True),
                   location=Location("US", civic=CivicAddress("US", a3="Boston")))
    d = guard.on_call_attempt(facts.call(u, "911"))
    assert d.action is Action.REJECT and d.rule_id == "R-EMERG-2"
    assert d.announcement == "emergency-unavailable"


@pytest.mark.parametrize("state", [AccountState.BILLING_SUSPENDED, AccountState.ABUSE_SUSPENDED,
                                   AccountState.PENDING_KYC])
def test_the_psap_calling_back_is_never_refused(guard: PolicyGuard, facts, state) -> None:
    u = facts.with_account(ready(facts), state=state, trial=True)
    guard.state.trial_seconds["alice"] = 10_000.0
    ordinary = facts.call(u, "0145678901", direction=Direction.INBOUND, call_id="c-1")
    assert guard.on_call_attempt(ordinary).action is Action.REJECT
    back = facts.call(u, "0145678901", direction=Direction.INBOUND, call_id="c-2",
                      presented="112", psap_callback=True)
    d = guard.on_call_attempt(back)
    assert d.action is Action.ALLOW and d.rule_id == "R-EMERG-1"
    assert ("psap_callback", "112") in d.details and guard.held("alice") == 1


def test_emergency_location_is_the_line_in_one_line_only_when_the_service_is_ready(
        guard: PolicyGuard, facts) -> None:
    """What the registrar shows the phone (X-Emergency): the recorded address when a call to
    112 would be routed now, None when R-EMERG-1/2/3 or R-LIFE-5 would refuse it."""
    from softphone.policy import GeoPoint

    at_home = Location("FR", civic=CivicAddress("FR", a3="Paris", rd="Rue de Rivoli", hno="1",
                                                pc="75001", flr="2"))
    assert guard.emergency_location(facts.user(
        account=facts.account(emergency_activated=True), location=at_home), T0) == (
        "1 Rue de Rivoli, floor 2, 75001 Paris, FR")
    point = Location("FR", point=GeoPoint(48.8566, 2.3522, 30))
    assert guard.emergency_location(facts.user(
        account=facts.account(emergency_activated=True), location=point), T0) == (
        "48.85660, 2.35220 ±30 m")
    assert guard.emergency_location(facts.user(), T0) is None  # not activated
    assert guard.emergency_location(facts.user(
        account=facts.account(emergency_activated=True), location=None), T0) is None
    assert guard.emergency_location(facts.user(
        account=facts.account(emergency_activated=True),
        location=Location("US", civic=CivicAddress("US", a3="Boston"))), T0) is None
    assert guard.emergency_location(facts.user(account=facts.account(
        emergency_activated=True, state=AccountState.TERMINATED)), T0) is None
    # the same answer the call would get: routed exactly when a location is shown
    for u in (facts.user(), ready(facts)):
        routed = guard.on_call_attempt(facts.call(u, "112")).action is Action.ROUTE_EMERGENCY
        assert (guard.emergency_location(u, T0) is not None) == routed
