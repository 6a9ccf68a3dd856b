"""RTCP (RFC 3550 6): compound build/parse, malformed input, A.1/A.3/A.8 statistics, RTT."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.media.rtcp import (
    Bye,
    ReceiverReport,
    ReceptionStats,
    ReportBlock,
    RtcpError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    build_rtcp,
    ntp_from_unix,
    ntp_middle32,
    parse_rtcp,
    rtt,
)

u32 = st.integers(0, 0xFFFFFFFF)
blocks = st.builds(ReportBlock, u32, st.integers(0, 255), st.integers(-0x800000, 0x7FFFFF), u32,
                   u32, u32, u32)
block_lists = st.lists(blocks, max_size=4).map(tuple)
rtcp_packets = st.one_of(
    st.builds(SenderReport, u32, st.integers(0, 2**64 - 1), u32, u32, u32, block_lists),
    st.builds(ReceiverReport, u32, block_lists),
    st.builds(SourceDescription, st.lists(st.builds(
        SdesChunk, u32, st.lists(st.tuples(st.integers(1, 8), st.binary(max_size=30)),
                                 max_size=3).map(tuple)), min_size=1, max_size=3).map(tuple)),
    st.builds(Bye, st.lists(u32, max_size=3).map(tuple), st.binary(max_size=40)),
    st.builds(UnknownRtcp, st.integers(204, 210), st.integers(0, 31),
              st.binary(max_size=16).map(lambda b: b[: len(b) // 4 * 4])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_compound_round_trip(packets: list) -> None:  # type: ignore[type-arg]
    assert parse_rtcp(build_rtcp(packets)) == packets


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_parse_or_raise_rtcp_error(data: bytes) -> None:
    try:
        parse_rtcp(data)
    except RtcpError:
        pass


@pytest.mark.parametrize("raw", [
    b"\x81\xc9",  # short
    b"\x41\xc9\x00\x01" + bytes(4),  # version 1
    b"\x81\xc9\x00\x07" + bytes(8),  # length runs past the end
    b"\x81\xc9\x00\x01" + bytes(4),  # RR announces a block it does not carry
    b"\x80\xc8\x00\x01" + bytes(4),  # SR without sender info
    b"\x81\xca\x00\x02" + bytes(4) + b"\x01\x09abc",  # SDES item runs past
])
def test_malformed(raw: bytes) -> None:
    with pytest.raises(RtcpError):
        parse_rtcp(raw)


def test_negative_cumulative_loss_and_clamping() -> None:
    b = ReportBlock(1, 0, -5, 0, 0, 0, 0)
    rr = parse_rtcp(build_rtcp([ReceiverReport(2, (b,))]))[0]
    assert isinstance(rr, ReceiverReport) and rr.reports[0].cumulative_lost == -5
    big = ReportBlock(1, 0, 10**9, 0, 0, 0, 0)
    rr = parse_rtcp(build_rtcp([ReceiverReport(2, (big,))]))[0]
    assert isinstance(rr, ReceiverReport) and rr.reports[0].cumulative_lost == 0x7FFFFF


def test_rtt_from_lsr_and_dlsr() -> None:
    t0 = 1_800_000_000.25
    sr_ntp = ntp_from_unix(t0)
    # the peer holds our SR for 0.5 s, its report arrives 0.62 s after we sent the SR
    block = ReportBlock(7, 0, 0, 0, 0, ntp_middle32(sr_ntp), int(0.5 * 65536))
    value = rtt(block, ntp_from_unix(t0 + 0.62))
    assert value is not None and abs(value - 0.12) < 1e-3
    assert rtt(ReportBlock(7, 0, 0, 0, 0, 0, 0), sr_ntp) is None


def _feed(stats: ReceptionStats, seqs: list[int], t0: float = 0.0) -> None:
    for i, seq in enumerate(seqs):
        stats.update(0x1234, seq & 0xFFFF, 160 * seq & 0xFFFFFFFF, t0 + 0.02 * i, 172)


def test_loss_and_fraction_per_interval() -> None:
    s = ReceptionStats(8000)
    _feed(s, list(range(100)))
    b = s.report_block(2.0)
    assert b is not None and (b.fraction_lost, b.cumulative_lost) == (0, 0)
    assert b.highest_seq == 99
    # next interval: 100..199 with every 4th lost -> 25 % = 64/256
    _feed(s, [x for x in range(100, 200) if x % 4], t0=2.0)
    b = s.report_block(4.0)
    assert b is not None and b.fraction_lost == 64 and b.cumulative_lost == 25
    # two duplicates and one new packet: loss goes down by 2 (RFC 3550 A.3), fraction 0
    _feed(s, [199, 199, 200], t0=4.0)
    b = s.report_block(5.0)
    assert b is not None and b.fraction_lost == 0 and b.cumulative_lost == 23


def test_sequence_wrap_counts_cycles() -> None:
    s = ReceptionStats(8000)
    _feed(s, list(range(65530, 65536)) + list(range(0, 10)))
    assert s.extended_max == 65536 + 9 and s.lost == 0 and s.received == 16


def test_restart_after_big_jump_needs_two_sequential_packets() -> None:
    s = ReceptionStats(8000)
    _feed(s, list(range(10)))
    s.update(0x1234, 30000, 0, 1.0)
    assert s.extended_max == 9  # one jump alone is ignored
    s.update(0x1234, 30001, 160, 1.02)
    assert s.extended_max == 30001 and s.lost == 0


def test_jitter_of_a_steady_stream_is_zero_and_grows_with_delay_variation() -> None:
    s = ReceptionStats(8000)
    _feed(s, list(range(200)))
    assert s.jitter == 0
    j = ReceptionStats(8000)
    for i in range(400):  # alternate +-5 ms around the nominal arrival
        j.update(9, i, 160 * i, 0.02 * i + (0.005 if i % 2 else 0.0))
    # |D| = 5 ms = 40 samples every packet -> the estimator converges to 40
    assert 38 <= j.jitter <= 40 and 4.7 < j.jitter_ms <= 5.0


def test_report_block_carries_lsr_and_dlsr() -> None:
    s = ReceptionStats(8000)
    _feed(s, list(range(5)))
    sr = SenderReport(0x1234, ntp_from_unix(1_800_000_000.0), 0, 5, 800)
    s.on_sender_report(sr, arrival=10.0)
    b = s.report_block(now=10.25)
    assert b is not None
    assert b.lsr == ntp_middle32(sr.ntp_timestamp) and b.dlsr == 16384


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF), st.lists(st.sampled_from(["ok", "lost", "dup", "swap"]),
                                        min_size=5, max_size=300))
def test_loss_accounting_matches_a_model(start: int, fates: list[str]) -> None:
    """Small loss, duplication and reordering (never past MAX_MISORDER), across the 16-bit
    wrap: lost == highest - first + 1 - packets received, as RFC 3550 A.3 defines it."""
    sent = [start, start + 1]  # two in order: the probation RFC 3550 A.1 asks for
    for i, fate in enumerate(fates):
        seq = start + 2 + i
        if fate == "ok":
            sent.append(seq)
        elif fate == "dup":
            sent += [seq, seq]
        elif fate == "swap" and len(sent) > 2:
            sent.insert(len(sent) - 1, seq)  # arrives before the previous packet
        # "lost": nothing arrives
    s = ReceptionStats(8000)
    for k, ext in enumerate(sent):
        s.update(77, ext & 0xFFFF, (160 * ext) & 0xFFFFFFFF, 0.02 * k)
    assert s.extended_max - s.base_seq == max(sent) - start
    assert s.lost == (max(sent) - start + 1) - len(sent)
