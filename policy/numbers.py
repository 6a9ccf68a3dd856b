"""Numbers as dialed, normalised to E.164 and classified from the policy tables.

Only the countries of configs/policy.toml are known: the guard needs a handful of facts about a
number (is it an emergency code here, which country, mobile, premium, special), all of which are
policy data the provider controls. A full numbering database (phonenumbers) would answer other
questions and would second-guess the tables, so it is not used.

Emergency codes are short numbers that only mean something in the caller's country (115 is the
SAMU social in France and the fire brigade in Italy), so classification takes that country.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from softphone.policy.config import NumberingConfig, PolicyConfig, SpecialRange


class NumberError(ValueError):
    """A dialed string that is not a telephone number."""


class NumberKind(enum.Enum):
    EMERGENCY = "emergency"
    SPECIAL = "special"  # a class of [[numbering.special]] (premium, directory, ...)
    MOBILE = "mobile"
    FIXED = "fixed"  # a valid number of a known plan that is neither of the above
    FOREIGN = "foreign"  # E.164 number of a country we have no plan for
    SHORT = "short"  # a short code with no class: not routable


@dataclass(frozen=True)
class NumberInfo:
    raw: str
    digits: str  # cleaned: digits with an optional leading "+"
    kind: NumberKind
    e164: str | None = None  # "+33123456789"
    country: str | None = None  # ISO alpha-2 of the number (from its country code)
    service_urn: str | None = None  # emergency only
    special: SpecialRange | None = None

    @property
    def premium(self) -> bool:
        return self.special is not None and self.special.kind in ("premium", "directory")


_SCHEME = re.compile(r"^(?:sips?|tel):", re.IGNORECASE)
_VISUAL = re.compile(r"[\s\-.()/]")  # RFC 3966 visual separators and common spacing
_DIALED = re.compile(r"\+?[0-9]{1,20}")


def clean(dialed: str) -> str:
    """Digits (with a leading + if any) from what a phone sends: ``tel:+33 1 23``,
    ``sip:0123@host;user=phone``, ``01-23-45``. Raises NumberError on anything else."""
    if not isinstance(dialed, str):
        raise NumberError(f"a number must be text, got {type(dialed).__name__}")
    s = _SCHEME.sub("", dialed.strip())
    s = s.split("@", 1)[0].split(";", 1)[0]
    if s.startswith("+"):
        s = s.replace("(0)", "", 1)  # "+33 (0)1 ...": the trunk 0 written for national callers
    s = _VISUAL.sub("", s)
    if not _DIALED.fullmatch(s):
        raise NumberError(f"not a telephone number: {dialed!r}")
    return s


def _country_of(e164_digits: str, numbering: NumberingConfig) -> str | None:
    for n in (1, 2, 3):
        iso = numbering.calling_codes.get(e164_digits[:n])
        if iso is not None:
            return iso
    return None


def to_e164(dialed: str, country: str, numbering: NumberingConfig) -> str | None:
    """The E.164 form (``+<digits>``) of a number dialed in ``country``, or None for a short code
    or a number too short or long for the plan. Raises NumberError for unparseable text."""
    s = clean(dialed)
    plan = numbering.plans.get(country)
    if s.startswith("+"):
        digits = s[1:]
    elif plan is not None and s.startswith(plan.international_prefix):
        digits = s[len(plan.international_prefix):]
    elif plan is not None and plan.trunk_prefix and s.startswith(plan.trunk_prefix):
        national = s[len(plan.trunk_prefix):]
        if not plan.national_min <= len(national) <= plan.national_max:
            return None
        digits = plan.calling_code + national
    elif plan is not None and not plan.trunk_prefix:
        if not plan.national_min <= len(s) <= plan.national_max:
            return None
        digits = plan.calling_code + s
    else:
        return None
    if not 4 <= len(digits) <= 15 or digits.startswith("0"):
        return None
    # a number of a country we know must fit its national plan
    iso = _country_of(digits, numbering)
    if iso is not None and iso in numbering.plans:
        p = numbering.plans[iso]
        nsn = digits[len(p.calling_code):]
        if not p.national_min <= len(nsn) <= p.national_max:
            return None
    return "+" + digits


_INDEXES: dict[int, tuple[NumberingConfig, dict[tuple[str | None, str], SpecialRange], int]] = {}


def _special_index(numbering: NumberingConfig) -> tuple[dict[tuple[str | None, str],
                                                              SpecialRange], int]:
    """Special ranges by (country or None for E.164, prefix), built once per configuration:
    a lookup tries the number's own prefixes, longest first, instead of scanning the table."""
    cached = _INDEXES.get(id(numbering))
    if cached is None or cached[0] is not numbering:
        index: dict[tuple[str | None, str], SpecialRange] = {}
        for sp in numbering.special:
            key = (None, sp.prefix) if sp.prefix.startswith("+") else (sp.country, sp.prefix)
            index.setdefault(key, sp)  # the table is sorted longest first; first one wins
        longest = max((len(sp.prefix) for sp in numbering.special), default=0)
        cached = (numbering, index, longest)
        _INDEXES[id(numbering)] = cached
    return cached[1], cached[2]


