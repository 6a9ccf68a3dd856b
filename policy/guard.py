"""``PolicyGuard``: the provider's terms applied at every decision point of a call.

Facts in, ``Decision`` out, no I/O: the guard mutates only its ``Ledger`` (channels and
counters), through events the caller drains and persists (softphone.ledgerstore) after each call,
and the caller writes each decision to the audit log (softphone.audit).

Order of the rules on a new outbound call (the first that refuses decides):
  emergency number (recognised first; never blocked by anything below) ->
  account state -> switch/PBX User-Agent -> trial seats -> channel limit -> MRCP -> number
  class -> automated dialing throttle -> trial exclusions and minutes -> SMART contacts ->
  caller-ID billing and the unlimited plan's suspension (R-LIMIT-3: flags only, the call is
  charged, never refused).

Race-freedom: check-and-acquire of a channel happens under one lock with no await in between,
so two INVITEs for the same user at the same instant cannot both take the last channel. The
edge calls the guard from its one event-loop thread, where the lock is never contended; it
stays because the guard is a library that a threaded host may call (tests/policy drive it from
threads).
"""

from __future__ import annotations

import ipaddress
import threading
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from softphone.policy.config import PolicyConfig
from softphone.policy.decision import (
    Action,
    Audience,
    CounterBump,
    Decision,
    Notice,
    PolicyWarning,
    RecordingAction,
    RecordingCommand,
)
from softphone.policy.facts import (
    AccountState,
    CallAttempt,
    Direction,
    EndReason,
    Party,
    Plan,
    RecordingOptionChange,
    Registration,
    User,
)
from softphone.policy.ledger import ActiveCall, Ledger, LedgerEvent, Scalar, to_snapshot
from softphone.policy.location import LocationError, conveyance, location_line
from softphone.policy.numbers import NumberError, NumberInfo, NumberKind, classify

DAY = 86400.0

_STATE_RULES = {
    AccountState.BILLING_SUSPENDED: "R-BILL-10",
    AccountState.ABUSE_SUSPENDED: "R-LIMIT-3",
    AccountState.PENDING_KYC: "R-LIMIT-8",
    AccountState.TERMINATED: "R-LIFE-5",
}


class PolicyInputError(ValueError):
    """A fact the guard cannot use (an address that is not an IP address, a negative time...)."""


@dataclass
class _Binding:
    place: str
    expires_at: float
    user_agent: str


