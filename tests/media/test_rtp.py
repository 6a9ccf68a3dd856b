"""RTP header parse/build (RFC 3550 5.1): round trips, malformed input, in-place rewrite."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.media.rtp import (
    RtpError,
    RtpExtension,
    RtpPacket,
    build_header,
    build_rtp,
    is_rtcp,
    parse_rtp,
    rewrite_header,
)

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none() | st.builds(
        RtpExtension, st.integers(0, 0xFFFF),
        st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4])),
    padding=st.sampled_from([0, 1, 4, 17]),
)


@settings(max_examples=300, deadline=None)
@given(packets)
def test_round_trip(packet: RtpPacket) -> None:
    assert parse_rtp(build_rtp(packet)) == packet


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    try:
        p = parse_rtp(data)
    except RtpError:
        return
    assert 0 <= p.payload_type <= 127 and len(p.payload) <= len(data) - 12


def test_known_packet_bytes() -> None:
    raw = bytes.fromhex("80 88 1234 00000a00 deadbeef".replace(" ", "")) + b"\xd5" * 160
    p = parse_rtp(raw)
    assert (p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc) == (8, True, 0x1234, 2560,
                                                                           0xDEADBEEF)
    assert p.payload == b"\xd5" * 160 and build_rtp(p) == raw
    assert build_header(8, 0x1234, 2560, 0xDEADBEEF, True) == raw[:12]


@pytest.mark.parametrize("raw,why", [
    (b"\x80\x08\x00", "shorter"),
    (b"\x40" + bytes(11), "version"),
    (b"\x83" + bytes(11) + bytes(8), "CSRC"),
    (b"\x90" + bytes(11) + b"\x00\x00", "extension header"),
    (b"\x90" + bytes(11) + b"\x00\x00\x00\x05" + bytes(4), "extension of 5 words"),
    (b"\xa0" + bytes(11) + b"abc\x00", "padding"),
    (b"\xa0" + bytes(11) + b"ab\x09", "padding"),
])
def test_malformed_packets_name_the_problem(raw: bytes, why: str) -> None:
    with pytest.raises(RtpError, match=why):
        parse_rtp(raw)


def test_build_refuses_out_of_range_fields() -> None:
    with pytest.raises(RtpError):
        build_rtp(RtpPacket(128, 0, 0, 0))
    with pytest.raises(RtpError):
        build_rtp(RtpPacket(0, 70000, 0, 0))
    with pytest.raises(RtpError):
        build_rtp(RtpPacket(0, 0, 0, 0, extension=RtpExtension(1, b"abc")))


def test_rewrite_keeps_marker_payload_and_extension() -> None:
    orig = RtpPacket(0, 1, 2, 3, b"payload!", marker=True, extension=RtpExtension(0xBEDE, b"1234"))
    buf = bytearray(build_rtp(orig))
    rewrite_header(buf, 8, 0x10005, 0x1_0000_0007, 99)  # values wrap to 16/32 bits
    p = parse_rtp(buf)
    assert (p.payload_type, p.sequence, p.timestamp, p.ssrc, p.marker) == (8, 5, 7, 99, True)
    assert p.payload == b"payload!" and p.extension == orig.extension


def test_rtcp_demultiplexing() -> None:
    assert is_rtcp(struct.pack("!BB", 0x80, 200))
    assert not is_rtcp(build_header(8, 1, 1, 1))
    assert not is_rtcp(b"\x80")