def _special(number: str, country: str | None, numbering: NumberingConfig) -> SpecialRange | None:
    index, longest = _special_index(numbering)
    for n in range(min(longest, len(number)), 0, -1):
        sp = index.get((country, number[:n]))
        if sp is not None:
            return sp
    return None


def emergency_urn(digits: str, country: str | None, config: PolicyConfig) -> str | None:
    """The service URN if ``digits`` (cleaned, as dialed) is an emergency code in ``country``."""
    em = config.emergency
    if country is not None:
        urn = em.codes.get(country, {}).get(digits)
        if urn is not None:
            return urn
    return em.universal.get(digits)


def emergency_codes(config: PolicyConfig) -> frozenset[str]:
    """Every code that is an emergency number somewhere in the tables (for a look at a
    request line that cannot know where the caller is)."""
    em = config.emergency
    return frozenset(em.universal).union(*(set(t) for t in em.codes.values()))


def emergency_digits(digits: str, country: str | None, outside_line_prefix: str,
                     config: PolicyConfig) -> str | None:
    """The emergency code that the cleaned ``digits`` stand for where the caller is, or None.

    As dialled (``112``, ``17``); with a leading ``+`` (``+112``: a phone that puts + in front
    of whatever is dialled, or a person who does); behind the account's outside-line prefix
    (``0112`` when ``outside_line_prefix`` is ``0``). Only the whole string counts: ``0112``
    followed by more digits is an ordinary number, never an emergency call."""
    candidates = [digits]
    if digits.startswith("+"):
        candidates.append(digits[1:])
    if outside_line_prefix and digits.startswith(outside_line_prefix):
        candidates.append(digits[len(outside_line_prefix):])
    for code in candidates:
        if code and emergency_urn(code, country, config) is not None:
            return code
    return None


def classify(dialed: str, country: str | None, config: PolicyConfig) -> NumberInfo:
    """Classify what was dialed by a user located in ``country`` (ISO alpha-2, or None).

    Emergency codes are recognised first, on the digits exactly as dialed.
    """
    digits = clean(dialed)
    urn = emergency_urn(digits, country, config)
    if urn is not None:
        return NumberInfo(dialed, digits, NumberKind.EMERGENCY, service_urn=urn, country=country)
    numbering = config.numbering
    e164 = to_e164(digits, country, numbering) if country else (
        digits if digits.startswith("+") and 4 <= len(digits) - 1 <= 15 else None)
    if e164 is None:
        sp = _special(digits, country, numbering) if country is not None else None
        if sp is not None:
            return NumberInfo(dialed, digits, NumberKind.SPECIAL, country=country, special=sp)
        return NumberInfo(dialed, digits, NumberKind.SHORT, country=country)
    iso = _country_of(e164[1:], numbering)
    sp = _special(e164, None, numbering)
    if sp is not None:
        return NumberInfo(dialed, digits, NumberKind.SPECIAL, e164, iso, special=sp)
    plan = numbering.plans.get(iso) if iso else None
    if plan is None:
        return NumberInfo(dialed, digits, NumberKind.FOREIGN, e164, iso)
    if any(e164.startswith(m) for m in plan.mobile):
        return NumberInfo(dialed, digits, NumberKind.MOBILE, e164, iso)
    return NumberInfo(dialed, digits, NumberKind.FIXED, e164, iso)
