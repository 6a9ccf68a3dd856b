"""The SIP legs behind the ``Leg`` interface: what hang-up puts on the wire (BYE to the device
that answered, with the caller's upstream credentials; CANCEL to the ones still ringing;
nothing twice), what a party that left itself gets (no BYE), hold as its re-INVITE said."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from softphone.edge.legs import Leg, LegState
from softphone.edge.sip_leg import CalleeLeg, CallerLeg, Fork
from softphone.sip.auth import DigestClient
from softphone.sip.core import Address
from softphone.sip.dialog import DialogState


class Wire:
    """Records what the legs ask of the SIP core."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []
        self.clock = lambda: 42.0

    def send_in_dialog(self, request: Any, dest: Address) -> None:
        self.sent.append((request.method, dest.host, request))

    def send_bye(self, dialog: Any, dest: Address, digest: DigestClient | None = None) -> None:
        if dialog is not None:
            self.sent.append(("BYE", dest.host, digest))

    def cancel_fork(self, fork: Fork, now: float) -> None:
        fork.final = -1
        self.sent.append(("CANCEL", fork.binding_source.host, now))


def fork(host: str, *, final: int = 0, answered: bool = False) -> Fork:
    return Fork(binding_source=Address("udp", host, 5060), request=None,  # type: ignore[arg-type]
                txn=None, dialog=object() if answered else None,  # type: ignore[arg-type]
                final=final)


def callee(wire: Wire, digest: DigestClient | None = None) -> tuple[CalleeLeg, list[Fork]]:
    leg = CalleeLeg(wire, None, digest)  # type: ignore[arg-type]  # no media needed here
    forks = [fork("10.0.0.1", final=486), fork("10.0.0.2", final=200, answered=True),
             fork("10.0.0.3")]
    leg.forks.extend(forks)
    return leg, forks


def test_hanging_up_the_callee_byes_the_winner_and_cancels_what_still_rings() -> None:
    wire = Wire()
    digest = DigestClient("alice-upstream", "secret")
    leg, forks = callee(wire, digest)
    assert leg.rung() == forks  # before an answer: every device rung
    leg.winner = forks[1]
    leg.answer()
    assert leg.rung() == [forks[1]] and leg.state is LegState.ANSWERED
    leg.hang_up("caller-bye")
    assert wire.sent == [("BYE", "10.0.0.2", digest), ("CANCEL", "10.0.0.3", 42.0)]
    assert leg.state is LegState.ENDED
    leg.hang_up("again")
    leg.left()
    assert len(wire.sent) == 2  # nothing twice


def test_a_callee_that_hung_up_itself_gets_no_bye_but_ringing_forks_are_cancelled() -> None:
    wire = Wire()
    leg, forks = callee(wire)
    leg.winner = forks[1]
    leg.left()
    assert wire.sent == [("CANCEL", "10.0.0.3", 42.0)]
    assert leg.state is LegState.ENDED


def test_stop_ringing_spares_the_winner() -> None:
    wire = Wire()
    leg, forks = callee(wire)
    forks[1].final = 0  # its 200 is being handled: the winner, final not yet recorded
    leg.winner = forks[1]
    leg.stop_ringing()
    assert wire.sent == [("CANCEL", "10.0.0.3", 42.0)]
    assert leg.state is LegState.SETUP


def test_the_caller_leg_byes_its_dialog_once_and_wakes_a_delayed_offer() -> None:
    wire = Wire()
    legs: list[CallerLeg] = []
    for transport in ("tcp", "wss"):
        leg = CallerLeg(wire, None, None, None,  # type: ignore[arg-type]
                        Address(transport, "192.0.2.7", 5060), "t1", None, None)
        leg.dialog = object()  # type: ignore[assignment]
        legs.append(leg)
    caller, browser = legs
    assert (caller.kind, browser.kind) == ("sip", "browser")
    party: Leg = caller  # the one interface of every party
    party.answer()
    party.hang_up("time-limit")
    party.hang_up("time-limit")
    assert wire.sent == [("BYE", "192.0.2.7", None)]
    assert caller.answered.is_set() and caller.state is LegState.ENDED
    browser.left()
    assert wire.sent == [("BYE", "192.0.2.7", None)] and browser.state is LegState.ENDED


def test_hold_follows_the_partys_reinvite() -> None:
    leg = CalleeLeg(Wire(), None)  # type: ignore[arg-type]
    held, resumed = SimpleNamespace(direction="recvonly"), SimpleNamespace(direction="sendrecv")
    leg.renegotiated(held)  # type: ignore[arg-type]
    assert leg.state is LegState.SETUP  # not answered yet: no hold
    leg.answer()
    leg.renegotiated(held)  # type: ignore[arg-type]
    assert leg.state is LegState.HELD and leg.neg is held
    leg.renegotiated(SimpleNamespace(direction="inactive"))  # type: ignore[arg-type]
    assert leg.state is LegState.HELD
    leg.renegotiated(resumed)  # type: ignore[arg-type]
    assert leg.state is LegState.ANSWERED and leg.neg is resumed


class FakeDialog:
    """What a leg asks of its dialog: its state, and a request made in it."""

    def __init__(self) -> None:
        self.state = DialogState.CONFIRMED

    def create_request(self, method: str, *, body: bytes = b"",
                       content_type: str = "") -> Any:
        return SimpleNamespace(method=method, body=body, content_type=content_type)


def test_a_key_for_a_browser_goes_as_sip_info_in_its_dialog() -> None:
    """A browser callee (its device answered over WebSocket) gets a key as SIP INFO
    application/dtmf-relay; before any device answered, or once the dialog is over, nothing
    is sent."""
    wire = Wire()
    leg = CalleeLeg(wire, SimpleNamespace(sessions={}))  # type: ignore[arg-type]
    web = fork("10.0.0.9", final=200)
    web.binding_source = Address("wss", "10.0.0.9", 443)
    leg.forks.append(web)
    assert leg.kind == "sip"  # no device answered yet: nothing to send it in
    leg.send_dtmf("7")
    assert wire.sent == []
    web.dialog = FakeDialog()  # type: ignore[assignment]
    leg.winner = web
    assert leg.kind == "browser"
    leg.send_dtmf("7")
    ((method, host, info),) = wire.sent
    assert (method, host, info.content_type) == ("INFO", "10.0.0.9", "application/dtmf-relay")
    assert info.body == b"Signal=7\r\nDuration=160\r\n"
    web.dialog.state = DialogState.TERMINATED
    leg.send_dtmf("8")
    assert len(wire.sent) == 1
