"""``CallAdmission``: the edge's two-call guard protocol (``admit`` / ``released``, see
softphone.edge.b2bua.CallGuard) on top of ``PolicyGuard``.

A call between two local users is two calls for the terms: an outbound call of the caller and
an inbound call of the callee, each taking one of its user's channels. ``admit`` asks for both,
caller first; if the callee refuses (busy), the caller's channel is given back at once, so a
refused call never holds anything. ``released`` ends both; it is idempotent like the guard.

Emergency numbers (R-EMERG) are not calls to a local user nor to the trunk: ``is_emergency``
tells the edge, before any routing, that the dialled digits are an emergency code where the
caller is, and ``admit_decision`` hands back the guard's whole decision (``ROUTE_EMERGENCY``
with the route and the PIDF-LO payload, or the ``REJECT`` with its spoken notice).

Still pure: persisting the ledger and writing the audit log are effects the edge passes in
(``commit``, ``on_decision``), called after every decision in that order (write-ahead).
"""

from __future__ import annotations

from collections.abc import Callable

from softphone.policy.decision import Action, Decision
from softphone.policy.facts import CallAttempt, DeviceClass, Direction, EndReason, User
from softphone.policy.guard import PolicyGuard
from softphone.policy.numbers import NumberError, clean, emergency_urn

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

    def is_emergency(self, caller: str, dialed: str) -> bool:
        """Whether ``dialed`` is an emergency code for this local caller (where the user is
        located, else the account's country; 112 everywhere). No decision, nothing audited."""
        user = self.users(caller)
        if user is None:
            return False
        country = user.location.country if user.location is not None else user.account.country
        try:
            digits = clean(dialed)
        except NumberError:
            return False  # "sip:alice@pbx": a name, never an emergency code
        return emergency_urn(digits, country, self.guard.config) is not None

    def admit(self, call_id: str, caller: str, callee: str, *, inbound_local: bool,
              now: float) -> tuple[int, str] | None:
        """None to let the call proceed, else (status, reason phrase) to refuse it."""
        d = self.admit_decision(call_id, caller, callee, inbound_local=inbound_local, now=now)
        if d is None or d.allowed:
            return None
        fallback = (403, "Forbidden") if d.call_id == self.leg_ids(call_id)[0] else \
            (486, "Busy Here")
        return d.sip_status or fallback[0], d.reason_phrase or fallback[1]

    def admit_decision(self, call_id: str, caller: str, callee: str, *, inbound_local: bool,
                       now: float) -> Decision | None:
        """The decision the edge must act on, or None for a plain go-ahead.

        A refusal of either side (the caller's ``REJECT``, or the callee's with the caller's
        channel already given back), or the caller's ``ROUTE_EMERGENCY``: an emergency call
        has no callee side, it goes to ``decision.route`` with ``decision.location``.
        """
        out_id, in_id = self.leg_ids(call_id)
        caller_user = self.users(caller)
        callee_user = self.users(callee)
        if caller_user is not None:
            shown = caller_user.numbers[0] if caller_user.numbers else caller
            d = self._record(self.guard.on_call_attempt(CallAttempt(
                out_id, caller_user, "edge", self.device_class, Direction.OUTBOUND, callee,
                shown, now, internal=inbound_local and callee_user is not None)))
            if not d.allowed or d.action is Action.ROUTE_EMERGENCY:
                return d
        if callee_user is not None:
            d = self._record(self.guard.on_call_attempt(CallAttempt(
                in_id, callee_user, "edge", self.device_class, Direction.INBOUND, callee,
                caller, now, internal=inbound_local)))
            if not d.allowed:
                if caller_user is not None:
                    self._record(self.guard.on_call_end(out_id, now, EndReason.REJECTED))
                return d
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