class PolicyGuard:
    def __init__(self, config: PolicyConfig, state: Ledger | None = None) -> None:
        self.config = config
        self.state = state if state is not None else Ledger()
        self._pending: list[LedgerEvent] = []
        self._lock = threading.RLock()
        # soft state (see ledger.py): rebuilt by traffic after a restart
        self._bindings: dict[str, dict[str, _Binding]] = {}
        self._attempts: dict[str, deque[float]] = {}
        self._last_end: dict[str, float] = {}
        self._gap_streak: dict[str, int] = {}
        self._last_allowed: dict[str, float] = {}
        self._allowed: dict[str, Decision] = {}  # call id -> the decision that took its channel
        self._automated: set[str] = set()  # call ids handled by an AI agent
        self._window: tuple[object, tuple[str, ...]] = (None, ())  # fair-use days, by date
        self._account_zone: dict[str, str] = {}  # account id -> its time zone (last attempt)
        self._zones: dict[str, tzinfo] = {}

    # ------------------------------------------------------------------ plumbing

    def drain_events(self) -> list[LedgerEvent]:
        """Ledger events produced since the last drain, in order, for the store to persist."""
        with self._lock:
            out, self._pending = self._pending, []
            return out

    def checkpoint(self) -> tuple[list[LedgerEvent], dict[str, Any]]:
        """The undrained events and a snapshot of the ledger they lead to, taken atomically
        (the store's compaction point)."""
        with self._lock:
            out, self._pending = self._pending, []
            return out, to_snapshot(self.state)

    def _emit(self, kind: str, event_id: str, at: float, **fields: Scalar) -> None:
        ev = LedgerEvent(event_id, kind, at, fields)
        self.state.apply(ev)
        self._pending.append(ev)

    def _d(self, action: Action, rule_id: str, point: str, **kw: Any) -> Decision:
        return Decision(action=action, rule_id=rule_id, clause=self.config.clause(rule_id),
                        point=point, **kw)

    def _w(self, rule_id: str, message: str, audience: Audience = Audience.USER) -> PolicyWarning:
        return PolicyWarning(rule_id, self.config.clause(rule_id), message, audience)

    def _text(self, announcement: str) -> str:
        return self.config.announcements[announcement].replace(
            "{digit}", self.config.recording.objection_digit)

    def _local(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.config.timezone)

    def day(self, t: float) -> str:
        return self._local(t).strftime("%Y-%m-%d")

    def zone(self, name: str) -> tzinfo:
        """An account's time zone by IANA name; "" is the policy's."""
        if not name:
            return self.config.timezone
        zone = self._zones.get(name)
        if zone is None:
            try:
                zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise PolicyInputError(f"unknown time zone {name!r}") from None
            self._zones[name] = zone
        return zone

    def calendar_days_later(self, t: float, days: int, zone_name: str = "") -> float:
        """``days`` calendar days after ``t`` in that zone: the same local wall-clock time
        (a day across a DST change lasts 23 or 25 hours; a wall-clock time that does not
        exist that day is read with the offset before the change)."""
        return (datetime.fromtimestamp(t, self.zone(zone_name)) + timedelta(days=days)
                ).timestamp()

    def _local_text(self, t: float, zone_name: str) -> str:
        return datetime.fromtimestamp(t, self.zone(zone_name)).strftime("%Y-%m-%d %H:%M %Z")

    def month(self, t: float) -> str:
        return self._local(t).strftime("%Y-%m")

    @staticmethod
    def _check_time(now: float) -> None:
        if not isinstance(now, (int, float)) or now != now or now < 0:
            raise PolicyInputError(f"time must be POSIX seconds, got {now!r}")

    # ------------------------------------------------------------------ registration

    def place_of(self, source_ip: str) -> str:
        try:
            ip = ipaddress.ip_address(source_ip)
        except ValueError:
            raise PolicyInputError(f"not an IP address: {source_ip!r}") from None
        prefix = (self.config.accounts.place_prefix_v4 if ip.version == 4
                  else self.config.accounts.place_prefix_v6)
        return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))

    def on_registration(self, reg: Registration) -> Decision:
        """REGISTER from one device. Several devices are one user (one channel count)."""
        self._check_time(reg.now)
        with self._lock:
            user, acct = reg.user, reg.user.account
            base = {"user_id": user.user_id, "account_id": acct.account_id}
            if acct.state is AccountState.TERMINATED:
                return self._d(Action.REJECT, "R-LIFE-5", "registration", sip_status=403,
                               reason_phrase="Account Terminated", **base)
            refused = self._trial_seat(user, reg.now, "registration")
            if refused is not None:
                return refused
            warnings: list[PolicyWarning] = []
            refused = self._pbx_gate(reg.user_agent, "registration", warnings, base)
            if refused is not None:
                return refused
            place = self.place_of(reg.source_ip)
            live = self._bindings.setdefault(user.user_id, {})
            for dev in [d for d, b in live.items() if b.expires_at <= reg.now]:
                del live[dev]
            if reg.expires_s <= 0:
                live.pop(reg.device, None)
            else:
                live[reg.device] = _Binding(place, reg.now + reg.expires_s, reg.user_agent)
            places = sorted({b.place for b in live.values()})
            if len(places) > 1:
                warnings.append(self._w(
                    "R-ACCT-1", f"user registered from {len(places)} places at once "
                    f"({', '.join(places)}): one user, one call count; sharing is not allowed",
                    Audience.ADMIN))
            if not self._emergency_ready(user)[0]:
                warnings.append(self._w("R-EMERG-6", self._text("emergency-unavailable")))
            self._mark_trial_user(user, reg.now)
            return self._d(Action.ALLOW, "R-ACCT-1", "registration", warnings=tuple(warnings),
                           details=(("devices", str(len(live))), ("places", str(len(places))),
                                    ("device_class", reg.device_class.value)), **base)

    def _pbx_gate(self, user_agent: str, point: str, warnings: list[PolicyWarning],
                  base: dict[str, Any]) -> Decision | None:
        """R-ACCT-2: a switch's or PBX's User-Agent, at REGISTER and on every outbound
        INVITE alike (a PBX that never registers but calls is the same PBX): refused with
        ``pbx_action = "reject"``, else an admin warning."""
        ua = user_agent.lower()
        pbx = next((p for p in self.config.accounts.pbx_user_agents if p.lower() in ua), None)
        if pbx is None:
            return None
        if self.config.accounts.pbx_action == "reject":
            return self._d(Action.REJECT, "R-ACCT-2", point, sip_status=403,
                           reason_phrase="Switches Not Allowed",
                           details=(("user_agent", user_agent),), **base)
        what = "registration" if point == "registration" else "call"
        warnings.append(self._w("R-ACCT-2", f"{what} from a switch or PBX ({pbx}): accounts "
                                f"may not be used behind one", Audience.ADMIN))
        return None

    def registered_devices(self, user_id: str, now: float) -> list[str]:
        with self._lock:
            return sorted(d for d, b in self._bindings.get(user_id, {}).items()
                          if b.expires_at > now)

    # ------------------------------------------------------------------ call attempts

    def on_call_attempt(self, a: CallAttempt) -> Decision:
        """A new INVITE for one of our users, outbound (placed by them) or inbound."""
        self._check_time(a.now)
        if not a.call_id or not a.user.user_id or not a.user.account.account_id:
            raise PolicyInputError("a call attempt needs a call id, a user id and an account id")
        with self._lock:
            held = self.state.calls.get(a.call_id)
            if held is not None and held.user_id != a.user.user_id:
                raise PolicyInputError(f"call id {a.call_id!r} already belongs to user "
                                       f"{held.user_id!r}, not {a.user.user_id!r}")
            if held is not None:
                # a forked leg or a retransmission of the same call: same channel, same answer
                prev = self._allowed.get(a.call_id)
                if prev is not None:
                    return replace(prev, details=(*prev.details, ("fork", "same call")))
                return self._d(Action.ALLOW, "R-CALLS-1", "call_attempt", call_id=a.call_id,
                               user_id=a.user.user_id, details=(("fork", "same call"),))
            self.zone(a.user.account.timezone)  # an unknown zone is a bad fact, refused here
            self._account_zone[a.user.account.account_id] = a.user.account.timezone
            if a.call_id in self.state.ended:
                return self._d(Action.REJECT, "R-CALLS-1", "call_attempt", call_id=a.call_id,
                               user_id=a.user.user_id, sip_status=481,
                               reason_phrase="Call Already Ended")
            if a.direction is Direction.OUTBOUND:
                return self._outbound(a)
            return self._inbound(a)

    def _base(self, a: CallAttempt) -> dict[str, Any]:
        return {"call_id": a.call_id, "user_id": a.user.user_id,
                "account_id": a.user.account.account_id}

    def _dial_country(self, user: User) -> str:
        return user.location.country if user.location is not None else user.account.country

    def _outbound(self, a: CallAttempt) -> Decision:
        base = self._base(a)
        try:
            info = classify(a.dialed, self._dial_country(a.user), self.config)
        except NumberError as exc:
            if not a.internal:
                return self._d(Action.REJECT, "R-NUM-3", "call_attempt", sip_status=484,
                               reason_phrase="Address Incomplete",
                               details=(("error", str(exc)),), **base)
            info = NumberInfo(a.dialed, a.dialed, NumberKind.SHORT)  # sip:alice@pbx, say
        if info.kind is NumberKind.EMERGENCY:
            return self._emergency(a, info)
        self._note_attempt(a)
        warnings: list[PolicyWarning] = []
        refused = (self._state_gate(a)
                   or self._pbx_gate(a.user_agent, "call_attempt", warnings, self._base(a))
                   or self._trial_seat(a.user, a.now, "call_attempt", a)
                   or self._channel_gate(a))
        if refused is not None:
            return refused
        strip, refused = self._mrcp(a)
        if refused is not None:
            return refused
        if not a.internal:
            refused = self._number_gate(a, info, warnings)
            if refused is not None:
                return refused
        refused = self._throttle_gate(a)
        if refused is not None:
            return refused
        trial_counted, refused = self._trial_gate(a, info)
        if refused is not None:
            return refused
        new_contact, refused = self._smart_gate(a, info, warnings)
        if refused is not None:
            return refused
        billable = self._cli_billing(a, info, warnings)
        # every gate passed: now, and only now, change the ledger
        acct = a.user.account
        if new_contact is not None:
            self._emit("contact", f"contact:{acct.account_id}:{self.month(a.now)}:{new_contact}",
                       a.now, account_id=acct.account_id, month=self.month(a.now),
                       number=new_contact)
        self._mark_trial_user(a.user, a.now)
        # an internal call never reaches the provider: no fair use, no short call
        self._acquire(a, emergency=False, trial=trial_counted,
                      fair_use=acct.plan is Plan.UNLIMITED and not a.internal,
                      short_calls=not a.internal)
        self._last_allowed[a.user.user_id] = a.now
        d = self._d(Action.ALLOW, "R-CALLS-1", "call_attempt", warnings=tuple(warnings),
                    billable=billable, strip_media=strip,
                    counters=(self._channel_bump(a.user),),
                    # an extension has no number class: "1002" is not a 10xy carrier code here
                    details=((("number_kind", "internal"),) if a.internal
                             else self._number_details(info)), **base)
        self._allowed[a.call_id] = d
        return d

    def _inbound(self, a: CallAttempt) -> Decision:
        base = self._base(a)
        acct = a.user.account
        if a.psap_callback:
            # the emergency services calling back: like the emergency call itself, never
            # refused for the account's state, limits, trial or channels (R-EMERG-1)
            self._acquire(a, emergency=True, trial=False, fair_use=False, short_calls=False)
            d = self._d(Action.ALLOW, "R-EMERG-1", "call_attempt",
                        counters=(self._channel_bump(a.user),),
                        details=(("psap_callback", a.presented),), **base)
            self._allowed[a.call_id] = d
            return d
        if acct.state in _STATE_RULES:
            return self._d(Action.REJECT, _STATE_RULES[acct.state], "call_attempt",
                           sip_status=480, reason_phrase="Temporarily Unavailable",
                           details=(("account_state", acct.state.value),), **base)
        refused = self._trial_seat(a.user, a.now, "call_attempt", a) or self._channel_gate(a)
        if refused is not None:
            return refused
        strip, refused = self._mrcp(a)
        if refused is not None:
            return refused
        trial_counted = False
        if acct.trial:
            try:
                info = classify(a.presented, acct.country, self.config)
            except NumberError:
                info = None
            international = info is None or info.country != acct.country
            trial_counted = not (international or (info is not None and info.premium))
            if trial_counted and self._trial_left(a.user) <= 0:
                return self._d(Action.REJECT, "R-LIMIT-7", "call_attempt", sip_status=480,
                               reason_phrase="Temporarily Unavailable",
                               announcement="trial-minutes",
                               user_message=self._text("trial-minutes"), **base)
        self._mark_trial_user(a.user, a.now)
        self._acquire(a, emergency=False, trial=trial_counted, fair_use=False, short_calls=False)
        d = self._d(Action.ALLOW, "R-CALLS-1", "call_attempt", strip_media=strip,
                    counters=(self._channel_bump(a.user),),
                    details=(("direction", a.direction.value),), **base)
        self._allowed[a.call_id] = d
        return d

    def _acquire(self, a: CallAttempt, *, emergency: bool, trial: bool, fair_use: bool,
                 short_calls: bool) -> None:
        u = a.user
        self._emit("acquired", f"acq:{a.call_id}", a.now, call_id=a.call_id, user_id=u.user_id,
                   account_id=u.account.account_id, device=a.device,
                   direction=a.direction.value, emergency=emergency, seats=max(1, u.account.seats),
                   recording_on=u.recording_on and not emergency, trial=trial,
                   fair_use=fair_use, short_calls=short_calls and not emergency)
        if a.automated_agent:
            self._automated.add(a.call_id)

    def _channel_bump(self, user: User) -> CounterBump:
        return CounterBump("channels", user.user_id, 1, self.state.held(user.user_id))

    @staticmethod
    def _number_details(info: NumberInfo) -> tuple[tuple[str, str], ...]:
        out = [("number_kind", info.kind.value)]
        if info.e164:
            out.append(("e164", info.e164))
        if info.special is not None:
            out.append(("special", f"{info.special.kind}:{info.special.prefix}"))
        return tuple(out)

    # -- gates: each returns a refusal or None

    def _state_gate(self, a: CallAttempt) -> Decision | None:
        st = a.user.account.state
        if st not in _STATE_RULES:
            return None
        return self._d(Action.REJECT, _STATE_RULES[st], "call_attempt", sip_status=403,
                       reason_phrase="Account Suspended" if st is not AccountState.TERMINATED
                       else "Account Terminated", announcement="suspended",
                       user_message=self._text("suspended"),
                       details=(("account_state", st.value),), **self._base(a))

    def _channel_gate(self, a: CallAttempt) -> Decision | None:
        held = self.state.held(a.user.user_id)
        limit = a.user.channel_limit
        if held < limit:
            return None
        c = self.config.calls
        outbound = a.direction is Direction.OUTBOUND
        return self._d(
            Action.REJECT, "R-CALLS-1", "call_attempt",
            sip_status=c.outbound_busy_status if outbound else c.inbound_busy_status,
            reason_phrase=c.outbound_busy_reason if outbound else c.inbound_busy_reason,
            announcement="call-limit" if outbound else "busy",
            user_message=self._text("call-limit") if outbound else self._text("busy"),
            details=(("held", str(held)), ("limit", str(limit)),
                     ("held_calls", ",".join(self.state.user_calls.get(a.user.user_id, ())))),
            **self._base(a))

    def _mrcp(self, a: CallAttempt) -> tuple[tuple[int, ...], Decision | None]:
        mrcp = tuple(i for i, m in enumerate(a.media)
                     if "mrcp" in m.proto.lower() or any("mrcp" in f.lower() for f in m.formats))
        if not mrcp:
            return (), None
        if len(mrcp) == len(a.media):
            return (), self._d(Action.REJECT, "R-TECH-9", "call_attempt",
                               sip_status=self.config.mrcp_status,
                               reason_phrase=self.config.mrcp_reason, announcement="mrcp",
                               user_message=self._text("mrcp"), **self._base(a))
        return mrcp, None

    def _number_gate(self, a: CallAttempt, info: NumberInfo,
                     warnings: list[PolicyWarning]) -> Decision | None:
        if info.kind is NumberKind.SHORT:
            return self._d(Action.REJECT, "R-NUM-3", "call_attempt", sip_status=484,
                           reason_phrase="Address Incomplete", announcement="special-number",
                           user_message=self._text("special-number"),
                           details=self._number_details(info), **self._base(a))
        sp = info.special
        if sp is None:
            return None
        if sp.action == "block":
            return self._d(Action.REJECT, "R-NUM-3", "call_attempt", sip_status=403,
                           reason_phrase="Special Number Not Routable",
                           announcement="special-number",
                           user_message=self._text("special-number"),
                           details=self._number_details(info), **self._base(a))
        if sp.action == "warn":
            warnings.append(self._w("R-NUM-3", f"{sp.kind} number ({sp.note or sp.prefix}): "
                                    f"special rates may apply"))
        return None

    def _note_attempt(self, a: CallAttempt) -> None:
        """R-ACCT-3 heuristics, on every outbound non-emergency attempt (refused ones too)."""
        acct = a.user.account
        if not (acct.sip_option and acct.plan is Plan.UNLIMITED):
            return
        cfg = self.config.accounts.automated
        uid = a.user.user_id
        dq = self._attempts.setdefault(uid, deque())
        dq.append(a.now)
        while dq and dq[0] <= a.now - cfg.window_s:
            dq.popleft()
        last_end = self._last_end.get(uid)
        if last_end is not None and 0 <= a.now - last_end < cfg.min_gap_s:
            self._gap_streak[uid] = self._gap_streak.get(uid, 0) + 1
        else:
            self._gap_streak[uid] = 0
        self._last_end.pop(uid, None)  # one gap per ended call
        rate = len(dq) > cfg.max_attempts
        gaps = self._gap_streak[uid] >= cfg.gap_streak
        if (rate or gaps) and self.state.throttled_until.get(uid, 0.0) <= a.now:
            self._emit("throttled", f"throttle:{uid}:{a.now!r}", a.now, user_id=uid,
                       until=a.now + cfg.throttle_s,
                       evidence=(f"{len(dq)} attempts in {cfg.window_s} s" if rate else
                                 f"{self._gap_streak[uid]} calls each < {cfg.min_gap_s} s "
                                 f"after the previous one"))

    def _throttle_gate(self, a: CallAttempt) -> Decision | None:
        uid = a.user.user_id
        until = self.state.throttled_until.get(uid, 0.0)
        if until <= a.now:
            return None
        gap = self.config.accounts.automated.throttle_gap_s
        last = self._last_allowed.get(uid)
        if last is not None and a.now - last < gap:
            return self._d(Action.REJECT, "R-ACCT-3", "call_attempt", sip_status=403,
                           reason_phrase="Automated Dialing Throttled",
                           announcement="automated-dialing",
                           user_message=self._text("automated-dialing"),
                           retry_after_s=max(1, int(gap - (a.now - last) + 0.999)),
                           details=(("throttled_until", f"{until:.0f}"),), **self._base(a))
        return None

    def _trial_left(self, user: User) -> float:
        total = self.config.limits.trial.minutes_per_user * 60.0
        return total - self.state.trial_seconds.get(user.user_id, 0.0)

    def _trial_seat(self, user: User, now: float, point: str,
                    a: CallAttempt | None = None) -> Decision | None:
        acct = user.account
        if not acct.trial:
            return None
        seen = self.state.trial_users.get(acct.account_id, set())
        if user.user_id in seen or len(seen) < self.config.limits.trial.max_users:
            return None
        base = self._base(a) if a is not None else {"user_id": user.user_id,
                                                    "account_id": acct.account_id}
        return self._d(Action.REJECT, "R-LIMIT-7", point, sip_status=403,
                       reason_phrase="Trial User Limit Reached", announcement="trial-users",
                       user_message=self._text("trial-users"),
                       details=(("trial_users", str(len(seen))),), **base)

    def _mark_trial_user(self, user: User, now: float) -> None:
        acct = user.account
        if acct.trial and user.user_id not in self.state.trial_users.get(acct.account_id, ()):
            self._emit("trial_user", f"trialuser:{acct.account_id}:{user.user_id}", now,
                       account_id=acct.account_id, user_id=user.user_id)

    def _trial_gate(self, a: CallAttempt, info: NumberInfo) -> tuple[bool, Decision | None]:
        acct = a.user.account
        if not acct.trial or a.internal:
            return False, None
        excluded = not a.internal and (info.premium or info.country != acct.country)
        if excluded:
            if self.config.limits.trial.block_excluded:
                return False, self._d(Action.REJECT, "R-LIMIT-7", "call_attempt",
                                      sip_status=403, reason_phrase="Not Available During Trial",
                                      announcement="trial-excluded",
                                      user_message=self._text("trial-excluded"),
                                      details=self._number_details(info), **self._base(a))
            return False, None
        if self._trial_left(a.user) <= 0:
            return False, self._d(Action.REJECT, "R-LIMIT-7", "call_attempt", sip_status=403,
                                  reason_phrase="Trial Minutes Used Up",
                                  announcement="trial-minutes",
                                  user_message=self._text("trial-minutes"), **self._base(a))
        return True, None

    def _smart_gate(self, a: CallAttempt, info: NumberInfo,
                    warnings: list[PolicyWarning]) -> tuple[str | None, Decision | None]:
        acct = a.user.account
        if not acct.smart_pack or a.internal or info.e164 is None:
            return None, None
        cfg = self.config.limits.smart
        known = self.state.contacts.get((acct.account_id, self.month(a.now)), set())
        if info.e164 in known:
            return None, None  # existing contacts stay callable
        if len(known) >= cfg.max_contacts:
            return None, self._d(Action.REJECT, "R-LIMIT-4", "call_attempt", sip_status=403,
                                 reason_phrase="Monthly Contact Limit Reached",
                                 announcement="smart-cap", user_message=self._text("smart-cap"),
                                 details=(("contacts", str(len(known))),), **self._base(a))
        count = len(known) + 1
        if count >= cfg.warn_at:
            warnings.append(self._w("R-LIMIT-4", f"{count} of {cfg.max_contacts} distinct "
                                    f"contacts used this month", Audience.ADMIN))
            warnings.append(self._w("R-LIMIT-4", f"{cfg.max_contacts - count} new contacts "
                                    f"left this month"))
        return info.e164, None

    def _cli_billing(self, a: CallAttempt, info: NumberInfo, warnings: list[PolicyWarning]) -> bool:
        acct = a.user.account
        billable = False
        until = self.state.suspended_until.get(acct.account_id, 0.0)
        if acct.state is AccountState.UNLIMITED_SUSPENDED:
            warnings.append(self._w("R-LIMIT-3", "the unlimited plan is suspended: this call is "
                                    "charged"))
            billable = True
        elif until > a.now and acct.plan is Plan.UNLIMITED and not a.internal:
            # R-LIMIT-3 after short-call breach days: the unlimited_suspended state for a
            # while; the call goes on, out of the bundle
            warnings.append(self._w("R-LIMIT-3", f"the unlimited plan is suspended until "
                                    f"{self._local_text(until, acct.timezone)}: this call is "
                                    f"charged"))
            billable = True
        if acct.plan is not Plan.UNLIMITED or a.internal or info.country is None:
            return billable
        try:
            shown = classify(a.presented, acct.country, self.config).country
        except NumberError:
            shown = None
        cli = self.config.cli
        if info.country == cli.swiss and shown != cli.swiss:
            warnings.append(self._w("R-CLI-2", "calls to Switzerland are unlimited only when "
                                    "presenting a Swiss number: this call is charged"))
            return True
        if info.country in cli.eea and shown not in cli.eea:
            warnings.append(self._w("R-CLI-1", "calls to the EEA are unlimited only when "
                                    "presenting an EEA number: this call is charged"))
            return True
        return billable

    # ------------------------------------------------------------------ emergency

    def emergency_location(self, user: User, now: float) -> str | None:
        """The line's recorded location in one line when an emergency call of this user would
        be routed now (the checks of ``_emergency_ready`` and a location that conveys), else
        None: what the registrar tells the phone with a successful REGISTER (R-EMERG-6 is
        the other side: the Warning when the service is not available)."""
        ok = self._emergency_ready(user)[0]
        if not ok or user.location is None:
            return None
        try:
            conveyance(user.location, user.user_id, "register", "register",
                       self.config.emergency.entity_domain, now)
        except LocationError:
            return None
        return location_line(user.location)

    def _emergency_ready(self, user: User) -> tuple[bool, str, str]:
        """(available, rule that fails, why) for routing an emergency call of this user."""
        em = self.config.emergency
        if user.account.state is AccountState.TERMINATED:
            return False, "R-LIFE-5", "account terminated"
        if not user.emergency_on:
            return False, "R-EMERG-1", "emergency calling not activated"
        if user.location is None:
            return False, "R-EMERG-3", "no location recorded"
        if user.location.country not in em.eligible:
            return False, "R-EMERG-2", f"country {user.location.country} not eligible"
        return True, "R-EMERG-1", "available"

    def _emergency(self, a: CallAttempt, info: NumberInfo) -> Decision:
        user = a.user
        base = self._base(a)
        details: list[tuple[str, str]] = [("dialed", info.digits),
                                          ("service_urn", info.service_urn or "")]
        if a.automated_agent:
            return self._d(Action.REJECT, "R-EMERG-12", "call_attempt", sip_status=403,
                           reason_phrase="Not Available To Automated Agents",
                           announcement="ai-emergency", user_message=self._text("ai-emergency"),
                           ai_allowed=False, details=tuple(details), **base)
        ok, rule, why = self._emergency_ready(user)
        present_as: str | None = None
        best_effort: list[PolicyWarning] = []
        if ok:
            try:
                shown = classify(a.presented, user.account.country, self.config)
            except NumberError:
                shown = None
            if shown is not None and shown.kind is NumberKind.MOBILE:
                # R-EMERG-4: not from a mobile number; present a fixed number of the user's
                for n in user.numbers:
                    try:
                        alt = classify(n, user.account.country, self.config)
                    except NumberError:
                        continue
                    if alt.kind is NumberKind.FIXED and alt.e164:
                        present_as = alt.e164
                        break
                if present_as is None:
                    # R-EMERG-4 says the service "is not guaranteed" from mobile numbers, not
                    # that it is forbidden: the call goes out, best effort, and both the
                    # caller and the admin are told
                    text = ("Emergency calls from a mobile number are not guaranteed on this "
                            "line: if the call fails, call from a mobile phone or a landline.")
                    best_effort = [self._w("R-EMERG-4", text),
                                   self._w("R-EMERG-4", "emergency call presented a mobile "
                                           "number: routed best effort", Audience.ADMIN)]
                    details.append(("best_effort", "mobile number presented"))
        location = None
        if ok:
            assert user.location is not None
            try:
                location = conveyance(user.location, user.user_id, a.device, a.call_id,
                                      self.config.emergency.entity_domain, a.now)
            except LocationError as exc:
                ok, rule, why = False, "R-EMERG-3", f"location unusable: {exc}"
        details.append(("why", why))
        if not ok:
            text = self._text("emergency-unavailable")
            em = self.config.emergency
            return self._d(Action.REJECT, rule, "call_attempt", sip_status=em.unavailable_status,
                           reason_phrase=em.unavailable_reason,
                           announcement="emergency-unavailable", user_message=text,
                           notices=(Notice("emergency-unavailable", Party.USER, text),),
                           ai_allowed=False,
                           warnings=(self._w("R-EMERG-7", text),
                                     self._w(rule, f"emergency call refused: {why}",
                                             Audience.ADMIN)),
                           details=tuple(details), **base)
        assert user.location is not None
        country = user.location.country
        route = self.config.emergency.routes.get(country, self.config.emergency.route)
        # never blocked by the channel limit, limits, trial or suspension; it still occupies a
        # channel so that a call towards the user meanwhile gets busy
        self._acquire(a, emergency=True, trial=False, fair_use=False, short_calls=False)
        details.append(("country", country))
        d = self._d(Action.ROUTE_EMERGENCY, "R-EMERG-1", "call_attempt", route=route,
                    service_urn=info.service_urn, location=location, present_as=present_as, ai_allowed=False,
                    counters=(self._channel_bump(user),),
                    warnings=(*best_effort,
                              self._w("R-EMERG-12", "AI features suppressed on this call",
                                      Audience.ADMIN)),
                    details=tuple(details), **base)
        self._allowed[a.call_id] = d
        return d

    # ------------------------------------------------------------------ in-call

    def _unknown(self, call_id: str, point: str) -> Decision:
        return self._d(Action.NONE, "R-CALLS-1", point, call_id=call_id,
                       details=(("call", "holds no channel"),), audited=False)

    def on_answer(self, call_id: str, now: float) -> Decision:
        """200 OK: the notices the correspondent must hear first, and the trial time left."""
        self._check_time(now)
        with self._lock:
            call = self.state.calls.get(call_id)
            if call is None:
                return self._unknown(call_id, "answer")
            if call.answered_at is None:
                self._emit("answered", f"ans:{call_id}", now, call_id=call_id)
            notices: list[Notice] = []
            rule = "R-CALLS-1"
            if call_id in self._automated:
                notices.append(Notice("ai-disclosure", Party.CORRESPONDENT,
                                      self._text("ai-disclosure")))
                rule = "R-AI-2"
            if call.recording_on and call.recording == "none":
                notices.append(Notice("recording-notice", Party.CORRESPONDENT,
                                      self._text("recording-notice")))
                call.recording = "pending"
                rule = "R-REC-2"
            call.notices_pending = tuple(n.notice_id for n in notices)
            max_s = None
            if call.trial:
                max_s = max(0, int(self._trial_left_for(call.user_id)))
            return self._d(Action.ALLOW, rule, "answer", call_id=call_id, user_id=call.user_id,
                           account_id=call.account_id, notices=tuple(notices),
                           max_duration_s=max_s, ai_allowed=not call.emergency)

    def _trial_left_for(self, user_id: str) -> float:
        total = self.config.limits.trial.minutes_per_user * 60.0
        return total - self.state.trial_seconds.get(user_id, 0.0)

    def on_notice_played(self, call_id: str, notice_id: str, now: float) -> Decision:
        """The edge finished playing a notice: recording may start only after its notice."""
        self._check_time(now)
        with self._lock:
            call = self.state.calls.get(call_id)
            if call is None:
                return self._unknown(call_id, "notice_played")
            call.notices_pending = tuple(n for n in call.notices_pending if n != notice_id)
            base = {"call_id": call_id, "user_id": call.user_id, "account_id": call.account_id}
            if notice_id == "recording-notice" and call.recording == "pending":
                call.recording = "on"
                self._emit("recording_started", f"recstart:{call_id}", now,
                           recording_id=call_id, call_id=call_id, user_id=call.user_id,
                           account_id=call.account_id)
                return self._d(Action.NONE, "R-REC-2", "notice_played",
                               recording=(RecordingCommand(RecordingAction.START, call_id),),
                               details=(("notice", notice_id),), **base)
            rule = "R-AI-2" if notice_id == "ai-disclosure" else "R-REC-2"
            return self._d(Action.NONE, rule, "notice_played", details=(("notice", notice_id),),
                           **base)

    def on_dtmf(self, call_id: str, digit: str, now: float,
                from_party: Party = Party.CORRESPONDENT) -> Decision:
        """A key pressed during the call. Only the objection key from the correspondent on a
        recorded call is a decision; other digits are not logged (they may be PINs)."""
        self._check_time(now)
        with self._lock:
            call = self.state.calls.get(call_id)
            # "stopped" with a stored file: the option went off mid-call, the recording so far
            # is kept for the export window, yet the correspondent may still object to it
            stored = call is not None and call.recording == "stopped" \
                and call_id in self.state.recordings
            if (call is None or digit != self.config.recording.objection_digit
                    or from_party is not Party.CORRESPONDENT
                    or (call.recording not in ("pending", "on") and not stored)):
                return self._d(Action.NONE, "R-REC-2", "dtmf", call_id=call_id, audited=False)
            was = call.recording
            call.recording = "objected"
            commands: tuple[RecordingCommand, ...] = ()
            if was in ("on", "stopped"):
                commands = (RecordingCommand(RecordingAction.STOP_AND_DELETE, call_id),)
                self._emit("recording_deleted", f"recdel:{call_id}", now, recording_id=call_id,
                           reason="objection")
            return self._d(Action.NONE, "R-REC-2", "dtmf", call_id=call_id,
                           user_id=call.user_id, account_id=call.account_id, recording=commands,
                           details=(("objection", "correspondent objected to recording"),
                                    ("recording_was", was)))

    def on_keepalive(self, call_id: str, now: float) -> None:
        """Sign of life (RTP seen, session refresh): keeps the sweep away. Not persisted."""
        self._check_time(now)
        with self._lock:
            call = self.state.calls.get(call_id)
            if call is not None and now > call.last_seen:
                call.last_seen = now

    # ------------------------------------------------------------------ ends

    def on_call_end(self, call_id: str, now: float,
                    reason: EndReason = EndReason.HANGUP) -> Decision:
        """The user's call is over (any reason): release its channel, count it. Idempotent:
        a second end, or the end of a call that never got a channel, releases nothing.
        A restart (durations unknown) and a call the edge did not place (``NOT_PLACED``)
        release without counting: no short call, no talk time."""
        self._check_time(now)
        with self._lock:
            call = self.state.calls.get(call_id)
            if call is None:
                return self._unknown(call_id, "call_end")
            return self._release(call, now, reason, count=reason not in (
                EndReason.RESTART, EndReason.NOT_PLACED))

    def _release(self, call: ActiveCall, now: float, reason: EndReason, *,
                 count: bool) -> Decision:
        cfg = self.config.limits
        answered = call.answered_at is not None
        talk = max(0.0, now - call.answered_at) if call.answered_at is not None else 0.0
        if answered:
            duration = talk
        elif cfg.short_calls.unanswered_duration == "setup":
            duration = max(0.0, now - call.acquired_at)
        else:
            duration = 0.0
        short = count and call.short_calls and duration < cfg.short_calls.max_duration_s
        day = self.day(call.acquired_at)
        recording: list[RecordingCommand] = []
        if call.recording == "on":
            recording.append(RecordingCommand(RecordingAction.STOP, call.call_id))
        self._emit("released", f"rel:{call.call_id}", now, call_id=call.call_id, day=day,
                   short=short, talk_s=talk if count else 0.0, reason=reason.value)
        self._allowed.pop(call.call_id, None)
        self._automated.discard(call.call_id)
        self._last_end[call.user_id] = now
        warnings: list[PolicyWarning] = []
        counters = [CounterBump("channels", call.user_id, -1, self.state.held(call.user_id))]
        if short:
            counters.append(CounterBump("short_calls", f"{call.user_id}:{day}", 1,
                                        self.state.short_user_day[(call.user_id, day)]))
            warnings += self._short_call_breach(call, day, now)
        if count and call.fair_use and talk > 0:
            warnings += self._fair_use(call, day, now)
        if count and call.trial and talk > 0:
            counters.append(CounterBump("trial_seconds", call.user_id, talk,
                                        self.state.trial_seconds.get(call.user_id, 0.0)))
        point = "recovery" if reason is EndReason.RESTART else "call_end"
        return self._d(Action.NONE, "R-CALLS-1", point, call_id=call.call_id,
                       user_id=call.user_id, account_id=call.account_id,
                       recording=tuple(recording), counters=tuple(counters),
                       warnings=tuple(warnings),
                       details=(("reason", reason.value), ("answered", str(answered)),
                                ("duration_s", f"{duration:.3f}"), ("short", str(short))))

    def _short_call_breach(self, call: ActiveCall, day: str, now: float) -> list[PolicyWarning]:
        cfg = self.config.limits.short_calls
        total = self.state.short_account_day.get((call.account_id, day), 0)
        average = total / max(1, call.seats)
        breach = average > cfg.threshold if cfg.comparator == ">" else average >= cfg.threshold
        month = day[:7]
        days = self.state.breach_days.get((call.account_id, month), set())
        if not breach or day in days:
            return []
        self._emit("breach_day", f"breach:{call.account_id}:{day}", now,
                   account_id=call.account_id, day=day, month=month)
        n = len(self.state.breach_days[(call.account_id, month)])
        out = [self._w("R-LIMIT-1", f"{day}: {average:.1f} short calls per user "
                       f"(limit {cfg.threshold:g}); breach day {n} this month", Audience.ADMIN)]
        if n >= cfg.suspend_at_days and self.state.suspended_until.get(
                call.account_id, 0.0) <= now:
            # R-LIMIT-3 (Article 8.1): the unlimited plan is suspended for 7 calendar days of the
            # account's time zone, and the client is told; calls go on, charged
            zone = self._account_zone.get(call.account_id, "")
            until = self.calendar_days_later(now, cfg.suspension_days, zone)
            self._emit("suspended", f"susp:{call.account_id}:{month}:{n}", now,
                       account_id=call.account_id, until=until)
            out.append(self._w("R-LIMIT-3", f"{n} breach days this month: the unlimited plan "
                               f"is suspended for {cfg.suspension_days} days, until "
                               f"{self._local_text(until, zone)}; calls go on and are charged "
                               f"(emergency calls unaffected)", Audience.ADMIN))
            out.append(self._w("R-LIMIT-3", self._text("short-call-suspension")))
        elif n in cfg.warn_at_days:
            out.append(self._w("R-LIMIT-1", f"warning {n} of {cfg.suspend_at_days - 1}: at "
                               f"{cfg.suspend_at_days} breach days the unlimited plan is "
                               f"suspended for {cfg.suspension_days} days (calls charged)",
                               Audience.ADMIN))
        return out

    def fair_use_rate(self, account_id: str, seats: int, now: float) -> float:
        """Average share of time the account's users spent in outbound conversation over the
        window (R-LIMIT-2): talk seconds / (seats x window)."""
        cfg = self.config.limits.fair_use
        today = self._local(now).date()  # calendar arithmetic: DST days are 23 or 25 hours
        if self._window[0] != today:
            self._window = (today, tuple((today - timedelta(days=i)).isoformat()
                                         for i in range(cfg.window_days)))
        talk = sum(self.state.talk_account_day.get((account_id, d), 0.0)
                   for d in self._window[1])
        return talk / (max(1, seats) * cfg.window_days * DAY)

    def _fair_use(self, call: ActiveCall, day: str, now: float) -> list[PolicyWarning]:
        cfg = self.config.limits.fair_use
        rate = self.fair_use_rate(call.account_id, call.seats, now)
        limit = cfg.baseline_rate * cfg.multiple
        if rate >= limit:
            return [self._w("R-LIMIT-2", f"usage rate {rate:.1%} is not below {cfg.multiple:g}x "
                            f"the baseline ({limit:.1%}): fair use exceeded", Audience.ADMIN)]
        if rate >= cfg.warn_fraction * limit:
            return [self._w("R-LIMIT-2", f"usage rate {rate:.1%} is near the fair-use limit "
                            f"({limit:.1%})", Audience.ADMIN)]
        return []

    def sweep(self, now: float) -> list[Decision]:
        """Release calls with no sign of life for [calls] stale_after_s (a peer that vanished
        and a lost BYE): the channel is never leaked."""
        self._check_time(now)
        with self._lock:
            limit = self.config.calls.stale_after_s
            stale = [c for c in self.state.calls.values() if now - c.last_seen > limit]
            return [self._release(c, now, EndReason.STALE, count=True)
                    for c in sorted(stale, key=lambda c: c.call_id)]

    def recover(self, now: float) -> list[Decision]:
        """After a restart from the store: every call still holding a channel died with the
        process; release them all. Their durations are unknown, so they are not counted."""
        self._check_time(now)
        with self._lock:
            calls = sorted(self.state.calls.values(), key=lambda c: c.call_id)
            return [self._release(c, now, EndReason.RESTART, count=False) for c in calls]

    def lift_suspension(self, account_id: str, now: float) -> Decision:
        """An admin lifts a short-call suspension early."""
        with self._lock:
            self._emit("suspension_lifted", f"lift:{account_id}:{now!r}", now,
                       account_id=account_id)
            return self._d(Action.NONE, "R-LIMIT-1", "admin", account_id=account_id,
                           details=(("suspension", "lifted"),))

    # ------------------------------------------------------------------ recordings

    def on_recording_option_change(self, change: RecordingOptionChange) -> Decision:
        """Recording switched on/off for a user or account. Off: recordings in progress stop,
        stored ones are deleted after the export window (R-REC-4); on again cancels that."""
        self._check_time(change.now)
        with self._lock:
            scope = (f"user:{change.user_id}" if change.user_id is not None
                     else f"account:{change.account_id}")
            self._emit("recording_option", f"recopt:{scope}:{change.now!r}:{change.enabled}",
                       change.now, scope=scope, enabled=change.enabled)
            commands: list[RecordingCommand] = []
            warnings: list[PolicyWarning] = []
            if not change.enabled:
                for call in self.state.calls.values():
                    if self._in_scope(call.user_id, call.account_id, scope):
                        call.recording_on = False
                        if call.recording == "on":
                            commands.append(RecordingCommand(RecordingAction.STOP, call.call_id))
                        if call.recording in ("on", "pending"):
                            call.recording = "stopped"  # a notice still playing starts nothing
                days = self.config.recording.export_window_days
                deadline = self._local(change.now + days * DAY).strftime("%Y-%m-%d %H:%M %Z")
                warnings.append(self._w("R-REC-4", f"recording is off: existing recordings will "
                                        f"be deleted on {deadline}; download them before",
                                        Audience.ADMIN))
            return self._d(Action.NONE, "R-REC-4", "recording_option",
                           user_id=change.user_id, account_id=change.account_id,
                           recording=tuple(commands), warnings=tuple(warnings),
                           details=(("scope", scope), ("enabled", str(change.enabled)),
                                    *((("why", change.why),) if change.why else ())))

    @staticmethod
    def _in_scope(user_id: str, account_id: str, scope: str) -> bool:
        return scope in (f"user:{user_id}", f"account:{account_id}")

    def _add_months(self, t: float, months: int) -> float:
        d = self._local(t)
        m = d.month - 1 + months
        year, month = d.year + m // 12, m % 12 + 1
        for day in range(d.day, 27, -1):
            try:
                return d.replace(year=year, month=month, day=day).timestamp()
            except ValueError:
                continue
        return d.replace(year=year, month=month, day=min(d.day, 28)).timestamp()

    def purge_due(self, now: float) -> list[Decision]:
        """The purge job: recordings past retention (R-REC-3) or past the export window after
        the option went off (R-REC-4) are deleted; old counters are forgotten. (The edge
        deletes each file first and tells the guard after: ``recordings_due`` then
        ``recording_purged`` or ``recording_delete_failed``, then ``prune``.)"""
        with self._lock:
            out = [self.recording_purged(rid, rule, now)
                   for rid, rule in self.recordings_due(now)]
            self._prune(now)
            return out

    def recordings_due(self, now: float) -> list[tuple[str, str]]:
        """(recording id, rule) of every recording to delete now; changes nothing."""
        self._check_time(now)
        with self._lock:
            out: list[tuple[str, str]] = []
            window = self.config.recording.export_window_days * DAY
            for rec in sorted(self.state.recordings.values(), key=lambda r: r.recording_id):
                off = [t for s, t in self.state.option_off.items()
                       if self._in_scope(rec.user_id, rec.account_id, s)
                       and rec.started_at <= t and t + window <= now]
                if off:
                    out.append((rec.recording_id, "R-REC-4"))
                elif rec.ended_at is not None and self.retention_over(rec.ended_at, now):
                    out.append((rec.recording_id, "R-REC-3"))
            return out

    def retention_over(self, ended_at: float, now: float) -> bool:
        """Whether a recording that ended at ``ended_at`` is past retention (R-REC-3)."""
        return self._add_months(ended_at, self.config.recording.retention_months) <= now

    def recording_purged(self, recording_id: str, rule: str, now: float) -> Decision:
        """The recording's file is gone (and its removal on disk): forget it."""
        self._check_time(now)
        with self._lock:
            rec = self.state.recordings.get(recording_id)
            if rec is None:  # a retried delete the ledger had already forgotten
                return self._d(Action.NONE, rule, "purge", details=(
                    ("recording", recording_id), ("ledger", "no entry")))
            self._emit("recording_deleted", f"recdel:{recording_id}", now,
                       recording_id=recording_id, reason=rule)
            return self._d(Action.NONE, rule, "purge", call_id=rec.call_id,
                           user_id=rec.user_id, account_id=rec.account_id,
                           recording=(RecordingCommand(RecordingAction.DELETE, recording_id),))

    def recording_delete_failed(self, recording_id: str, rule: str, error: str,
                                now: float) -> Decision:
        """Deleting a recording's file failed: it stays in the ledger and the next purge
        tries again; each failure is a decision of its own (audited)."""
        self._check_time(now)
        with self._lock:
            rec = self.state.recordings.get(recording_id)
            return self._d(Action.NONE, rule, "purge_failed",
                           call_id=rec.call_id if rec else None,
                           user_id=rec.user_id if rec else None,
                           account_id=rec.account_id if rec else None,
                           details=(("recording", recording_id), ("error", error),
                                    ("retry", "next purge run")))

    def orphan_recording_purged(self, file_name: str, last_written: float,
                                now: float) -> Decision:
        """A recording file the ledger does not know, written more than the retention period
        ago, was deleted (R-REC-3: nothing is kept longer, known or not)."""
        self._check_time(now)
        return self._d(Action.NONE, "R-REC-3", "purge", details=(
            ("orphan_file", file_name),
            ("last_written", self._local(last_written).strftime("%Y-%m-%d %H:%M %Z"))))

    def prune(self, now: float) -> None:
        """Forget counters no rule looks at any more (part of the purge job)."""
        self._check_time(now)
        with self._lock:
            self._prune(now)

    def _prune(self, now: float) -> None:
        keep_days = max(self.config.limits.fair_use.window_days, 1) + 1
        before_day = (self._local(now).date() - timedelta(days=keep_days)).isoformat()
        before_month = self.month(now)
        ended_before = now - self.config.calls.ended_keep_s
        if not any(k[1] < before_day for k in self.state.short_account_day) and not any(
                k[1] < before_month for k in self.state.contacts) and not any(
                t < ended_before for t in self.state.ended.values()):
            return
        self._emit("pruned", f"prune:{now!r}", now, before_day=before_day,
                   before_month=before_month, ended_before=ended_before)

    # ------------------------------------------------------------------ queries

    def held(self, user_id: str) -> int:
        with self._lock:
            return self.state.held(user_id)
