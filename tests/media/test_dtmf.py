"""RFC 4733 telephone-events: payload round trip, sender packet train, receiver de-duplication."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.media.dtmf import (
    DtmfError,
    DtmfKind,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    digit_to_event,
    event_to_digit,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 0xFFFF))
def test_payload_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    te = TelephoneEvent(event, end, volume, duration)
    assert TelephoneEvent.decode(te.encode()) == te


def test_wire_format() -> None:
    assert TelephoneEvent(11, True, 10, 800).encode() == bytes([11, 0x80 | 10, 0x03, 0x20])
    with pytest.raises(DtmfError):
        TelephoneEvent.decode(b"\x01\x02")
    with pytest.raises(DtmfError):
        TelephoneEvent(1, False, 64, 0).encode()


def test_digit_mapping() -> None:
    assert [digit_to_event(d) for d in "09*#aD"] == [0, 9, 10, 11, 12, 15]
    assert event_to_digit(11) == "#" and event_to_digit(16) == "flash"
    with pytest.raises(DtmfError):
        digit_to_event("x")


def test_sender_train_marker_durations_and_three_end_packets() -> None:
    pkts = DtmfSender(8000, 20).packets("5", timestamp=4000, duration_ms=100)
    events = [TelephoneEvent.decode(p.payload) for p in pkts]
    assert [p.marker for p in pkts] == [True] + [False] * (len(pkts) - 1)
    assert all(p.timestamp == 4000 for p in pkts)
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {5}


def test_sender_queues_digits_on_the_stream_timeline() -> None:
    s = DtmfSender(8000, 20)
    s.start("1", 40)
    s.start("2", 40)
    stamps = []
    ts = 1000
    while s.active:
        p = s.next_packet(ts)
        assert p is not None
        stamps.append((TelephoneEvent.decode(p.payload).event, p.timestamp))
        ts += 160
    # digit 1: 160 (+3 end) = 4 packets at ts 1000; digit 2 starts at the 5th tick
    assert stamps[:4] == [(1, 1000)] * 4 and stamps[4:] == [(2, 1640)] * 4


def test_receiver_reports_start_once_and_end_once() -> None:
    r = DtmfReceiver()
    seen = []
    for p in DtmfSender().packets("#", 8000, 100):
        seen += r.receive(p.payload, p.timestamp)
    assert [(e.kind, e.digit) for e in seen] == [(DtmfKind.START, "#"), (DtmfKind.END, "#")]
    assert seen[1].duration == 800 and r.duplicates == 2


def test_receiver_survives_lost_start_and_end_packets() -> None:
    r = DtmfReceiver()
    train1 = DtmfSender().packets("1", 1000, 100)
    train2 = DtmfSender().packets("2", 3000, 60)
    seen = []
    for p in train1[2:4]:  # start lost and every end packet lost
        seen += r.receive(p.payload, p.timestamp)
    for p in train2[-1:]:  # only the last end packet of the next digit
        seen += r.receive(p.payload, p.timestamp)
    for p in train1[-3:]:  # late end packets of digit 1: already closed, ignored
        seen += r.receive(p.payload, p.timestamp)
    assert [(e.kind.value, e.digit) for e in seen] == [
        ("start", "1"), ("end", "1"), ("start", "2"), ("end", "2")]
    assert r.receive(b"\x00", 5000) == [] and r.malformed == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("0123456789*#"), min_size=1, max_size=5),
       st.lists(st.integers(0, 2), min_size=60, max_size=60))
def test_lossy_duplicated_trains_give_each_digit_at_most_once(digits: list[str],
                                                              copies: list[int]) -> None:
    """Every packet is lost (0), delivered (1) or duplicated (2); order is kept."""
    sender = DtmfSender()
    stream = []
    ts = 1000
    for d in digits:
        stream += sender.packets(d, ts, 80)
        ts += 2000
    r = DtmfReceiver()
    events = []
    for p, n in zip(stream, copies * 2, strict=False):
        for _ in range(n):
            events += r.receive(p.payload, p.timestamp)
    starts = [(e.timestamp, e.digit) for e in events if e.kind is DtmfKind.START]
    ends = [(e.timestamp, e.digit) for e in events if e.kind is DtmfKind.END]
    assert len(starts) == len(set(starts)) and len(ends) == len(set(ends))
    assert set(ends) <= set(starts)
    # what surfaced is the sent sequence with lost digits left out, in order
    sent = [(1000 + 2000 * i, d) for i, d in enumerate(digits)]
    assert starts == [s for s in sent if s in starts]
    # every event but possibly the last is closed once the next one starts
    assert set(starts[:-1]) <= set(ends)
