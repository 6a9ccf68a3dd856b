"""Fixtures for the policy tests: the shipped configuration and a small factory of facts."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from softphone.policy import (
    Account,
    CallAttempt,
    CivicAddress,
    DeviceClass,
    Direction,
    Location,
    MediaLine,
    PolicyConfig,
    PolicyGuard,
    User,
    load,
)

ROOT = Path(__file__).resolve().parents[2]
POLICY_TOML = ROOT / "configs" / "policy.toml"
T0 = 1_768_989_600.0  # 2026-01-21 10:00 UTC (11:00 in Paris), a Wednesday
PARIS = Location("FR", civic=CivicAddress("FR", a1="Île-de-France", a3="Paris",
                                          rd="Rue de Rivoli", hno="1", pc="75001", flr="2"))


class Facts:
    """Builds accounts, users and call attempts with sensible defaults."""

    def __init__(self) -> None:
        self._n = 0

    def account(self, **kw: Any) -> Account:
        base: dict[str, Any] = {"account_id": "acct-1", "country": "FR", "seats": 1}
        base.update(kw)
        return Account(**base)

    def user(self, user_id: str = "alice", account: Account | None = None, **kw: Any) -> User:
        acct = account if account is not None else self.account()
        base: dict[str, Any] = {"numbers": ("+33187654321",), "location": PARIS}
        base.update(kw)
        return User(user_id, acct, **base)

    def call(self, user: User, dialed: str = "0145678901", *, call_id: str | None = None,
             now: float = T0, direction: Direction = Direction.OUTBOUND,
             presented: str | None = None, device: str = "desk",
             media: tuple[MediaLine, ...] = (), **kw: Any) -> CallAttempt:
        self._n += 1
        return CallAttempt(
            call_id=call_id or f"call-{self._n}", user=user, device=device,
            device_class=DeviceClass.SIP, direction=direction, dialed=dialed,
            presented=presented if presented is not None else (user.numbers[0] if user.numbers
                                                                else "+33187654321"),
            now=now, media=media, **kw)

    @staticmethod
    def with_account(user: User, **kw: Any) -> User:
        return replace(user, account=replace(user.account, **kw))


@pytest.fixture(scope="session")
def config() -> PolicyConfig:
    return load(POLICY_TOML)


@pytest.fixture()
def guard(config: PolicyConfig) -> PolicyGuard:
    return PolicyGuard(config)


@pytest.fixture()
def facts() -> Facts:
    return Facts()


@pytest.fixture()
def policy_text() -> str:
    return POLICY_TOML.read_text(encoding="utf-8")


@pytest.fixture()
def thread_switch_every_microsecond() -> Iterator[None]:
    """Make the interpreter switch threads about every microsecond instead of every 5 ms, so
    that two threads racing through the guard really interleave inside a decision (with the
    default interval one decision, a few hundred microseconds, runs whole in one time slice
    and a race test passes even with the guard's lock removed)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)
