"""RFC 3264 offer/answer: our offer order, answers by our order, 488s, hold and resume."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from softphone.codecs.offer_answer import (
    Negotiated,
    NoCommonCodec,
    OfferAnswerError,
    answer_offer,
    build_offer,
    hold_offer,
    next_version,
    process_answer,
    resume_offer,
)
from softphone.codecs.registry import DEFAULT_ORDER, OPUS, PCMA, PCMU, codec_order_from_names
from softphone.codecs.sdp import SessionDescription, parse_sdp

HERE = "192.0.2.10"


def offer_of(formats: str, *attrs: str, session: str = "", conn: str = "198.51.100.7") -> bytes:
    lines = [
        "v=0",
        "o=peer 42 7 IN IP4 198.51.100.7",
        "s=-",
        f"c=IN IP4 {conn}",
        "t=0 0",
        *([session] if session else []),
        f"m=audio 40000 RTP/AVP {formats}",
        *attrs,
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def answer(body: bytes | SessionDescription, **kw: object) -> Negotiated:
    sd = body if isinstance(body, SessionDescription) else parse_sdp(body)
    return answer_offer(sd, address=HERE, port=20000, session_id=9, **kw)  # type: ignore[arg-type]


# -- our offer ----------------------------------------------------------------------------------


def test_offer_is_opus_pcma_pcmu_then_telephone_event() -> None:
    sd = build_offer(address=HERE, port=20000, session_id=1234, session_version=1)
    raw = sd.to_bytes()
    assert raw == (
        b"v=0\r\n"
        b"o=- 1234 1 IN IP4 192.0.2.10\r\n"
        b"s=-\r\n"
        b"c=IN IP4 192.0.2.10\r\n"
        b"t=0 0\r\n"
        b"m=audio 20000 RTP/AVP 96 8 0 101\r\n"
        b"a=rtpmap:96 opus/48000/2\r\n"
        b"a=fmtp:96 useinbandfec=1\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )
    assert parse_sdp(raw) == sd


def test_offer_options() -> None:
    sd = build_offer(
        address="2001:db8::5",
        port=20002,
        order=codec_order_from_names(["PCMU", "opus"]),
        dtmf=False,
        ptime=40,
        direction="sendonly",
    )
    m = sd.media[0]
    assert sd.connection is not None and sd.connection.addrtype == "IP6"
    assert sd.origin.addrtype == "IP6"
    assert m.payload_types == [0, 96] and m.ptime == 40 and m.direction == "sendonly"
    assert sd.origin.session_version == sd.origin.session_id  # default version
    assert build_offer(address=HERE, port=2).origin.session_id != sd.origin.session_id


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"port": 0}, "out of range"),
        ({"port": 70000}, "out of range"),
        ({"direction": "up"}, "unknown direction"),
        ({"order": ()}, "empty"),
        ({"ptime": 0}, "ptime"),
        ({"order": (PCMA, PCMA)}, "listed twice"),
    ],
)
def test_offer_argument_errors(kwargs: dict[str, object], reason: str) -> None:
    args: dict[str, object] = {"address": HERE, "port": 20000, **kwargs}
    with pytest.raises(OfferAnswerError, match=reason):
        build_offer(**args)  # type: ignore[arg-type]


def test_duplicate_dynamic_payload_type_is_renumbered() -> None:
    from softphone.codecs.registry import Codec

    other = Codec("opus", 48000, 2, 101)  # collides with telephone-event's preferred 101
    sd = build_offer(address=HERE, port=20000, order=(other,))
    assert sd.media[0].payload_types == [101, 96]
    assert sd.media[0].rtpmaps()[96].encoding == "telephone-event"


# -- answering ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formats", "attrs", "name", "pt"),
    [
        ("0 8 96", ["a=rtpmap:96 opus/48000/2"], "opus", 96),
        ("0 8 111", ["a=rtpmap:111 OPUS/48000/2"], "opus", 111),  # offerer's PT and case kept
        ("0 8", [], "PCMA", 8),  # static PTs without rtpmap
        ("0", [], "PCMU", 0),
        ("18 0", ["a=rtpmap:18 G729/8000"], "PCMU", 0),
        ("97 0", ["a=rtpmap:97 pcma/8000"], "PCMA", 97),  # odd but legal: dynamic PCMA
        ("98 8", ["a=rtpmap:98 opus/48000"], "opus", 98),  # missing /2 tolerated
        ("100 8", [], "PCMA", 8),  # dynamic PT without rtpmap means nothing
    ],
)
def test_answer_picks_by_our_order_and_keeps_their_numbers(
    formats: str, attrs: list[str], name: str, pt: int
) -> None:
    n = answer(offer_of(formats, *attrs))
    assert (n.codec.name, n.codec.payload_type) == (name, pt)
    m = n.local_sdp.media[0]
    assert m.payload_types == [pt]
    assert m.port == 20000 and n.local_sdp.connection is not None
    assert n.local_sdp.connection.address == HERE
    assert (n.remote_address, n.remote_port) == ("198.51.100.7", 40000)
    assert (n.remote_rtcp_address, n.remote_rtcp_port) == ("198.51.100.7", 40001)
    assert n.direction == "sendrecv" and not n.on_hold and n.sends and n.receives
    assert n.telephone_event_pt is None
    # what we send parses back to the same answer
    assert parse_sdp(n.sdp) == n.local_sdp


def test_answer_follows_a_configured_order() -> None:
    body = offer_of("96 8 0", "a=rtpmap:96 opus/48000/2")
    assert answer(body, order=(PCMU, PCMA, OPUS)).codec == PCMU
    assert answer(body, order=(PCMA,)).codec == PCMA


def test_no_common_codec_is_488_with_warning() -> None:
    with pytest.raises(NoCommonCodec) as info:
        answer(offer_of("18", "a=rtpmap:18 G729/8000"))
    err = info.value
    assert err.status == 488 and err.warn_code == 305
    assert err.warning == f'305 {HERE} "Incompatible media format"'
    assert "no codec in common" in str(err)
    assert isinstance(err, ValueError)


def test_no_audio_is_304_and_wrong_transport_is_302(sdp_file: Callable[[str], bytes]) -> None:
    video = offer_of("31").replace(b"m=audio", b"m=video")
    with pytest.raises(NoCommonCodec) as info:
        answer(video)
    assert info.value.warning == f'304 {HERE} "Media type not available"'
    with pytest.raises(NoCommonCodec) as info:
        answer(sdp_file("chrome_webrtc_offer.sdp"))  # DTLS-SRTP belongs to the WebRTC gateway
    assert info.value.warn_code == 302 and "UDP/TLS/RTP/SAVPF" in info.value.reason
    with pytest.raises(NoCommonCodec) as info:
        answer_offer(parse_sdp(offer_of("18")), address="2001:db8::1", port=20000)
    assert info.value.warning == '305 [2001:db8::1] "Incompatible media format"'


def test_answer_to_baresip(sdp_file: Callable[[str], bytes]) -> None:
    n = answer(sdp_file("baresip_offer.sdp"))
    assert (n.codec.name, n.codec.payload_type) == ("opus", 96)
    assert n.telephone_event_pt == 101 and n.telephone_event_rate == 8000
    assert n.remote_fmtp == "stereo=1;sprop-stereo=1"
    assert (n.remote_address, n.remote_port, n.ptime) == ("127.0.0.1", 34188, 20)
    m = n.local_sdp.media[0]
    assert m.payload_types == [96, 101]
    assert m.rtpmaps()[96].encoding == "opus" and m.fmtp(101) == "0-15"  # their events echoed
    assert m.direction == "sendrecv"


def test_answer_to_pjsua2_uses_its_rtcp_attribute(sdp_file: Callable[[str], bytes]) -> None:
    n = answer(sdp_file("pjsua2_offer.sdp"))
    assert (n.codec.name, n.telephone_event_pt) == ("PCMA", 120)
    assert (n.remote_address, n.remote_port, n.remote_rtcp_port) == ("127.0.0.1", 20000, 20001)
    assert n.local_sdp.media[0].payload_types == [8, 120]


def test_answer_to_sipp(sdp_file: Callable[[str], bytes]) -> None:
    n = answer(sdp_file("sipp_uac_offer.sdp"))
    assert n.codec == PCMU and n.telephone_event_pt is None


def test_telephone_event_is_rate_matched() -> None:
    body = offer_of(
        "111 8 110 126",
        "a=rtpmap:111 opus/48000/2",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
    )
    n = answer(body)
    assert (n.codec.payload_type, n.telephone_event_pt, n.telephone_event_rate) == (111, 110, 48000)
    m = n.local_sdp.media[0]
    assert m.payload_types == [111, 110] and m.fmtp(110) == "0-16"
    n = answer(body, order=(PCMA,))
    assert (n.telephone_event_pt, n.telephone_event_rate) == (126, 8000)
    assert answer(body, dtmf=False).telephone_event_pt is None
    only16k = offer_of("8 100", "a=rtpmap:100 telephone-event/16000")
    assert answer(only16k).telephone_event_pt is None


@pytest.mark.parametrize(
    ("offered", "wish", "answered"),
    [
        ("sendrecv", None, "sendrecv"),
        ("sendonly", None, "recvonly"),
        ("recvonly", None, "sendonly"),
        ("inactive", None, "inactive"),
        ("sendrecv", "sendonly", "sendonly"),
        ("sendrecv", "inactive", "inactive"),
        ("sendonly", "sendonly", "inactive"),
        ("recvonly", "recvonly", "inactive"),
    ],
)
def test_answer_direction(offered: str, wish: str | None, answered: str) -> None:
    n = answer(offer_of("8", f"a={offered}"), direction=wish)
    assert n.local_sdp.media[0].direction == answered
    assert n.direction == answered
    assert n.on_hold is (answered != "sendrecv")


def test_session_level_direction_and_old_style_hold() -> None:
    n = answer(offer_of("8", session="a=sendonly"))
    assert n.direction == "recvonly"
    old_hold = answer(offer_of("8", conn="0.0.0.0"))
    assert old_hold.direction == "recvonly" and not old_hold.sends
    assert old_hold.remote_address == "0.0.0.0"


def test_other_m_lines_are_rejected_in_place() -> None:
    body = offer_of("96 8", "a=rtpmap:96 opus/48000/2")
    body = body.replace(b"m=audio", b"m=video 40002 RTP/AVP 31\r\nm=audio")
    body += b"m=audio 40004 RTP/AVP 0\r\nm=audio 40006 RTP/SAVP 0\r\n"
    n = answer(body)
    ms = n.local_sdp.media
    assert [(m.media, m.port) for m in ms] == [
        ("video", 0),
        ("audio", 20000),
        ("audio", 0),
        ("audio", 0),
    ]
    assert ms[0].formats == ["31"] and ms[3].proto == "RTP/SAVP"
    assert n.media_index == 1 and n.codec.name == "opus"
    assert parse_sdp(n.sdp) == n.local_sdp  # port-0 lines need no c=, still parses


def test_first_audio_without_common_codec_falls_through_to_the_next() -> None:
    body = offer_of("18", "a=rtpmap:18 G729/8000") + b"m=audio 40002 RTP/AVP 8\r\n"
    n = answer(body)
    assert n.media_index == 1 and n.codec == PCMA and n.remote_port == 40002
    assert [m.port for m in n.local_sdp.media] == [0, 20000]


def test_a_disabled_first_audio_line_is_answered_from_the_next_usable_one() -> None:
    # RFC 3264 §6: a stream offered with port 0 stays port 0 in the answer; the call's audio
    # is the next usable line, even when the disabled one lists our favourite codec
    body = offer_of("96 8", "a=rtpmap:96 opus/48000/2").replace(b"m=audio 40000",
                                                                 b"m=audio 0")
    body += b"m=audio 40002 RTP/AVP 0\r\n"
    n = answer(body)
    assert n.media_index == 1 and n.codec == PCMU and n.remote_port == 40002
    assert [m.port for m in n.local_sdp.media] == [0, 20000]
    only_disabled = offer_of("8").replace(b"m=audio 40000", b"m=audio 0")
    with pytest.raises(NoCommonCodec) as info:
        answer(only_disabled)
    assert info.value.warn_code == 304


def test_rtcp_mux_puts_rtcp_on_the_rtp_port() -> None:
    n = answer(offer_of("8", "a=rtcp-mux"))
    assert n.remote_rtcp_port == 40000


# -- the offerer's side ----------------------------------------------------------------------------


def test_process_answer_round_trip_with_ourselves() -> None:
    offer = build_offer(address=HERE, port=20000, session_id=1)
    their = answer_offer(
        parse_sdp(offer.to_bytes()), address="198.51.100.7", port=30000, order=(PCMA, OPUS)
    )
    n = process_answer(offer, parse_sdp(their.sdp))
    assert n.codec == PCMA and n.telephone_event_pt == 101
    assert (n.remote_address, n.remote_port, n.remote_rtcp_port) == ("198.51.100.7", 30000, 30001)
    assert n.direction == "sendrecv" and n.local_sdp is offer


def test_process_answer_accepts_renumbered_codec_and_reads_direction() -> None:
    offer = build_offer(address=HERE, port=20000, session_id=1)
    body = offer_of("111", "a=rtpmap:111 opus/48000/2", "a=recvonly")
    n = process_answer(offer, parse_sdp(body))
    assert n.codec.name == "opus" and n.codec.payload_type == 111
    assert n.direction == "sendonly"
    n = process_answer(offer, parse_sdp(offer_of("0", "a=inactive")))
    assert n.direction == "inactive"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (offer_of("18", "a=rtpmap:18 G729/8000"), "did not offer"),
        (offer_of("8") + b"m=video 0 RTP/AVP 31\r\n", "2 m-lines"),
        (offer_of("8").replace(b"m=audio", b"m=video"), "m=video"),
        (offer_of("101", "a=rtpmap:101 telephone-event/8000"), "names no codec"),
        (offer_of("8").replace(b"RTP/AVP", b"RTP/AVPF"), "proto"),
    ],
)
def test_process_answer_rejects_answers_that_break_rfc3264(body: bytes, reason: str) -> None:
    offer = build_offer(address=HERE, port=20000)
    with pytest.raises(OfferAnswerError, match=reason):
        process_answer(offer, parse_sdp(body))


def test_process_answer_all_refused_is_no_common_codec() -> None:
    offer = build_offer(address=HERE, port=20000)
    with pytest.raises(NoCommonCodec):
        process_answer(offer, parse_sdp(offer_of("8").replace(b"40000", b"0")))


# -- hold and resume --------------------------------------------------------------------------------


def test_hold_and_resume_bump_the_version_and_flip_directions() -> None:
    offer = build_offer(address=HERE, port=20000, session_id=77, session_version=3)
    held = hold_offer(offer)
    assert held.origin.session_id == 77 and held.origin.session_version == 4
    assert held.media[0].direction == "sendonly"
    assert offer.media[0].direction == "sendrecv"  # the previous description is untouched
    # the peer answers the hold with recvonly; we only send (music on hold)
    peer = answer_offer(parse_sdp(held.to_bytes()), address="198.51.100.7", port=30000)
    assert peer.local_sdp.media[0].direction == "recvonly"
    assert process_answer(held, peer.local_sdp).direction == "sendonly"
    resumed = resume_offer(held)
    assert resumed.origin.session_version == 5 and resumed.media[0].direction == "sendrecv"
    assert process_answer(resumed, parse_sdp(offer_of("8"))).direction == "sendrecv"
    assert next_version(resumed).origin.session_version == 6


def test_hold_from_recvonly_is_inactive_and_session_direction_moves_to_media() -> None:
    sd = parse_sdp(offer_of("8", session="a=recvonly"))
    held = hold_offer(sd)
    assert held.direction is None and held.media[0].direction == "inactive"


def test_hold_errors() -> None:
    with pytest.raises(OfferAnswerError, match="no active audio"):
        hold_offer(parse_sdp(offer_of("8").replace(b"40000", b"0")))
    with pytest.raises(OfferAnswerError, match="0.0.0.0"):
        resume_offer(parse_sdp(offer_of("8", conn="0.0.0.0")))


def test_reanswer_keeps_session_id_and_bumps_version() -> None:
    first = answer(offer_of("8"))
    again = answer_offer(
        parse_sdp(offer_of("8", "a=sendonly")), address=HERE, port=20000, previous=first.local_sdp
    )
    assert again.local_sdp.origin.session_id == first.local_sdp.origin.session_id
    assert again.local_sdp.origin.session_version == first.local_sdp.origin.session_version + 1
    assert again.direction == "recvonly"


# -- property: any offer of known and unknown codecs -------------------------------------------

_FORMATS = {
    0: None,
    8: None,
    18: "G729/8000",
    9: "G722/8000",
    96: "opus/48000/2",
    97: "iLBC/8000",
    101: "telephone-event/8000",
    111: "opus/48000/2",
    120: "telephone-event/8000",
    3: None,
}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(sorted(_FORMATS)), min_size=1, max_size=7, unique=True),
    st.permutations(list(DEFAULT_ORDER)),
)
def test_answer_is_the_first_of_our_order_among_the_offered(
    pts: list[int], order: list[object]
) -> None:
    attrs = [f"a=rtpmap:{pt} {_FORMATS[pt]}" for pt in pts if _FORMATS[pt]]
    body = offer_of(" ".join(map(str, pts)), *attrs)
    offered = {
        ("opus" if pt in (96, 111) else {0: "PCMU", 8: "PCMA"}.get(pt, "")): pt
        for pt in reversed(pts)
    }
    expected = next((c for c in order if c.name in offered), None)  # type: ignore[attr-defined]
    if expected is None:
        with pytest.raises(NoCommonCodec):
            answer(body, order=tuple(order))
        return
    n = answer(body, order=tuple(order))
    assert n.codec.name == expected.name and n.codec.payload_type == offered[expected.name]
    events = [pt for pt in pts if pt in (101, 120)]
    assert n.telephone_event_pt == (events[0] if events else None)
    assert set(n.local_sdp.media[0].payload_types) <= set(pts)
    assert process_answer(parse_sdp(body), n.local_sdp).codec == n.codec


@pytest.mark.parametrize(
    ("formats", "attrs", "ptime"),
    [
        ("8", ["a=ptime:30"], 30),  # sipp's pcap and many phones send 30 ms G.711
        ("8", [], 20),
        ("8", ["a=ptime:30", "a=maxptime:20"], 20),
        ("8", ["a=ptime:abc"], 20),  # unreadable: our default, not a failed call
        ("8", ["a=ptime:7"], 20),
        ("96", ["a=rtpmap:96 opus/48000/2", "a=ptime:40"], 40),
        ("96", ["a=rtpmap:96 opus/48000/2", "a=ptime:30"], 20),  # not an Opus frame size
    ],
)
def test_sending_ptime_follows_the_peer_within_limits(
    formats: str, attrs: list[str], ptime: int
) -> None:
    assert answer(offer_of(formats, *attrs)).ptime == ptime


def test_malformed_rtpmap_only_hides_its_payload_type() -> None:
    n = answer(offer_of("96 8", "a=rtpmap:96 opus", "a=rtpmap:8 PCMA/8000"))
    assert n.codec == PCMA
    with pytest.raises(NoCommonCodec):
        answer(offer_of("96", "a=rtpmap:96 opus/x/2"))
