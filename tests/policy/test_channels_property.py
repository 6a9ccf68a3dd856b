"""Race-freedom and no leaks, as a property: random interleavings of attempts, forks, answers,
ends (twice, or for calls that never got a channel), stale sweeps and crashes with a restart
from the real SQLite store, for several users with several devices and entitlements.

Invariants after every step: no user holds more non-emergency channels than entitled; the
guard's channels are exactly the calls the model believes are up; after a restart the ledger
equals what was committed. At the end, ending everything leaves no channel held.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)
from softphone.policy import (
    Account,
    CallAttempt,
    CivicAddress,
    DeviceClass,
    Direction,
    EndReason,
    Location,
    PolicyGuard,
    User,
    load,
)

from softphone.ledgerstore import CounterStore, open_guard

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load(ROOT / "configs" / "policy.toml")
T0 = 1_768_989_600.0
ACCOUNT = Account("acct", "FR", seats=3, emergency_activated=True)
PARIS = Location("FR", civic=CivicAddress("FR", a3="Paris"))
USERS = {
    "alice": User("alice", ACCOUNT, location=PARIS, numbers=("+33187654321",)),
    "bob": User("bob", ACCOUNT, extra_channels=1, location=PARIS, numbers=("+33187654322",)),
    "carol": User("carol", ACCOUNT, extra_channels=2, location=PARIS, numbers=("+33187654323",)),
}
DEVICES = ("desk", "browser", "mobile")
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


class Channels(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # tmpfs when there is one: the property is about logic, not about disk fsync latency
        self.dir = tempfile.mkdtemp(prefix="policy-prop-", dir=SCRATCH)
        self.store = CounterStore(self.dir)
        self.guard = PolicyGuard(CONFIG, self.store.load())
        self.now = T0
        self.n = 0
        self.up: dict[str, tuple[str, bool]] = {}  # call id -> (user, emergency)
        self.refused: list[str] = []
        self.ended: list[str] = []

    def teardown(self) -> None:
        try:
            for cid in list(self.up):
                self.guard.on_call_end(cid, self.now + 1)
            assert all(self.guard.held(u) == 0 for u in USERS), "channel leaked"
            assert self.guard.state.calls == {}
            self.store.commit(self.guard)
            again = CounterStore(self.dir)
            assert again.load().persistent_view() == self.guard.state.persistent_view()
            again.close()
        finally:
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def tick(self, dt: float) -> None:
        self.now += dt
        # every live call shows a sign of life unless the step says otherwise
        for cid in self.up:
            self.guard.on_keepalive(cid, self.now)

    @rule(user=st.sampled_from(sorted(USERS)), device=st.sampled_from(DEVICES),
          kind=st.sampled_from(["out", "out", "in", "emergency"]),
          dt=st.floats(0, 30, allow_nan=False))
    def attempt(self, user: str, device: str, kind: str, dt: float) -> None:
        self.tick(dt)
        self.n += 1
        cid = f"c{self.n}"
        u = USERS[user]
        direction = Direction.INBOUND if kind == "in" else Direction.OUTBOUND
        dialed = {"out": f"014567{self.n % 10000:04d}", "in": u.numbers[0],
                  "emergency": "112"}[kind]
        presented = "+33145678901" if kind == "in" else u.numbers[0]
        d = self.guard.on_call_attempt(CallAttempt(cid, u, device, DeviceClass.SIP, direction,
                                                   dialed, presented, self.now))
        busy = sum(1 for (owner, _e) in self.up.values() if owner == user)
        if kind == "emergency":
            assert d.allowed, "an emergency call is never refused for being busy"
        else:
            assert d.allowed == (busy < u.channel_limit), (d, busy)
        if d.allowed:
            self.up[cid] = (user, kind == "emergency")
        else:
            self.refused.append(cid)

    @precondition(lambda self: bool(self.up))
    @rule(data=st.data())
    def fork(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(sorted(self.up)))
        user, emergency = self.up[cid]
        d = self.guard.on_call_attempt(CallAttempt(
            cid, USERS[user], "browser", DeviceClass.WEBRTC, Direction.OUTBOUND,
            "112" if emergency else "0145678901", USERS[user].numbers[0], self.now))
        assert d.allowed  # same call, same channel

    @precondition(lambda self: bool(self.up))
    @rule(data=st.data(), dt=st.floats(0, 20, allow_nan=False))
    def answer(self, data: st.DataObject, dt: float) -> None:
        self.tick(dt)
        self.guard.on_answer(data.draw(st.sampled_from(sorted(self.up))), self.now)

    @precondition(lambda self: bool(self.up or self.refused or self.ended))
    @rule(data=st.data(), dt=st.floats(0, 200, allow_nan=False),
          reason=st.sampled_from(list(EndReason)))
    def end(self, data: st.DataObject, dt: float, reason: EndReason) -> None:
        self.tick(dt)
        cid = data.draw(st.sampled_from(sorted(self.up) + self.refused + self.ended))
        self.guard.on_call_end(cid, self.now, reason)
        if cid in self.up:
            del self.up[cid]
            self.ended.append(cid)

    @precondition(lambda self: bool(self.up))
    @rule(data=st.data())
    def peer_vanishes(self, data: st.DataObject) -> None:
        """No keepalive for longer than the stale limit: the sweep must release it."""
        cid = data.draw(st.sampled_from(sorted(self.up)))
        self.now += CONFIG.calls.stale_after_s + 1
        for other in self.up:
            if other != cid:
                self.guard.on_keepalive(other, self.now)
        released = self.guard.sweep(self.now)
        assert [d.call_id for d in released] == [cid]
        del self.up[cid]
        self.ended.append(cid)

    @rule()
    def commit(self) -> None:
        self.store.commit(self.guard)

    @rule(commit_first=st.booleans())
    def crash_and_restart(self, commit_first: bool) -> None:
        if commit_first:
            self.store.commit(self.guard)
        committed = self.store.load().persistent_view()
        self.store.close()  # the process dies; what was not committed is lost
        self.now += 5
        self.guard, self.store, recovered = open_guard(CONFIG, self.dir, self.now)
        # every call the restarted guard found up is released and reported
        assert all(d.point == "recovery" for d in recovered)
        assert sorted(d.call_id for d in recovered) == committed["calls"]
        self.ended.extend(self.up)
        self.up.clear()

    @invariant()
    def within_entitlement(self) -> None:
        for name, user in USERS.items():
            calls = self.guard.state.held_calls(name)
            ordinary = [c for c in calls if not c.emergency]
            assert len(ordinary) <= user.channel_limit
        assert sorted(self.guard.state.calls) == sorted(self.up)


Channels.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


@pytest.mark.timeout(600)
class TestChannels(Channels.TestCase):  # type: ignore[name-defined,misc]
    pass
