"""The in-call policy guard: pure, deterministic, no I/O (imports as ``softphone.policy``).

Facts in (``softphone.policy.facts``), a ``Decision`` out (``softphone.policy.decision``), from
rules and tables that are data (configs/policy.toml, ``softphone.policy.config``). The guard
(``softphone.policy.guard.PolicyGuard``) keeps channels and counters in a ``Ledger`` changed
only by events, which softphone.ledgerstore persists; softphone.audit writes each decision.
"""

from softphone.policy.config import PolicyConfig, PolicyConfigError, load, load_default, parse
from softphone.policy.decision import (
    Action,
    Audience,
    CounterBump,
    Decision,
    LocationPayload,
    Notice,
    PolicyWarning,
    RecordingAction,
    RecordingCommand,
)
from softphone.policy.facts import (
    Account,
    AccountState,
    CallAttempt,
    CivicAddress,
    DeviceClass,
    Direction,
    EndReason,
    GeoPoint,
    Location,
    MediaLine,
    Party,
    Plan,
    RecordingOptionChange,
    Registration,
    User,
)
from softphone.policy.guard import PolicyGuard, PolicyInputError
from softphone.policy.ledger import Ledger, LedgerEvent

__all__ = [
    "Account", "AccountState", "Action", "Audience", "CallAttempt", "CivicAddress",
    "CounterBump", "Decision", "DeviceClass", "Direction", "EndReason", "GeoPoint", "Ledger",
    "LedgerEvent", "Location", "LocationPayload", "MediaLine", "Notice", "Party", "Plan",
    "PolicyConfig", "PolicyConfigError", "PolicyGuard", "PolicyInputError", "RecordingAction",
    "RecordingCommand", "RecordingOptionChange", "Registration", "User", "PolicyWarning", "load",
    "load_default", "parse",
]
