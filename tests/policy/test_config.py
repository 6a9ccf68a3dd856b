"""configs/policy.toml: the shipped tables load, and every bad value is refused with an error
naming the key and its line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from softphone.policy import PolicyConfigError, load_default, parse
from softphone.policy.config import CLAUSE_RE, RULE_IDS

from softphone.configfile import ConfigText

TERMS_MD = Path(__file__).resolve().parents[2] / "docs" / "TERMS.md"
TERMS_ROW = re.compile(r"^\| (R-[A-Z]+-[0-9]+) \| ([^|]+?) \| ([^|]+?) \|$")
CALLS_1 = "Terms of service, 22 January 2026, Annex 4, point 5, paragraph 2"


def line_of(text: str, needle: str) -> int:
    for no, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return no
    raise AssertionError(needle)


def test_shipped_config_loads_with_every_rule(config) -> None:
    assert set(RULE_IDS) <= set(config.rules)
    assert config.rules["R-CALLS-1"] == CALLS_1
    assert config.emergency.eligible == {"FR", "BE", "CH", "GB", "IE", "DE", "NL", "PT", "ES",
                                         "IT", "SE", "AT"}
    assert set(config.emergency.codes["FR"]) == {"112", "15", "17", "18", "115", "114", "119",
                                                 "191", "196", "197"}
    assert config.recording.retention_months == 3
    assert config.limits.short_calls.threshold == 60
    assert config.limits.smart.max_contacts == 500
    assert (config.limits.trial.max_users, config.limits.trial.minutes_per_user) == (5, 60)


def test_embedded_copy_is_the_file(config) -> None:
    assert load_default().rules == config.rules


def terms_md_rows() -> dict[str, str]:
    """docs/TERMS.md: rule id -> article, from its table (a rule listed twice is an error)."""
    rows: dict[str, str] = {}
    for line in TERMS_MD.read_text(encoding="utf-8").splitlines():
        m = TERMS_ROW.match(line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} is listed twice in docs/TERMS.md"
            assert m.group(3).strip(), f"{m.group(1)}: no paraphrase in docs/TERMS.md"
            rows[m.group(1)] = m.group(2)
    return rows


def test_every_rule_has_its_article_in_terms_md(config) -> None:
    """Both ways: each rule of [rules] is in docs/TERMS.md with the same article, each row of
    docs/TERMS.md is a rule of [rules]; every article is a clause by document and article."""
    rows = terms_md_rows()
    assert set(rows) == set(config.rules), (
        f"only in configs/policy.toml: {sorted(set(config.rules) - set(rows))}; "
        f"only in docs/TERMS.md: {sorted(set(rows) - set(config.rules))}")
    for rid, clause in config.rules.items():
        assert rows[rid] == clause, f"{rid}: policy.toml says {clause!r}, TERMS.md {rows[rid]!r}"
        assert CLAUSE_RE.fullmatch(clause), clause


@pytest.mark.parametrize("old,new,key,message", [
    ("threshold = 60", "threshold = \"sixty\"", "limits.short_calls.threshold", "a number"),
    ("objection_digit = \"9\"", "objection_digit = \"99\"", "recording.objection_digit",
     "one DTMF key"),
    ("retention_months = 3", "retention_months = 0", "recording.retention_months", "between"),
    ("comparator = \">=\"", "comparator = \"=>\"", "limits.short_calls.comparator", "one of"),
    ("timezone = \"Europe/Paris\"", "timezone = \"Europe/Lutece\"", "policy.timezone",
     "unknown time zone"),
    ("inbound_busy_status = 486", "inbound_busy_status = 200", "calls.inbound_busy_status",
     "between 400 and 699"),
    ("route = \"sip:sos@emergency.invalid\"", "route = \"sos\"", "emergency.route", "URI"),
    ("\"15\" = \"urn:service:sos.ambulance\"", "\"15\" = \"ambulance\"",
     "emergency.codes.FR.15", "urn:service:sos"),
    (f"\"R-CALLS-1\" = \"{CALLS_1}\"", "\"R-CALLS-1\" = \"page 12\"",
     "rules.R-CALLS-1", "clause"),
    ("block_excluded = true", "block_excluded = 1", "limits.trial.block_excluded",
     "true or false"),
    ("warn_at = 450", "warn_at = 501", "limits.smart.warn_at", "max_contacts"),
    ("pbx_action = \"warn\"", "pbx_action = \"ignore\"", "accounts.pbx_action", "one of"),
])
def test_bad_value_names_key_and_line(policy_text, old, new, key, message) -> None:
    assert old in policy_text
    bad = policy_text.replace(old, new, 1)
    with pytest.raises(PolicyConfigError) as exc:
        parse(bad, "policy.toml")
    err = exc.value
    assert err.key == key
    assert err.line == line_of(bad, new)
    assert message in err.detail
    assert f"policy.toml:{err.line}: {key}:" in str(err)


def test_missing_rule_clause_is_named(policy_text) -> None:
    bad = "\n".join(line for line in policy_text.splitlines()
                    if not line.startswith('"R-TECH-9"'))
    with pytest.raises(PolicyConfigError) as exc:
        parse(bad)
    assert exc.value.key == "rules.R-TECH-9" and "missing" in exc.value.detail


def test_missing_key_points_at_its_table(policy_text) -> None:
    bad = policy_text.replace("max_contacts = 500\n", "", 1)
    with pytest.raises(PolicyConfigError) as exc:
        parse(bad)
    assert exc.value.key == "limits.smart.max_contacts"
    assert exc.value.line == line_of(bad, "[limits.smart]")


def test_eligible_country_needs_codes(policy_text) -> None:
    bad = policy_text.replace('"IT", "SE", "AT"]', '"IT", "SE", "AT", "PL"]', 1)
    with pytest.raises(PolicyConfigError) as exc:
        parse(bad)
    assert exc.value.key == "emergency.eligible" and "PL" in exc.value.detail


def test_special_entry_error_points_at_its_header(policy_text) -> None:
    bad = policy_text.replace('prefix = "+33899"\nkind = "premium"\naction = "block"',
                              'prefix = "+33899"\nkind = "premium"\naction = "drop"', 1)
    with pytest.raises(PolicyConfigError) as exc:
        parse(bad)
    assert exc.value.key == "numbering.special[1]"
    assert bad.splitlines()[exc.value.line - 1] == "[[numbering.special]]"
    assert bad.splitlines()[exc.value.line] == 'prefix = "+33899"'


def test_unknown_table_and_syntax_errors(policy_text) -> None:
    with pytest.raises(PolicyConfigError) as exc:
        parse(policy_text + "\n[limitz]\nx = 1\n")
    assert exc.value.key == "limitz" and exc.value.line == len(policy_text.splitlines()) + 2
    with pytest.raises(PolicyConfigError) as exc:
        parse(policy_text.replace("threshold = 60", "threshold = = 60"))
    assert "not valid TOML" in exc.value.detail and exc.value.line == line_of(
        policy_text, "threshold = 60")


def test_prefix_free_country_codes(policy_text) -> None:
    bad = policy_text.replace('"30" = "GR"', '"3" = "GR"', 1)
    with pytest.raises(PolicyConfigError, match="prefix-free"):
        parse(bad)


def test_locate_handles_quoted_and_dotted_keys() -> None:
    doc = ConfigText.parse('[a]\nx = 1\n[a."b.c"]\n"1 2" = 3\n[d]\ne.f = 4\n')
    assert doc.line_of(["a", "x"]) == 2
    assert doc.line_of(["a", "b.c", "1 2"]) == 4
    assert doc.line_of(["d", "e", "f"]) == 6
    assert doc.line_of(["a", "b.c", "missing"]) == 3
    assert doc.line_of(["nowhere"]) is None
