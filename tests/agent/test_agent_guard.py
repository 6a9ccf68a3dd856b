"""The guard where it applies to one phone, on the shipped policy tables: one call at a time
(R-CALLS-1) and emergency codes where the line is (R-EMERG-1)."""

from __future__ import annotations

import pytest
from softphone.policy.config import load_default

from softphone.agent.config import Account
from softphone.agent.guard import PhoneGuard

GUARD = PhoneGuard(load_default())
LINE = Account(name="main", registrar="sip:127.0.0.1:5060", user="1001", emergency=True,
               country="FR", outside_line_prefix="0")
NO_SERVICE = Account(name="main", registrar="sip:127.0.0.1:5060", user="1001", country="FR")


def test_a_second_call_is_refused_with_r_calls_1_and_its_clause() -> None:
    assert GUARD.on_dial(LINE, "600", calls_up=0).allowed
    second = GUARD.on_dial(LINE, "600", calls_up=1)
    assert not second.allowed and second.rule == "R-CALLS-1"
    assert "Annex 4" in second.clause
    busy = GUARD.on_incoming(calls_up=1)
    assert not busy.allowed and busy.rule == "R-CALLS-1"
    assert GUARD.on_incoming(calls_up=0).allowed


@pytest.mark.parametrize("dialled", ["112", "+112", "0112", "15", "17", "18", "tel:112"])
def test_emergency_codes_as_dialled_are_placed_on_a_line_with_the_service(dialled: str) -> None:
    d = GUARD.on_dial(LINE, dialled, calls_up=1)  # even while a call is up
    assert d.allowed and d.emergency and d.rule == "R-EMERG-1", d


@pytest.mark.parametrize("dialled", ["112", "+112", "15"])
def test_without_the_service_the_refusal_carries_the_notice(dialled: str) -> None:
    d = GUARD.on_dial(NO_SERVICE, dialled, calls_up=0)
    assert not d.allowed and d.emergency and d.rule == "R-EMERG-1"
    assert "Emergency calls are not available" in d.notice


@pytest.mark.parametrize("dialled", ["01120", "1120", "alice", "600", "0033112"])
def test_other_strings_are_ordinary_calls(dialled: str) -> None:
    d = GUARD.on_dial(LINE, dialled, calls_up=0)
    assert d.allowed and not d.emergency and d.rule == "", (dialled, d)
