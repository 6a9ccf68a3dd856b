"""The policy guard where it applies to one phone: one call at a time, emergency numbers.

The edge decides for every user behind it; a phone that is driven by other systems (a CRM, a
dialler) decides for itself first, so that a command that the terms forbid is refused at once
with the rule and clause instead of reaching the provider:

- R-CALLS-1 (one simultaneous call per user): a dial while a call is up is refused, and an
  incoming call while one is up is answered 486 Busy Here;
- R-EMERG-1 (emergency calls): whether the dialled string is an emergency code where the line
  is (``softphone.policy.numbers.emergency_digits``: as dialled, behind ``+`` or the
  outside-line prefix) comes from the policy tables. A line with the service places the call
  whatever else is up (an emergency call is never blocked by the channel limit, R-EMERG-12's
  test on the edge); a line without it is refused with the notice the edge would play.

The decisions are pure: the agent publishes each refusal (and each emergency call) as a
``policy`` event with the rule id and its clause.
"""

from __future__ import annotations

from dataclasses import dataclass

from softphone.agent.config import Account
from softphone.policy.config import PolicyConfig
from softphone.policy.numbers import NumberError, clean, emergency_digits


@dataclass(frozen=True)
class DialDecision:
    allowed: bool
    rule: str  # "" for an ordinary call nothing had to decide
    reason: str
    emergency: bool = False
    clause: str = ""
    notice: str = ""


class PhoneGuard:
    def __init__(self, policy: PolicyConfig) -> None:
        self.policy = policy

    def _clause(self, rule: str) -> str:
        return self.policy.rules.get(rule, "")

    def emergency_code(self, account: Account, target: str) -> str | None:
        """The emergency code ``target`` stands for on this line, or None."""
        try:
            digits = clean(target)
        except NumberError:
            return None  # a name such as sip:alice@host: never an emergency code
        return emergency_digits(digits, account.country, account.outside_line_prefix,
                                self.policy)

    def on_dial(self, account: Account, target: str, *, calls_up: int) -> DialDecision:
        code = self.emergency_code(account, target)
        if code is not None:
            if not account.emergency:
                return DialDecision(False, "R-EMERG-1", "emergency calling not activated on "
                                    "this line", True, self._clause("R-EMERG-1"),
                                    self.policy.announcements.get("emergency-unavailable", ""))
            return DialDecision(True, "R-EMERG-1", f"emergency call to {code}", True,
                                self._clause("R-EMERG-1"))
        if calls_up >= 1:
            return DialDecision(False, "R-CALLS-1", "one call at a time: a call is already up",
                                False, self._clause("R-CALLS-1"))
        return DialDecision(True, "", "")

    def on_incoming(self, *, calls_up: int) -> DialDecision:
        if calls_up >= 1:
            return DialDecision(False, "R-CALLS-1", "one call at a time: busy",
                                False, self._clause("R-CALLS-1"))
        return DialDecision(True, "", "")
