"""E.164 normalisation and number classes from the policy tables."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from softphone.policy.numbers import NumberError, NumberKind, classify, clean, to_e164


@pytest.mark.parametrize("dialed,country,e164", [
    ("01 45 67 89 01", "FR", "+33145678901"),
    ("0033145678901", "FR", "+33145678901"),
    ("+33 (0)1 45 67 89 01", "FR", "+33145678901"),  # the written "(0)" is dropped
    ("tel:+33-1-45-67-89-01", "FR", "+33145678901"),
    ("sip:0145678901@pbx.example;user=phone", "FR", "+33145678901"),
    ("912345678", "ES", "+34912345678"),  # no trunk prefix in Spain
    ("0612345678", "IT", "+390612345678"),  # Italy keeps the leading 0
    ("020 7946 0018", "GB", "+442079460018"),
    ("030 1234567", "DE", "+49301234567"),
    ("015", "FR", None),  # too short for a national number
    ("+1 212 555 0100", "FR", "+12125550100"),
])
def test_to_e164(config, dialed, country, e164) -> None:
    assert to_e164(dialed, country, config.numbering) == e164


@pytest.mark.parametrize("bad", ["", "alice", "12a4", "++33", "+", "sip:@host", "1" * 21])
def test_garbage_is_a_number_error(bad) -> None:
    with pytest.raises(NumberError):
        clean(bad)


def test_non_text_is_a_number_error() -> None:
    with pytest.raises(NumberError):
        clean(33)  # type: ignore[arg-type]


@pytest.mark.parametrize("dialed,country,kind,iso", [
    ("112", "FR", NumberKind.EMERGENCY, "FR"),
    ("112", None, NumberKind.EMERGENCY, None),  # universal
    ("115", "IT", NumberKind.EMERGENCY, "IT"),
    ("0612345678", "FR", NumberKind.MOBILE, "FR"),
    ("+447700900123", "FR", NumberKind.MOBILE, "GB"),
    ("0145678901", "FR", NumberKind.FIXED, "FR"),
    ("+12125550100", "FR", NumberKind.FOREIGN, "US"),
    ("+33899123456", "FR", NumberKind.SPECIAL, "FR"),
    ("118712", "FR", NumberKind.SPECIAL, "FR"),
    ("4242", "FR", NumberKind.SHORT, "FR"),
])
def test_classify(config, dialed, country, kind, iso) -> None:
    info = classify(dialed, country, config)
    assert info.kind is kind
    assert info.country == iso


def test_longest_special_prefix_wins(config) -> None:
    assert classify("0899123456", "FR", config).special.action == "block"
    assert classify("0891123456", "FR", config).special.action == "warn"


FR_NSN = st.from_regex(r"[1-59][0-9]{8}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(nsn=FR_NSN, sep=st.sampled_from(["", " ", ".", "-"]))
def test_national_and_international_forms_agree(config, nsn, sep) -> None:
    national = "0" + sep.join(nsn[i:i + 2] for i in range(0, 9, 2))
    forms = {to_e164(national, "FR", config.numbering),
             to_e164("0033" + nsn, "FR", config.numbering),
             to_e164("+33" + nsn, "DE", config.numbering)}
    assert forms == {"+33" + nsn}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_classify_never_crashes(config, text) -> None:
    try:
        info = classify(text, "FR", config)
    except NumberError:
        return
    if info.e164 is not None:
        assert info.e164.startswith("+") and info.e164[1:].isdigit()
        assert to_e164(info.e164, "FR", config.numbering) == info.e164  # idempotent


def test_an_extension_is_audited_without_a_number_class(config, guard, facts) -> None:
    # "1002" dialed to the provider is a French 10xy carrier-select code, refused as such
    assert classify("1002", "FR", config).special.kind == "carrier_select"
    out = guard.on_call_attempt(facts.call(facts.user(), "1002"))
    assert out.to_dict()["details"]["special"] == "carrier_select:10"
    # the same digits resolved by the edge to a local user are just an extension
    for caller, dialed in (("alice", "1002"), ("bob", "sip:carol@pbx.example")):
        d = guard.on_call_attempt(facts.call(facts.user(caller), dialed, internal=True))
        assert d.allowed
        assert d.to_dict()["details"] == {"number_kind": "internal"}
