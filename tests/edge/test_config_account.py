"""Edge configuration, [account]: what the account has bought and its state, handed to the
policy guard; a bad value names its key and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from softphone.policy.facts import AccountState, Plan

from softphone.configfile import ConfigError
from softphone.edge.app import policy_users
from softphone.edge.config import load_edge_config

ACCOUNT = """\
[account]
id = "acme"
plan = "usage"
state = "billing_suspended"
trial = true
smart_pack = true
sip_option = true
emergency = true
timezone = "America/Cayenne"

[[users]]
ext = "1001"
password = "demo-1001"

[[users]]
ext = "1002"
password = "demo-1002"
emergency = false
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "edge.toml"
    p.write_text(text)
    return p


def test_defaults_are_an_active_unlimited_account_without_options() -> None:
    cfg = load_edge_config()
    assert (cfg.plan, cfg.state) == (Plan.UNLIMITED, AccountState.ACTIVE)
    assert cfg.timezone == "Europe/Paris"
    assert not (cfg.trial or cfg.smart_pack or cfg.sip_option or cfg.emergency)


def test_account_keys_reach_the_guards_users(tmp_path: Path) -> None:
    cfg = load_edge_config(write(tmp_path, ACCOUNT))
    users = policy_users(cfg)
    acct = users["1001"].account
    assert acct is users["1002"].account  # one account, its users one seat each
    assert (acct.account_id, acct.seats) == ("acme", 2)
    assert (acct.plan, acct.state) == (Plan.USAGE, AccountState.BILLING_SUSPENDED)
    assert acct.trial and acct.smart_pack and acct.sip_option and acct.emergency_activated
    assert acct.timezone == "America/Cayenne"  # the calendar of its 7-day suspensions
    # the account's emergency activation, unless the user says otherwise
    assert users["1001"].emergency_on and not users["1002"].emergency_on


@pytest.mark.parametrize(("old", "new", "key", "words"), [
    ('plan = "usage"', 'plan = "pay-as-you-go"', "account.plan", "unlimited, usage"),
    ('state = "billing_suspended"', 'state = "frozen"', "account.state", "pending_kyc"),
    ("trial = true", 'trial = "yes"', "account.trial", ""),
    ("smart_pack = true", "smart_pack = 1", "account.smart_pack", ""),
    ("sip_option = true", 'sip_option = "on"', "account.sip_option", ""),
    ("emergency = true", 'emergency = "true"', "account.emergency", ""),
    ('timezone = "America/Cayenne"', 'timezone = "Europe/Atlantis"', "account.timezone",
     "unknown time zone 'Europe/Atlantis'"),
    ('timezone = "America/Cayenne"', 'timezone = "../../etc/passwd"', "account.timezone",
     "IANA name"),
])
def test_bad_account_value_names_key_and_line(tmp_path: Path, old: str, new: str, key: str,
                                              words: str) -> None:
    text = ACCOUNT.replace(old, new, 1)
    line = text.splitlines().index(new) + 1
    with pytest.raises(ConfigError) as err:
        load_edge_config(write(tmp_path, text))
    assert err.value.key == key and err.value.line == line, str(err.value)
    assert words in str(err.value)


def test_unknown_account_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_edge_config(write(tmp_path, ACCOUNT.replace("trial = true", "trail = true")))
    assert "trail" in str(err.value) and err.value.line == 5


def test_outside_line_prefix_reaches_the_account_and_a_bad_one_names_its_line(
        tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[account]\noutside_line_prefix = "9"\n\n[emergency]\ncallback_window_s = 60\n'
                    '\n[[users]]\next = "1001"\npassword = "demo-1001"\n')
    cfg = load_edge_config(good)
    assert cfg.outside_line_prefix == "9" and cfg.emergency_callback_s == 60
    assert policy_users(cfg)["1001"].account.outside_line_prefix == "9"
    bad = tmp_path / "bad.toml"
    bad.write_text('[account]\nid = "x"\noutside_line_prefix = "+"\n')
    with pytest.raises(ConfigError) as err:
        load_edge_config(bad)
    assert "account.outside_line_prefix" in str(err.value) and ":3" in str(err.value)
