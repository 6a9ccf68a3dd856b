"""The call-level timers go through the scheduler the B2BUA is given: the trial cut-off
(R-LIMIT-7, ``max_duration_s``) runs on a fake scheduler, with no loop and no socket."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

from softphone.edge.b2bua import B2BUA
from softphone.edge.bindings import LocationService
from softphone.edge.call import Call, CallState
from softphone.edge.calllog import CallRecord
from softphone.edge.room import MediaSettings
from softphone.edge.sip_leg import CalleeLeg, CallerLeg
from softphone.media.ports import PortAllocator
from softphone.sip.core import Address, SipCore
from softphone.sip.message import SipRequest, parse_message

EDGE = Address("udp", "127.0.0.1", 5060)
PHONE = Address("udp", "127.0.0.1", 5070)


class Handle:
    def __init__(self, delay: float, fn: Callable[[], None]) -> None:
        self.delay, self.fn, self.cancelled = delay, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeTimers:
    def __init__(self) -> None:
        self.handles: list[Handle] = []

    def __call__(self, delay: float, fn: Callable[[], None]) -> Handle:
        handle = Handle(delay, fn)
        self.handles.append(handle)
        return handle

    def fire_all(self) -> None:
        for h in self.handles:
            if not h.cancelled:
                h.fn()


def invite(call_id: str) -> SipRequest:
    msg = parse_message(
        f"INVITE sip:1002@edge.example SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{call_id}\r\n"
        f"From: <sip:1001@edge.example>;tag=f-{call_id}\r\nTo: <sip:1002@edge.example>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".encode())
    assert isinstance(msg, SipRequest)
    return msg


def answered_call(b2bua: B2BUA, key: str) -> Call:
    media = b2bua._new_media(key)
    caller = CallerLeg(b2bua, media, invite(key),
                       None,  # type: ignore[arg-type]  # an answered call answers no more
                       PHONE, f"t-{key}", None, None)
    call = Call(key=key, caller="1001", callee="1002", a=caller, b=CalleeLeg(b2bua, media),
                media=media,
                record=CallRecord(call_id=key, started=0.0, caller="1001", callee="1002"),
                state=CallState.CONFIRMED)
    b2bua.calls[key] = call
    return call


def test_the_trial_cut_off_runs_on_the_injected_timers() -> None:
    timers = FakeTimers()
    b2bua = B2BUA(core=SipCore(local={"udp": EDGE}), flush=lambda: None,
                  location=LocationService(), allocator=PortAllocator(24600, 24700),
                  media_settings=MediaSettings(), codecs=(), users=lambda _u: True,
                  domain="edge.example", timers=timers)
    limited, hung_up = answered_call(b2bua, "k1"), answered_call(b2bua, "k2")
    b2bua._apply_answer_limits(limited, [SimpleNamespace(max_duration_s=90),  # type: ignore[list-item]
                                         SimpleNamespace(max_duration_s=None),
                                         SimpleNamespace(max_duration_s=30)])
    b2bua._apply_answer_limits(hung_up, [SimpleNamespace(max_duration_s=10)])  # type: ignore[list-item]
    assert [h.delay for h in timers.handles] == [30, 10]  # the shortest limit of the call
    b2bua._end(hung_up, "caller-bye", bye_b=True)  # ended first: its timer is cancelled
    assert timers.handles[1].cancelled
    timers.fire_all()
    assert limited.state is CallState.ENDED and limited.record.end_cause == "time-limit"
    assert hung_up.record.end_cause == "caller-bye"
    assert not b2bua.calls and b2bua.allocator.media_objects == 0
