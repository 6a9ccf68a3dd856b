"""``CallAdmission``: the edge's two-call guard protocol (``admit`` / ``released``, see
softphone.edge.b2bua.CallGuard) on top of ``PolicyGuard``.

A call between two local users is two calls for the terms: an outbound call of the caller and
an inbound call of the callee, each taking one of its user's channels. ``admit`` asks for both,
caller first; if the callee refuses (busy), the caller's channel is given back at once, so a
refused call never holds anything. ``released`` ends both; it is idempotent like the guard.

Still pure: persisting the ledger and writing the audit log are effects the edge passes in
(``commit``, ``on_decision``), called after every decision in that order (write-ahead).
"""

from __future__ import annotations

from collections.abc import Callable

from softphone.policy.decision import Decision
from softphone.policy.facts import CallAttempt, DeviceClass, Direction, EndReason, User
from softphone.policy.guard import PolicyGuard

UserLookup = Callable[[str], "User | None"]


def _nothing() -> None:
    return None


def _ignore(decision: Decision) -> None:
    return None


class CallAdmission:
    def __init__(self, guard: PolicyGuard, users: UserLookup, *,
                 commit: Callable[[], None] = _nothing,
                 on_decision: Callable[[Decision], None] = _ignore,
                 device_class: DeviceClass = DeviceClass.SIP) -> None:
        self.guard = guard
        self.users = users
        self.commit = commit
        self.on_decision = on_decision
        self.device_class = device_class

    @staticmethod
    def leg_ids(call_id: str) -> tuple[str, str]:
        """The guard's call ids for the caller's and the callee's side of one edge call."""
        return f"{call_id}/caller", f"{call_id}/callee"

    def _record(self, decision: Decision) -> Decision:
        self.commit()
        self.on_decision(decision)
        return decision

    def admit(self, call_id: str, caller: str, callee: str, *, inbound_local: bool,
              now: float) -> tuple[int, str] | None:
        """None to let the call proceed, else (status, reason phrase) to refuse it."""
        out_id, in_id = self.leg_ids(call_id)
        caller_user = self.users(caller)
        callee_user = self.users(callee)
        if caller_user is not None:
            shown = caller_user.numbers[0] if caller_user.numbers else caller
            d = self._record(self.guard.on_call_attempt(CallAttempt(
                out_id, caller_user, "edge", self.device_class, Direction.OUTBOUND, callee,
                shown, now, internal=inbound_local and callee_user is not None)))
            if not d.allowed:
                return d.sip_status or 403, d.reason_phrase or "Forbidden"
        if callee_user is not None:
            d = self._record(self.guard.on_call_attempt(CallAttempt(
                in_id, callee_user, "edge", self.device_class, Direction.INBOUND, callee,
                caller, now, internal=inbound_local)))
            if not d.allowed:
                if caller_user is not None:
                    self._record(self.guard.on_call_end(out_id, now, EndReason.REJECTED))
                return d.sip_status or 486, d.reason_phrase or "Busy Here"
        return None

    def answered(self, call_id: str, now: float) -> list[Decision]:
        """Both sides answered: the notices to play (recording, AI disclosure) per side."""
        return [self._record(self.guard.on_answer(leg, now)) for leg in self.leg_ids(call_id)]

    def released(self, call_id: str, *, answered: bool, duration: float, now: float) -> None:
        """The edge call is over. ``answered``/``duration`` are the edge's view; the guard
        measures from its own ledger (attempt and answer times), so they are not needed."""
        for leg in self.leg_ids(call_id):
            d = self.guard.on_call_end(leg, now, EndReason.HANGUP)
            if d.audited:
                self._record(d)
