"""``CallAdmission``: the one interface the edge asks the policy through (``admit`` /
``released`` and the other decision points), on top of ``PolicyGuard``.

A call between two local users is two calls for the terms: an outbound call of the caller and
an inbound call of the callee, each taking one of its user's channels. ``admit`` asks for both,
caller first; if the callee refuses (busy), the caller's channel is given back at once, so a
refused call never holds anything. ``released`` ends both; it is idempotent like the guard.

Emergency numbers (R-EMERG) are not calls to a local user nor to the trunk: ``is_emergency``
tells the edge, before any routing, that the dialled digits are an emergency code where the
caller is, and ``admit_decision`` hands back the guard's whole decision (``ROUTE_EMERGENCY``
with the route and the PIDF-LO payload, or the ``REJECT`` with its spoken notice).

Still pure: persisting the ledger and writing the audit log are effects the edge passes in
(``commit``, ``on_decision``), called after every decision in that order (write-ahead). The
policy counts days and months, so it is dated by the wall clock it is given (``clock``,
``time.time`` by default), read when a caller passes no ``now``; the edge never passes one
(its own clock is monotonic), tests pass theirs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from softphone.policy.decision import Action, Decision
from softphone.policy.facts import (
    CallAttempt,
    DeviceClass,
    Direction,
    EndReason,
    MediaLine,
    Party,
    Registration,
    User,
)
from softphone.policy.guard import PolicyGuard
from softphone.policy.numbers import NumberError, clean, emergency_digits, emergency_urn

UserLookup = Callable[[str], "User | None"]


def _nothing() -> None:
    return None


def _ignore(decision: Decision) -> None:
    return None


class CallAdmission:
    def __init__(self, guard: PolicyGuard, users: UserLookup, *,
                 commit: Callable[[], None] = _nothing,
                 on_decision: Callable[[Decision], None] = _ignore,
                 device_class: DeviceClass = DeviceClass.SIP,
                 clock: Callable[[], float] = time.time) -> None:
        self.guard = guard
        self.clock = clock  # wall-clock time: what a decision is dated when no ``now`` is given
        self.users = users
        self.commit = commit
        self.on_decision = on_decision
        self.device_class = device_class
        # an edge call whose Call-ID an earlier, released attempt already used (a phone that
        # retries a refused or failed call on the same Call-ID, RFC 3261 allows it): the
        # guard's id of this attempt, "<Call-ID>#<n>", so that it is decided afresh
        self._attempts: dict[str, str] = {}

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now

    MAX_RETRIES = 1000  # attempts on one Call-ID before the guard keeps refusing it (481)

    def leg_ids(self, call_id: str) -> tuple[str, str]:
        """The guard's call ids for the caller's and the callee's side of one edge call (of
        its current attempt)."""
        attempt = self._attempts.get(call_id, call_id)
        return f"{attempt}/caller", f"{attempt}/callee"

    def _fresh_attempt(self, call_id: str) -> None:
        """Give a new call on a Call-ID whose earlier attempt has ended a fresh guard id; a
        Call-ID the guard holds a channel for keeps its id (a fork of the same call)."""
        self._attempts.pop(call_id, None)
        state = self.guard.state
        attempt, n = call_id, 1
        while n <= self.MAX_RETRIES and any(f"{attempt}/{side}" in state.ended
                                            and f"{attempt}/{side}" not in state.calls
                                            for side in ("caller", "callee")):
            n += 1
            attempt = f"{call_id}#{n}"
        if attempt != call_id and n <= self.MAX_RETRIES:
            self._attempts[call_id] = attempt

    def record(self, decision: Decision) -> Decision:
        """Persist (commit) and then audit one decision: the order every decision point uses."""
        self.commit()
        self.on_decision(decision)
        return decision

    def is_emergency(self, caller: str, dialed: str) -> bool:
        """Whether ``dialed`` is an emergency code for this local caller (where the user is
        located, else the account's country; 112 everywhere), or an RFC 5031 service URN of
        the ``sos`` tree. No decision, nothing audited."""
        return self.emergency_code(caller, dialed) is not None

    def emergency_code(self, caller: str, dialed: str) -> str | None:
        """The emergency code that ``dialed`` stands for where this local caller is, None when
        it is no emergency call: the digits themselves for a code; for a service URN
        (``urn:service:sos.fire``) the caller's country's code of that service, else of its
        parent (the services form a tree: ``sos`` answers for a sub-service the country has no
        number of its own for). The guard then decides on that code exactly as if it had been
        dialled."""
        user = self.users(caller)
        if user is None:
            return None
        country = user.location.country if user.location is not None else user.account.country
        config = self.guard.config
        if dialed[:12].lower() == "urn:service:":
            labels = dialed[12:].lower().split(".")
            if labels[0] != "sos":
                return None
            em = config.emergency
            tables = (em.universal, em.codes.get(country, {}))
            while labels:
                wanted = "urn:service:" + ".".join(labels)
                for table in tables:
                    for code, urn in table.items():
                        # a code the country gives another meaning does not stand for it
                        if urn == wanted and emergency_urn(code, country, config) == wanted:
                            return code
                labels.pop()
            return None
        try:
            digits = clean(dialed)
        except NumberError:
            return None  # "sip:alice@pbx": a name, never an emergency code
        return emergency_digits(digits, country, user.account.outside_line_prefix, config)

    def admit(self, call_id: str, caller: str, callee: str, *, inbound_local: bool,
              now: float | None = None) -> tuple[int, str] | None:
        """None to let the call proceed, else (status, reason phrase) to refuse it."""
        d = self.admit_decision(call_id, caller, callee, inbound_local=inbound_local, now=now)
        if d is None or d.allowed:
            return None
        fallback = (403, "Forbidden") if (d.call_id or "").endswith("/caller") else \
            (486, "Busy Here")
        return d.sip_status or fallback[0], d.reason_phrase or fallback[1]

    def admit_decision(self, call_id: str, caller: str, callee: str, *, inbound_local: bool,
                       now: float | None = None, media: tuple[MediaLine, ...] = (),
                       presented: str | None = None) -> Decision | None:
        """The decision the edge must act on, or None for a plain go-ahead.

        A refusal of either side (the caller's ``REJECT``, or the callee's with the caller's
        channel already given back), or the caller's ``ROUTE_EMERGENCY``: an emergency call
        has no callee side, it goes to ``decision.route`` with ``decision.location``.
        """
        taken = self.admit_decisions(call_id, caller, callee, inbound_local=inbound_local,
                                     now=now, media=media, presented=presented)
        last = taken[-1] if taken else None
        if last is not None and (not last.allowed or last.action is Action.ROUTE_EMERGENCY):
            return last
        return None

    def admit_decisions(self, call_id: str, caller: str, callee: str, *, inbound_local: bool,
                        now: float | None = None, media: tuple[MediaLine, ...] = (),
                        presented: str | None = None,
                        caller_local: bool = True, user_agent: str = "",
                        psap_callback: bool = False) -> list[Decision]:
        """Every decision taken on a new call, the caller's side first; a refusal or an
        emergency route, when there is one, is the last. The allowed ones carry what the edge
        must still do with a call that goes ahead: ``billable``, ``strip_media``, warnings.

        ``media`` are the offer's m-lines (R-TECH-9); ``presented`` the caller ID shown to the
        other end (R-CLI-1/2, R-EMERG-4), by default the caller's first number, else its name.
        ``caller_local`` False: the call came from outside (the trunk), ``caller`` is only the
        number the other network put in From; even when it is a local user's name, the call
        is no call of that user (it takes none of its channels, counts toward none of its
        limits): only the callee's inbound side is decided. ``user_agent``: the caller's
        User-Agent header (R-ACCT-2, as at REGISTER).
        ``psap_callback``: the emergency gateway calling the callee back after their
        emergency call (the callee's side is then never refused).
        """
        self._fresh_attempt(call_id)
        taken = self._admit(call_id, caller, callee, inbound_local=inbound_local,
                            now=self._now(now),
                            media=media, presented=presented, caller_local=caller_local,
                            user_agent=user_agent, psap_callback=psap_callback)
        if not taken or not taken[-1].allowed:
            self._attempts.pop(call_id, None)  # nothing held: nothing to release later
        return taken

    def _admit(self, call_id: str, caller: str, callee: str, *, inbound_local: bool,
               now: float, media: tuple[MediaLine, ...], presented: str | None,
               caller_local: bool, user_agent: str, psap_callback: bool) -> list[Decision]:
        out_id, in_id = self.leg_ids(call_id)
        caller_user = self.users(caller) if caller_local else None
        callee_user = self.users(callee)
        taken: list[Decision] = []
        if caller_user is not None:
            shown = presented or (caller_user.numbers[0] if caller_user.numbers else caller)
            d = self.record(self.guard.on_call_attempt(CallAttempt(
                out_id, caller_user, "edge", self.device_class, Direction.OUTBOUND, callee,
                shown, now, media=media, internal=inbound_local and callee_user is not None,
                user_agent=user_agent)))
            taken.append(d)
            if not d.allowed or d.action is Action.ROUTE_EMERGENCY:
                return taken
        if callee_user is not None:
            d = self.record(self.guard.on_call_attempt(CallAttempt(
                in_id, callee_user, "edge", self.device_class, Direction.INBOUND, callee,
                caller, now, media=media, internal=inbound_local, psap_callback=psap_callback)))
            taken.append(d)
            if not d.allowed and caller_user is not None:
                self.record(self.guard.on_call_end(out_id, now, EndReason.REJECTED))
        return taken

    def registered(self, user_name: str, *, device: str, source_ip: str, expires_s: int,
                   user_agent: str, now: float | None = None,
                   device_class: DeviceClass | None = None) -> Decision | None:
        """A REGISTER binding (``device``: its contact) of a local user; None for a name that
        is no user. Committed, then audited, like the decisions on calls."""
        user = self.users(user_name)
        if user is None:
            return None
        return self.record(self.guard.on_registration(Registration(
            user, device, device_class or self.device_class, source_ip, self._now(now),
            expires_s=expires_s, user_agent=user_agent)))

    def emergency_location(self, user_name: str, now: float | None = None) -> str | None:
        """The recorded location in one line when this local user's emergency calls can be
        routed (``PolicyGuard.emergency_location``); None otherwise or for an unknown name.
        No decision, nothing audited."""
        user = self.users(user_name)
        if user is None:
            return None
        return self.guard.emergency_location(user, self._now(now))

    def answered(self, call_id: str, now: float | None = None) -> list[Decision]:
        """The call is answered: per side that holds a channel, the notices its correspondent
        must hear first (recording, AI disclosure) and the time left (trial)."""
        out = []
        now = self._now(now)
        for leg in self.leg_ids(call_id):
            d = self.guard.on_answer(leg, now)
            if d.audited:
                out.append(self.record(d))
        return out

    @staticmethod
    def correspondent_leg(guard_call_id: str) -> str:
        """The edge's media leg of the other party of one side: the caller's correspondent is
        the callee's leg "b", the callee's is the caller's leg "a"."""
        return "b" if guard_call_id.endswith("/caller") else "a"

    def notice_played(self, guard_call_id: str, notice_id: str,
                      now: float | None = None) -> Decision:
        """A notice has finished playing to the correspondent of that side (recording may
        start now, and only now)."""
        return self.record(self.guard.on_notice_played(guard_call_id, notice_id,
                                                       self._now(now)))

    def dtmf(self, call_id: str, media_leg: str, digit: str,
             now: float | None = None) -> list[Decision]:
        """A key pressed on media leg "a" or "b": for each side, it comes from our user or
        from the correspondent. Only decisions that matter (an objection) are returned."""
        out = []
        now = self._now(now)
        for leg in self.leg_ids(call_id):
            party = Party.CORRESPONDENT if self.correspondent_leg(leg) == media_leg \
                else Party.USER
            d = self.guard.on_dtmf(leg, digit, now, party)
            if d.audited:
                out.append(self.record(d))
        return out

    def sweep(self, live: Iterable[str], now: float) -> list[Decision]:
        """The safety net under the edge's own teardown: every edge call still up (``live``)
        is a sign of life for both its sides; a channel that no live call has refreshed for
        ``calls.stale_after_s`` is released (``EndReason.STALE``) and audited, never leaked."""
        for call_id in live:
            for leg in self.leg_ids(call_id):
                self.guard.on_keepalive(leg, now)
        return [self.record(d) for d in self.guard.sweep(now)]

    def refused(self, call_id: str, *, now: float | None = None) -> list[Decision]:
        """The edge refused the call after the guard admitted it (488 no common codec, 503
        no media port, 480 nobody to ring): both sides' channels are given back at once and
        nothing is counted (no short call: the call was never placed)."""
        out = []
        now = self._now(now)
        for leg in self.leg_ids(call_id):
            d = self.guard.on_call_end(leg, now, EndReason.NOT_PLACED)
            if d.audited:
                out.append(self.record(d))
        self._attempts.pop(call_id, None)
        return out

    def released(self, call_id: str, *, answered: bool, duration: float,
                 now: float | None = None) -> list[Decision]:
        """The edge call is over. ``answered``/``duration`` are the edge's view; the guard
        measures from its own ledger (attempt and answer times), so they are not needed.
        Returns the decisions (with the recording commands the end implies)."""
        out = []
        now = self._now(now)
        for leg in self.leg_ids(call_id):
            d = self.guard.on_call_end(leg, now, EndReason.HANGUP)
            if d.audited:
                out.append(self.record(d))
        self._attempts.pop(call_id, None)
        return out
