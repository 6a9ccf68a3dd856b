"""The policy tables (configs/policy.toml) loaded into typed, frozen objects.

Rules and tables are data: countries, emergency codes, number classes, limits and thresholds
all come from the TOML file, each table commented with the rule id and clause it implements.
A bad file is refused with ``PolicyConfigError`` naming the key and its line; the edge must
not start on it. Keys are located by :mod:`softphone.policy.tomlkeys`, as for the edge
configuration. Pure: nothing here imports from outside ``softphone.policy``; ``parse`` takes
the text, ``load`` reads a file (and ``load_default`` the shipped one) with no other help.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from softphone.policy.tomlkeys import KeyedError, KeyLines, format_key, parse_toml, read_text

# Every rule the guard can cite; the [rules] table must give each one its clause.
RULE_IDS: tuple[str, ...] = (
    "R-CALLS-1", "R-ACCT-1", "R-ACCT-2", "R-ACCT-3",
    "R-EMERG-1", "R-EMERG-2", "R-EMERG-3", "R-EMERG-4", "R-EMERG-6", "R-EMERG-7", "R-EMERG-12",
    "R-REC-2", "R-REC-3", "R-REC-4", "R-AI-2",
    "R-LIMIT-1", "R-LIMIT-2", "R-LIMIT-3", "R-LIMIT-4", "R-LIMIT-7", "R-LIMIT-8",
    "R-CLI-1", "R-CLI-2", "R-TECH-9", "R-NUM-3", "R-BILL-10", "R-LIFE-5",
)

# A clause names the document by its version date and the article in it, never a file or line:
# "Terms of service, 22 January 2026, Annex 4, point 5, paragraph 2".
_MONTHS = ("January|February|March|April|May|June|July|August|September|October|November"
           "|December")
CLAUSE_RE = re.compile(
    rf"Terms of service, [1-9][0-9]? (?:{_MONTHS}) [0-9]{{4}}, "
    r"(?:Article [0-9]+(?:\.[0-9]+)*|Annex [0-9]+)"
    r"(?:, point (?:[0-9]+|[a-z]\)))?(?:, paragraph [0-9]+)?")
CLAUSE_EXAMPLE = "Terms of service, 22 January 2026, Annex 4, point 1"

ANNOUNCEMENT_IDS: tuple[str, ...] = (
    "emergency-unavailable", "recording-notice", "ai-disclosure", "busy", "call-limit",
    "suspended", "short-call-suspension", "automated-dialing", "smart-cap", "trial-minutes",
    "trial-excluded", "trial-users", "special-number", "mrcp", "ai-emergency",
)

NUMBER_KINDS = ("premium", "special", "directory", "freephone", "shared_cost", "carrier_select")
NUMBER_ACTIONS = ("allow", "warn", "block")


class PolicyConfigError(KeyedError):
    """The policy configuration cannot be used (file, line, key, what is wrong: the edge
    reports it as it reports its own configuration's errors)."""


@dataclass(frozen=True)
class PolicyText:
    """The parsed policy TOML and where its keys are written."""

    path: str
    text: str
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def parse(cls, text: str, path: str) -> PolicyText:
        return cls(path, text, parse_toml(text, path, PolicyConfigError))

    @cached_property
    def _keys(self) -> KeyLines:
        return KeyLines(self.text)

    def error(self, dotted: Sequence[str | int], message: str) -> PolicyConfigError:
        return PolicyConfigError(self.path, format_key(dotted), message,
                                 self._keys.line_of(dotted))


# ---------------------------------------------------------------------------------------------
# Typed tables


@dataclass(frozen=True)
class CallsConfig:
    inbound_busy_status: int
    inbound_busy_reason: str
    outbound_busy_status: int
    outbound_busy_reason: str
    stale_after_s: int
    ended_keep_s: int = 7200  # how long an ended call id is remembered (replays, retries)


@dataclass(frozen=True)
class AutomatedDialingConfig:
    window_s: int
    max_attempts: int
    min_gap_s: float
    gap_streak: int
    throttle_s: int
    throttle_gap_s: int


@dataclass(frozen=True)
class AccountsConfig:
    place_prefix_v4: int
    place_prefix_v6: int
    pbx_user_agents: tuple[str, ...]
    pbx_action: str
    automated: AutomatedDialingConfig


@dataclass(frozen=True)
class EmergencyConfig:
    eligible: frozenset[str]
    universal: Mapping[str, str]  # code -> service URN, recognised in every country
    codes: Mapping[str, Mapping[str, str]]  # country -> code -> service URN
    route: str
    routes: Mapping[str, str]  # country -> route override
    unavailable_status: int
    unavailable_reason: str
    entity_domain: str


@dataclass(frozen=True)
class RecordingConfig:
    objection_digit: str
    retention_months: int
    export_window_days: int


@dataclass(frozen=True)
class ShortCallsConfig:
    max_duration_s: float
    threshold: float
    comparator: str  # ">" or ">="
    unanswered_duration: str  # "setup" or "zero"
    warn_at_days: tuple[int, ...]
    suspend_at_days: int
    suspension_days: int


@dataclass(frozen=True)
class SmartConfig:
    max_contacts: int
    warn_at: int


@dataclass(frozen=True)
class TrialConfig:
    max_users: int
    minutes_per_user: float  # a fraction is allowed (0.1 = 6 s): lab tests reach it fast
    block_excluded: bool


@dataclass(frozen=True)
class FairUseConfig:
    baseline_rate: float
    multiple: float
    warn_fraction: float
    window_days: int


@dataclass(frozen=True)
class LimitsConfig:
    short_calls: ShortCallsConfig
    smart: SmartConfig
    trial: TrialConfig
    fair_use: FairUseConfig


@dataclass(frozen=True)
class CliConfig:
    eea: frozenset[str]
    swiss: str


@dataclass(frozen=True)
class NumberingPlan:
    country: str
    calling_code: str
    trunk_prefix: str
    international_prefix: str
    national_min: int
    national_max: int
    mobile: tuple[str, ...]  # E.164 prefixes with "+"


@dataclass(frozen=True)
class SpecialRange:
    prefix: str  # "+3389" (E.164 prefix) or "118" (national short code, needs country)
    country: str | None
    kind: str
    action: str
    note: str


@dataclass(frozen=True)
class NumberingConfig:
    calling_codes: Mapping[str, str]  # "33" -> "FR"
    plans: Mapping[str, NumberingPlan]
    special: tuple[SpecialRange, ...]


@dataclass(frozen=True)
class PolicyConfig:
    path: str
    terms_version: str
    timezone: ZoneInfo
    rules: Mapping[str, str]  # rule id -> clause (document, date, article)
    calls: CallsConfig
    accounts: AccountsConfig
    emergency: EmergencyConfig
    recording: RecordingConfig
    limits: LimitsConfig
    cli: CliConfig
    mrcp_status: int
    mrcp_reason: str
    numbering: NumberingConfig
    announcements: Mapping[str, str]

    def clause(self, rule_id: str) -> str:
        return self.rules[rule_id]


# ---------------------------------------------------------------------------------------------
# Reading with errors that name key and line


class _Reader:
    def __init__(self, doc: PolicyText) -> None:
        self.doc = doc

    def error(self, key: Sequence[str | int], message: str) -> PolicyConfigError:
        return self.doc.error(key, message)

    def table(self, data: Mapping[str, Any], key: Sequence[str],
              known: Sequence[str] | None = None) -> Mapping[str, Any]:
        value = data.get(key[-1]) if isinstance(data, Mapping) else None
        if value is None:
            raise self.error(key, "missing table")
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        if known is not None:
            for k in value:
                if k not in known:
                    raise self.error([*key, k], f"unknown key (expected one of: {', '.join(known)})")
        return value

    def get(self, data: Mapping[str, Any], key: Sequence[str], kind: type | tuple[type, ...],
            label: str) -> Any:
        if key[-1] not in data:
            raise self.error(key, "missing")
        value = data[key[-1]]
        if isinstance(value, bool) and kind is not bool:
            raise self.error(key, f"must be {label}, not true/false")
        if not isinstance(value, kind):
            raise self.error(key, f"must be {label}, got {value!r}")
        return value

    def text_(self, data: Mapping[str, Any], key: Sequence[str], *, nonempty: bool = True) -> str:
        value: str = self.get(data, key, str, "a string")
        if nonempty and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def int_(self, data: Mapping[str, Any], key: Sequence[str], lo: int, hi: int) -> int:
        value: int = self.get(data, key, int, "an integer")
        if not lo <= value <= hi:
            raise self.error(key, f"must be between {lo} and {hi}, got {value}")
        return value

    def num(self, data: Mapping[str, Any], key: Sequence[str], lo: float, hi: float) -> float:
        value = self.get(data, key, (int, float), "a number")
        if not lo <= float(value) <= hi:
            raise self.error(key, f"must be between {lo} and {hi}, got {value}")
        return float(value)

    def bool_(self, data: Mapping[str, Any], key: Sequence[str]) -> bool:
        value: bool = self.get(data, key, bool, "true or false")
        return value

    def texts(self, data: Mapping[str, Any], key: Sequence[str]) -> tuple[str, ...]:
        value = self.get(data, key, list, "a list of strings")
        if not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return tuple(value)

    def choice(self, data: Mapping[str, Any], key: Sequence[str], options: Sequence[str]) -> str:
        value = self.text_(data, key)
        if value not in options:
            raise self.error(key, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    def status(self, data: Mapping[str, Any], key: Sequence[str]) -> int:
        # a final failure response: 4xx, 5xx or 6xx
        return self.int_(data, key, 400, 699)

    def country(self, value: str, key: Sequence[str]) -> str:
        if not re.fullmatch(r"[A-Z]{2}", value):
            raise self.error(key, f"must be an ISO 3166 alpha-2 code such as FR, got {value!r}")
        return value


_DIGITS = re.compile(r"[0-9]+")
_URN = re.compile(r"urn:service:(test\.)?sos(\.[a-z0-9-]+)*")  # RFC 6881 §15: test calls


def _sip_uri(r: _Reader, data: Mapping[str, Any], key: Sequence[str]) -> str:
    value = r.text_(data, key)
    if not re.match(r"^(sip|sips|tel):\S+$", value):
        raise r.error(key, f"must be a sip:, sips: or tel: URI, got {value!r}")
    return value


def _codes(r: _Reader, data: Mapping[str, Any], key: Sequence[str]) -> dict[str, str]:
    table = r.table(data, key)
    out: dict[str, str] = {}
    for code, urn in table.items():
        if not _DIGITS.fullmatch(code):
            raise r.error([*key, code], "an emergency code must be digits only")
        if not isinstance(urn, str) or not _URN.fullmatch(urn):
            raise r.error([*key, code], f"must be an RFC 5031 urn:service:sos (or test.sos) URN, got {urn!r}")
        out[code] = urn
    return out


def parse(text: str, path: str = "configs/policy.toml") -> PolicyConfig:
    """Parse and validate policy TOML text."""
    return _read(PolicyText.parse(text, path))


def _read(doc: PolicyText) -> PolicyConfig:
    data, path, r = doc.data, doc.path, _Reader(doc)
    top = ("policy", "rules", "calls", "accounts", "emergency", "recording", "limits", "cli",
           "mrcp", "numbering", "announcements")
    for name in data:
        if name not in top:
            raise r.error([name], f"unknown table (expected one of: {', '.join(top)})")

    pol = r.table(data, ["policy"], ("terms_version", "timezone"))
    terms_version = r.text_(pol, ["policy", "terms_version"])
    tzname = r.text_(pol, ["policy", "timezone"])
    try:
        tz = ZoneInfo(tzname)
    except (ZoneInfoNotFoundError, ValueError):
        raise r.error(["policy", "timezone"], f"unknown time zone {tzname!r}") from None

    rules_t = r.table(data, ["rules"])
    rules: dict[str, str] = {}
    for rid, clause in rules_t.items():
        if not re.fullmatch(r"R-[A-Z]+-[0-9]+", rid):
            raise r.error(["rules", rid], "a rule id looks like R-CALLS-1")
        if not isinstance(clause, str) or not CLAUSE_RE.fullmatch(clause):
            raise r.error(["rules", rid], f"must be a clause such as {CLAUSE_EXAMPLE!r} "
                          f"(document, version date, article), got {clause!r}")
        rules[rid] = clause
    for rid in RULE_IDS:
        if rid not in rules:
            raise r.error(["rules", rid], "missing: every rule the guard applies needs its clause")

    c = r.table(data, ["calls"])
    calls = CallsConfig(
        inbound_busy_status=r.status(c, ["calls", "inbound_busy_status"]),
        inbound_busy_reason=r.text_(c, ["calls", "inbound_busy_reason"]),
        outbound_busy_status=r.status(c, ["calls", "outbound_busy_status"]),
        outbound_busy_reason=r.text_(c, ["calls", "outbound_busy_reason"]),
        stale_after_s=r.int_(c, ["calls", "stale_after_s"], 90, 86400),
        ended_keep_s=r.int_(c, ["calls", "ended_keep_s"], 3600, 2 * 86400),
    )

    a = r.table(data, ["accounts"])
    ad = r.table(a, ["accounts", "automated_dialing"])
    k = ["accounts", "automated_dialing"]
    accounts = AccountsConfig(
        place_prefix_v4=r.int_(a, ["accounts", "place_prefix_v4"], 8, 32),
        place_prefix_v6=r.int_(a, ["accounts", "place_prefix_v6"], 16, 128),
        pbx_user_agents=r.texts(a, ["accounts", "pbx_user_agents"]),
        pbx_action=r.choice(a, ["accounts", "pbx_action"], ("warn", "reject")),
        automated=AutomatedDialingConfig(
            window_s=r.int_(ad, [*k, "window_s"], 10, 86400),
            max_attempts=r.int_(ad, [*k, "max_attempts"], 2, 100000),
            min_gap_s=r.num(ad, [*k, "min_gap_s"], 0.0, 3600.0),
            gap_streak=r.int_(ad, [*k, "gap_streak"], 2, 1000),
            throttle_s=r.int_(ad, [*k, "throttle_s"], 1, 30 * 86400),
            throttle_gap_s=r.int_(ad, [*k, "throttle_gap_s"], 1, 86400),
        ),
    )

    e = r.table(data, ["emergency"])
    eligible = frozenset(r.country(x, ["emergency", "eligible"])
                         for x in r.texts(e, ["emergency", "eligible"]))
    codes_t = r.table(e, ["emergency", "codes"])
    codes: dict[str, dict[str, str]] = {}
    for country in codes_t:
        r.country(country, ["emergency", "codes", country])
        codes[country] = _codes(r, codes_t, ["emergency", "codes", country])
    for country in sorted(eligible):
        if country not in codes:
            raise r.error(["emergency", "eligible"],
                          f"{country} is eligible but has no [emergency.codes.{country}] table")
    routes_t = r.table(e, ["emergency", "routes"]) if "routes" in e else {}
    routes = {}
    for country in routes_t:
        r.country(country, ["emergency", "routes", country])
        routes[country] = _sip_uri(r, routes_t, ["emergency", "routes", country])
    emergency = EmergencyConfig(
        eligible=eligible,
        universal=_codes(r, e, ["emergency", "universal"]),
        codes=codes,
        route=_sip_uri(r, e, ["emergency", "route"]),
        routes=routes,
        unavailable_status=r.status(e, ["emergency", "unavailable_status"]),
        unavailable_reason=r.text_(e, ["emergency", "unavailable_reason"]),
        entity_domain=r.text_(e, ["emergency", "entity_domain"]),
    )

    rc = r.table(data, ["recording"])
    digit = r.text_(rc, ["recording", "objection_digit"])
    if not re.fullmatch(r"[0-9*#A-D]", digit):
        raise r.error(["recording", "objection_digit"],
                      f"must be one DTMF key (0-9, *, #, A-D), got {digit!r}")
    recording = RecordingConfig(
        objection_digit=digit,
        retention_months=r.int_(rc, ["recording", "retention_months"], 1, 120),
        export_window_days=r.int_(rc, ["recording", "export_window_days"], 0, 365),
    )

    lim = r.table(data, ["limits"])
    sc = r.table(lim, ["limits", "short_calls"])
    k = ["limits", "short_calls"]
    warn_days = r.get(sc, [*k, "warn_at_days"], list, "a list of day counts")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in warn_days):
        raise r.error([*k, "warn_at_days"], "must be a list of positive integers")
    short = ShortCallsConfig(
        max_duration_s=r.num(sc, [*k, "max_duration_s"], 1, 3600),
        threshold=r.num(sc, [*k, "threshold"], 1, 100000),
        comparator=r.choice(sc, [*k, "comparator"], (">", ">=")),
        unanswered_duration=r.choice(sc, [*k, "unanswered_duration"], ("setup", "zero")),
        warn_at_days=tuple(sorted(warn_days)),
        suspend_at_days=r.int_(sc, [*k, "suspend_at_days"], 1, 31),
        suspension_days=r.int_(sc, [*k, "suspension_days"], 1, 365),
    )
    if any(d >= short.suspend_at_days for d in short.warn_at_days):
        raise r.error([*k, "warn_at_days"], "warnings must come before suspend_at_days")
    sm = r.table(lim, ["limits", "smart"])
    smart = SmartConfig(
        max_contacts=r.int_(sm, ["limits", "smart", "max_contacts"], 1, 10_000_000),
        warn_at=r.int_(sm, ["limits", "smart", "warn_at"], 1, 10_000_000),
    )
    if smart.warn_at > smart.max_contacts:
        raise r.error(["limits", "smart", "warn_at"], "must not exceed max_contacts")
    tr = r.table(lim, ["limits", "trial"])
    trial = TrialConfig(
        max_users=r.int_(tr, ["limits", "trial", "max_users"], 1, 10000),
        minutes_per_user=r.num(tr, ["limits", "trial", "minutes_per_user"], 0.01, 100000.0),
        block_excluded=r.bool_(tr, ["limits", "trial", "block_excluded"]),
    )
    fu = r.table(lim, ["limits", "fair_use"])
    k = ["limits", "fair_use"]
    fair = FairUseConfig(
        baseline_rate=r.num(fu, [*k, "baseline_rate"], 0.0001, 1.0),
        multiple=r.num(fu, [*k, "multiple"], 1.0, 100.0),
        warn_fraction=r.num(fu, [*k, "warn_fraction"], 0.1, 1.0),
        window_days=r.int_(fu, [*k, "window_days"], 1, 366),
    )

    cl = r.table(data, ["cli"])
    cli = CliConfig(
        eea=frozenset(r.country(x, ["cli", "eea"]) for x in r.texts(cl, ["cli", "eea"])),
        swiss=r.country(r.text_(cl, ["cli", "swiss"]), ["cli", "swiss"]),
    )

    mr = r.table(data, ["mrcp"])
    mrcp_status = r.status(mr, ["mrcp", "status"])
    mrcp_reason = r.text_(mr, ["mrcp", "reason"])

    nb = r.table(data, ["numbering"])
    cc_t = r.table(nb, ["numbering", "calling_codes"])
    calling_codes: dict[str, str] = {}
    for cc, iso in cc_t.items():
        if not re.fullmatch(r"[1-9][0-9]{0,2}", cc):
            raise r.error(["numbering", "calling_codes", cc], "an E.164 country code is 1-3 digits")
        if not isinstance(iso, str):
            raise r.error(["numbering", "calling_codes", cc], "must be a country code string")
        calling_codes[cc] = r.country(iso, ["numbering", "calling_codes", cc])
    for cc in calling_codes:
        for other in calling_codes:
            if other != cc and other.startswith(cc):
                raise r.error(["numbering", "calling_codes", other],
                              f"country codes must be prefix-free; {cc} is a prefix of {other}")
    plans_t = r.table(nb, ["numbering", "plans"])
    plans: dict[str, NumberingPlan] = {}
    for country, _ in plans_t.items():
        k = ["numbering", "plans", country]
        r.country(country, k)
        p = r.table(plans_t, k, ("calling_code", "trunk_prefix", "international_prefix",
                                 "national_length", "mobile"))
        code = r.text_(p, [*k, "calling_code"])
        if calling_codes.get(code) != country:
            raise r.error([*k, "calling_code"],
                          f"{code} is not listed for {country} in [numbering.calling_codes]")
        trunk = r.text_(p, [*k, "trunk_prefix"], nonempty=False)
        intl = r.text_(p, [*k, "international_prefix"])
        if (trunk and not _DIGITS.fullmatch(trunk)) or not _DIGITS.fullmatch(intl):
            raise r.error([*k, "trunk_prefix" if trunk and not _DIGITS.fullmatch(trunk)
                           else "international_prefix"], "must be digits")
        length = r.get(p, [*k, "national_length"], list, "[min, max]")
        if (len(length) != 2 or not all(isinstance(n, int) and not isinstance(n, bool)
                                        for n in length) or not 1 <= length[0] <= length[1] <= 15):
            raise r.error([*k, "national_length"], "must be [min, max] digit counts, 1..15")
        mobile = r.texts(p, [*k, "mobile"])
        for pre in mobile:
            if not re.fullmatch(r"\+[0-9]+", pre) or not pre[1:].startswith(code):
                raise r.error([*k, "mobile"], f"{pre!r} must be an E.164 prefix under +{code}")
        plans[country] = NumberingPlan(country, code, trunk, intl, length[0], length[1], mobile)
    special: list[SpecialRange] = []
    raw_special = nb.get("special", [])
    if not isinstance(raw_special, list):
        raise r.error(["numbering", "special"], "must be an array of tables ([[numbering.special]])")
    for i, item in enumerate(raw_special):
        k = ["numbering", "special"]
        if not isinstance(item, dict):
            raise r.error([*k, i], "must be a table")
        prefix = item.get("prefix")
        if not isinstance(prefix, str) or not re.fullmatch(r"\+?[0-9]+", prefix):
            raise r.error([*k, i], f"prefix must be '+digits' or 'digits', got {prefix!r}")
        country_v = item.get("country")
        if not prefix.startswith("+"):
            if not isinstance(country_v, str) or country_v not in plans:
                raise r.error([*k, i], f"({prefix}): a short code needs a country "
                              f"with a [numbering.plans] table")
        kind = item.get("kind")
        if kind not in NUMBER_KINDS:
            raise r.error([*k, i], f"({prefix}): kind must be one of "
                          f"{', '.join(NUMBER_KINDS)}, got {kind!r}")
        action = item.get("action")
        if action not in NUMBER_ACTIONS:
            raise r.error([*k, i], f"({prefix}): action must be one of "
                          f"{', '.join(NUMBER_ACTIONS)}, got {action!r}")
        note = item.get("note", "")
        special.append(SpecialRange(prefix, country_v if isinstance(country_v, str) else None,
                                    str(kind), str(action), str(note)))
    # longest prefix first, so a specific block wins over a general class
    special.sort(key=lambda s: -len(s.prefix))
    for country in eligible:
        if country not in plans:
            raise r.error(["emergency", "eligible"],
                          f"{country} is eligible but has no [numbering.plans.{country}] table")

    an = r.table(data, ["announcements"])
    announcements: dict[str, str] = {}
    for aid in ANNOUNCEMENT_IDS:
        announcements[aid] = r.text_(an, ["announcements", aid])

    return PolicyConfig(
        path=path, terms_version=terms_version, timezone=tz, rules=rules, calls=calls,
        accounts=accounts, emergency=emergency, recording=recording,
        limits=LimitsConfig(short, smart, trial, fair), cli=cli, mrcp_status=mrcp_status,
        mrcp_reason=mrcp_reason,
        numbering=NumberingConfig(calling_codes, plans, tuple(special)),
        announcements=announcements,
    )


def load(path: str | Path) -> PolicyConfig:
    """Read and parse a policy file; an unreadable one is a :class:`PolicyConfigError` too."""
    return parse(read_text(path, PolicyConfigError), str(Path(path)))


def load_default() -> PolicyConfig:
    """The shipped configs/policy.toml (installed data of ``softphone.configs``)."""
    text = resources.files("softphone.configs").joinpath("policy.toml").read_text(
        encoding="utf-8")
    return parse(text, "configs/policy.toml")
