"""SDP parse/build (RFC 8866) on bodies captured from real peers, malformed input, round trips."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from softphone.codecs.sdp import (
    Attribute,
    Bandwidth,
    Connection,
    MediaDescription,
    Origin,
    RtcpAttribute,
    RtpMap,
    SdpError,
    SessionDescription,
    Timing,
    parse_sdp,
)

SAMPLES = [
    "baresip_offer.sdp",
    "sipp_uac_offer.sdp",
    "pjsua2_offer.sdp",
    "chrome_webrtc_offer.sdp",
]


@pytest.mark.parametrize("name", SAMPLES)
def test_captured_bodies_round_trip_byte_for_byte(
    sdp_file: Callable[[str], bytes], name: str
) -> None:
    raw = sdp_file(name)
    sd = parse_sdp(raw)
    assert sd.to_bytes() == raw
    assert parse_sdp(sd.to_bytes()) == sd


def test_baresip_offer_accessors(sdp_file: Callable[[str], bytes]) -> None:
    sd = parse_sdp(sdp_file("baresip_offer.sdp"))
    assert sd.origin.session_id == 3349979377 and sd.origin.address == "127.0.0.1"
    assert sd.connection == Connection("IN", "IP4", "127.0.0.1")
    assert sd.attributes == [Attribute("tool", "baresip 1.0.0")]
    (m,) = sd.media
    assert (m.media, m.port, m.proto) == ("audio", 34188, "RTP/AVP")
    assert m.payload_types == [96, 8, 0, 101]
    maps = m.rtpmaps()
    assert maps[96] == RtpMap(96, "opus", 48000, 2)
    assert maps[8] == RtpMap(8, "PCMA", 8000, 1)
    assert m.fmtp(96) == "stereo=1;sprop-stereo=1"
    assert m.fmtp(101) == "0-15"
    assert m.ptime == 20
    assert m.get_attribute("minptime") == "20"
    assert m.direction == "sendrecv"
    assert sd.effective_direction(m) == "sendrecv"
    assert m.rtcp is None
    assert list(m.telephone_events()) == [101]
    # attributes we do not interpret stay, in order
    names = [a.name for a in m.attributes]
    assert names.index("label") < names.index("rtcp-rsize") < names.index("ssrc")


def test_pjsua2_offer_media_level_connection_and_rtcp(sdp_file: Callable[[str], bytes]) -> None:
    sd = parse_sdp(sdp_file("pjsua2_offer.sdp"))
    assert sd.connection is None
    assert sd.bandwidths == [Bandwidth("AS", 84)]
    (m,) = sd.media
    assert sd.connection_for(m) == Connection("IN", "IP4", "127.0.0.1")
    assert m.bandwidths == [Bandwidth("TIAS", 64000)]
    assert m.rtcp == RtcpAttribute(20001, Connection("IN", "IP4", "127.0.0.1"))
    assert m.payload_types == [8, 0, 120]
    assert m.telephone_events() == {120: RtpMap(120, "telephone-event", 8000)}
    assert m.ptime is None


def test_sipp_offer_minimal(sdp_file: Callable[[str], bytes]) -> None:
    sd = parse_sdp(sdp_file("sipp_uac_offer.sdp"))
    (m,) = sd.media
    assert m.payload_types == [0] and m.rtpmaps() == {0: RtpMap(0, "PCMU", 8000)}
    assert m.direction is None and sd.effective_direction(m) == "sendrecv"


def test_chrome_offer(sdp_file: Callable[[str], bytes]) -> None:
    sd = parse_sdp(sdp_file("chrome_webrtc_offer.sdp"))
    assert sd.origin.session_id == 4611731400430051336
    (m,) = sd.media
    assert m.proto == "UDP/TLS/RTP/SAVPF" and m.port == 9
    assert m.has_attribute("rtcp-mux")
    assert m.rtcp == RtcpAttribute(9, Connection("IN", "IP4", "0.0.0.0"))
    assert {pt: e.clock_rate for pt, e in m.telephone_events().items()} == {110: 48000, 126: 8000}
    assert m.fmtp(111) == "minptime=10;useinbandfec=1"
    assert len(m.get_attributes("extmap")) == 4
    assert sd.attributes[0] == Attribute("group", "BUNDLE 0")


def test_lf_only_line_ends_and_trailing_blank_lines_are_tolerated(
    sdp_file: Callable[[str], bytes],
) -> None:
    raw = sdp_file("baresip_offer.sdp")
    lf = raw.replace(b"\r\n", b"\n") + b"\n\n"
    assert parse_sdp(lf) == parse_sdp(raw)
    assert parse_sdp(lf.decode()) == parse_sdp(raw)
    assert parse_sdp(lf).to_bytes() == raw  # we always write CRLF


def test_ipv6() -> None:
    raw = (
        "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n"
        "m=audio 20000 RTP/AVP 8\r\na=rtcp:20001 IN IP6 2001:db8::2\r\n"
    )
    sd = parse_sdp(raw)
    assert sd.connection == Connection("IN", "IP6", "2001:db8::1")
    assert sd.media[0].rtcp == RtcpAttribute(20001, Connection("IN", "IP6", "2001:db8::2"))
    assert Connection.for_address("::1") == Connection("IN", "IP6", "::1")
    assert Connection.for_address("10.0.0.1") == Connection("IN", "IP4", "10.0.0.1")
    assert sd.to_str() == raw


def test_hold_address_and_direction_setter() -> None:
    sd = parse_sdp(
        "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\na=sendonly\n"
        "m=audio 4000 RTP/AVP 0\n"
    )
    assert sd.connection is not None and sd.connection.is_hold_address
    m = sd.media[0]
    assert m.direction is None and sd.effective_direction(m) == "sendonly"
    m.set_direction("inactive")
    m.set_direction("recvonly")
    assert m.get_attributes("recvonly") == [None] and not m.has_attribute("inactive")
    with pytest.raises(SdpError, match="unknown direction"):
        m.set_direction("sideways")


GOOD = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\n"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "empty"),
        ("\r\n\r\n", "empty"),
        ("o=- 1 1 IN IP4 1.1.1.1\r\nv=0\r\n", "first line must be v="),
        (GOOD.replace("v=0", "v=1"), "unsupported SDP version"),
        (GOOD.replace("o=- 1 1 IN IP4 10.0.0.1", "o=- 1 IN IP4 10.0.0.1"), "o= needs 6 fields"),
        (GOOD.replace("o=- 1 1", "o=- x 1"), "sess-id"),
        (GOOD.replace("s=-\r\n", ""), "c= before o= and s="),
        (GOOD.replace("o=- 1 1 IN IP4 10.0.0.1\r\n", ""), "s= before o="),
        (GOOD.replace("t=0 0\r\n", ""), "m= before any t="),
        (
            GOOD.replace("t=0 0\r\nm=", "m=").replace("\r\nm=audio 4000 RTP/AVP 0 8\r\n", "\r\n"),
            "missing t=",
        ),
        (GOOD.replace("c=IN IP4 10.0.0.1\r\n", ""), "no c= at session or media level"),
        (GOOD.replace("c=IN IP4 10.0.0.1\r\nt=0 0", "t=0 0\r\nc=IN IP4 10.0.0.1"), "out of order"),
        (GOOD.replace("c=IN IP4 10.0.0.1", "c=IN IP4 10.0.0.300"), "not an IPv4 address"),
        (GOOD.replace("c=IN IP4 10.0.0.1", "c=IN IP4"), "c= needs"),
        (GOOD.replace("c=IN IP4 10.0.0.1", "c=IN IPX 10.0.0.1"), "unknown address type"),
        (GOOD.replace("c=IN IP4 10.0.0.1", "c=IN IP6 fe80:::1"), "not an IPv6 address"),
        (GOOD.replace("4000", "70000"), "m= port"),
        (GOOD.replace("4000", "4000/x"), "number of ports"),
        (GOOD.replace("RTP/AVP 0 8", "RTP/AVP 0 128"), "payload type"),
        (GOOD.replace("RTP/AVP 0 8", "RTP/AVP"), "m= needs"),
        (GOOD + "x=unknown\r\n", "not allowed inside m=audio"),
        (GOOD.replace("t=0 0", "t=0 0\r\nx=1"), "unknown line type x="),
        (GOOD + "t=0 0\r\n", "not allowed inside"),
        (GOOD.replace("s=-", "s=-\r\ns=again"), "second s="),
        (GOOD.replace("s=-", "s=-\r\no=- 2 2 IN IP4 1.1.1.1"), "out of order"),
        (GOOD + "a=\r\n", "a= needs"),
        (GOOD + "garbage\r\n", "is not '<type>=<value>'"),
        (GOOD + "A=b\r\n", "is not '<type>=<value>'"),
        (GOOD.replace("t=0 0", "t=0"), "t= needs"),
        (GOOD.replace("t=0 0", "t=0 0\r\nb=AS"), "out of order"),
        (GOOD.replace("c=IN", "b=AS\r\nc=IN"), "b= needs"),
        (GOOD + "\x00", "NUL"),
        ("\r\n" + GOOD, "first line must be v="),
        (GOOD + "a=x\ry\r\n", "bare CR"),
        (GOOD.replace("10.0.0.1", "10.0.0.01.5"), "not an IPv4 address"),
    ],
)
def test_malformed_bodies_raise_sdp_error_with_reason(body: str, reason: str) -> None:
    with pytest.raises(SdpError, match=reason):
        parse_sdp(body.encode())


def test_non_utf8_and_oversize_and_wrong_type() -> None:
    with pytest.raises(SdpError, match="not UTF-8"):
        parse_sdp(GOOD.encode() + b"a=x:\xff\r\n")
    with pytest.raises(SdpError, match="exceeds"):
        parse_sdp(GOOD.encode() + b"a=x\r\n" * 20000)
    with pytest.raises(SdpError, match="expected bytes or str"):
        parse_sdp(42)  # type: ignore[arg-type]
    assert issubclass(SdpError, ValueError)


@pytest.mark.parametrize(
    ("attr", "accessor", "reason"),
    [
        ("a=rtpmap:96", "rtpmaps", "needs '<pt> <encoding>"),
        ("a=rtpmap:x opus/48000", "rtpmaps", "payload type"),
        ("a=rtpmap:96 opus/fast", "rtpmaps", "clock rate"),
        ("a=rtpmap:96 opus/48000/0", "rtpmaps", "channels"),
        ("a=rtpmap", "rtpmaps", "without a value"),
        ("a=ptime:abc", "ptime", "a=ptime"),
        ("a=rtcp:x", "rtcp", "a=rtcp port"),
        ("a=rtcp:9 IN IP4", "rtcp", "needs '<port>'"),
        ("a=fmtp", "fmtps", "without a value"),
    ],
)
def test_malformed_attributes_raise_when_read(attr: str, accessor: str, reason: str) -> None:
    media = parse_sdp(GOOD + attr + "\r\n").media[0]
    with pytest.raises(SdpError, match=reason):
        value = getattr(media, accessor)
        if callable(value):
            value()


def test_ptime_tolerates_decimal_zero() -> None:
    assert parse_sdp(GOOD + "a=ptime:20.0\r\n").media[0].ptime == 20


def test_payload_types_of_non_rtp_media_is_an_error() -> None:
    sd = parse_sdp(GOOD + "m=application 5000 UDP/BFCP *\r\n")
    assert sd.media[1].formats == ["*"]
    with pytest.raises(SdpError, match="no RTP payload types"):
        _ = sd.media[1].payload_types


def test_rejected_media_without_connection_is_accepted() -> None:
    body = GOOD.replace("c=IN IP4 10.0.0.1\r\n", "") + "c=IN IP4 10.0.0.1\r\n"
    body = body.replace(
        "m=audio 4000 RTP/AVP 0 8\r\n", "m=video 0 RTP/AVP 31\r\nm=audio 4000 RTP/AVP 0 8\r\n"
    )
    sd = parse_sdp(body)
    assert [m.port for m in sd.media] == [0, 4000]


# -- property: whatever we build, we parse back identically ------------------------------------

_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+",
    min_size=1,
    max_size=12,
)
_free = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n\x00"),
    max_size=20,
)
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_conn = st.one_of(
    _ipv4.map(lambda a: Connection("IN", "IP4", a)), _ipv6.map(lambda a: Connection("IN", "IP6", a))
)
_attr = st.builds(
    Attribute,
    _token.filter(lambda t: ":" not in t),
    st.one_of(st.none(), _free),
)
_media = st.builds(
    MediaDescription,
    media=st.sampled_from(["audio", "video", "text"]),
    port=st.integers(0, 65535),
    proto=st.sampled_from(["RTP/AVP", "RTP/AVPF", "RTP/SAVP"]),
    formats=st.lists(st.integers(0, 127).map(str), min_size=1, max_size=6),
    number_of_ports=st.one_of(st.none(), st.integers(1, 4)),
    title=st.one_of(st.none(), _free),
    connections=st.lists(_conn, max_size=1),
    bandwidths=st.lists(
        st.builds(Bandwidth, st.sampled_from(["AS", "TIAS", "CT"]), st.integers(0, 10**6)),
        max_size=2,
    ),
    key=st.none(),
    attributes=st.lists(_attr, max_size=6),
)
_session = st.builds(
    SessionDescription,
    origin=st.builds(
        Origin,
        _token,
        st.integers(0, 2**63),
        st.integers(0, 2**63),
        st.just("IN"),
        st.just("IP4"),
        _ipv4,
    ),
    session_name=_free,
    information=st.one_of(st.none(), _free),
    uri=st.one_of(st.none(), _token),
    emails=st.lists(_token, max_size=1),
    phones=st.lists(_token, max_size=1),
    connection=st.one_of(st.none(), _conn),
    bandwidths=st.lists(st.builds(Bandwidth, st.just("AS"), st.integers(0, 10**6)), max_size=1),
    times=st.lists(
        st.builds(
            Timing, st.integers(0, 2**40), st.integers(0, 2**40), st.lists(_token, max_size=1)
        ),
        min_size=1,
        max_size=2,
    ),
    timezone=st.none(),
    key=st.none(),
    attributes=st.lists(_attr, max_size=4),
    media=st.lists(_media, max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(_session)
def test_build_then_parse_round_trip(sd: SessionDescription) -> None:
    if sd.connection is None:
        for m in sd.media:
            if not m.connections:
                m.connections.append(Connection("IN", "IP4", "192.0.2.1"))
    raw = sd.to_bytes()
    back = parse_sdp(raw)
    assert back == sd
    assert back.to_bytes() == raw


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_sdp_error(data: bytes) -> None:
    try:
        sd = parse_sdp(GOOD.encode() + data)
    except SdpError:
        return
    assert parse_sdp(sd.to_bytes()) == sd
