"""The message model: headers, parsing details, serialisation, framing, responses."""

from __future__ import annotations

import pytest

from softphone.sip.errors import SipHeaderValueError, SipParseError
from softphone.sip.message import (
    MAX_MESSAGE_SIZE,
    CSeq,
    Headers,
    SipRequest,
    SipResponse,
    StreamFramer,
    Via,
    error_response,
    make_response,
    parse_message,
    split_list,
)

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def invite(*, extra: str = "", body: bytes = SDP, head: str | None = None) -> bytes:
    text = head or (
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n"
        "Max-Forwards: 70\r\n"
        "To: Bob <sip:bob@example.com>\r\n"
        'From: "Alice A." <sip:alice@example.com>;tag=1928301774\r\n'
        "Call-ID: a84b4c76e66710@192.0.2.1\r\n"
        "CSeq: 314159 INVITE\r\n"
        "Contact: <sip:alice@192.0.2.1:5060;transport=udp>\r\n"
        f"{extra}"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return text.encode() + body


def test_typical_invite() -> None:
    msg = parse_message(invite())
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE" and msg.uri == "sip:bob@example.com"
    assert msg.top_via.branch == "z9hG4bK776asdhds" and msg.top_via.params["rport"] is None
    assert msg.top_via.port == 5060 and msg.top_via.transport == "UDP"
    assert msg.from_.tag == "1928301774" and msg.from_.display == "Alice A."
    assert msg.to.tag is None and msg.to.display == "Bob"
    assert msg.cseq == CSeq(314159, "INVITE")
    assert msg.contacts[0].uri.params == {"transport": "udp"}
    assert msg.content_type == "application/sdp" and msg.body == SDP


def test_compact_forms_and_repeated_headers_are_one_list() -> None:
    data = (
        b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com;branch=z9hG4bK2\r\n"
        b"Via: SIP/2.0/UDP c.example.com;branch=z9hG4bK3\r\n"
        b"t: <sip:bob@example.com>\r\nf: <sip:alice@example.com>;tag=1\r\n"
        b"i: cid@example.com\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n"
        b"Allow: INVITE, ACK\r\nAllow: BYE\r\n"
        b"Subject: a, b, c\r\n\r\n"
    )
    msg = parse_message(data)
    assert [v.host for v in msg.vias] == ["a.example.com", "b.example.com", "c.example.com"]
    assert msg.headers.values("allow") == ["INVITE", "ACK", "BYE"]
    assert msg.headers.values("subject") == ["a, b, c"]  # not a list header
    assert msg.call_id == "cid@example.com"
    assert "Content-Length" in msg.headers and "l" in msg.headers


def test_split_list_respects_quotes_and_brackets() -> None:
    assert split_list('"a, b" <sip:x@y;p=1,2>, <sip:z@w>') == ['"a, b" <sip:x@y;p=1,2>', "<sip:z@w>"]
    with pytest.raises(SipParseError):
        split_list('"unterminated, x')


def test_bare_lf_line_endings_and_leading_crlf_are_tolerated() -> None:
    raw = invite()
    cut = raw.index(b"\r\n\r\n")
    data = b"\r\n\r\n" + raw[:cut].replace(b"\r\n", b"\n") + b"\n\n" + raw[cut + 4 :]
    msg = parse_message(data)
    assert msg.body == SDP
    assert msg.cseq.number == 314159


def test_bare_cr_inside_a_header_is_refused() -> None:
    # A lone CR could end the field early at a peer that splits on CR: header smuggling.
    with pytest.raises(SipParseError, match="CR"):
        parse_message(invite(extra="Subject: hi\rVia: SIP/2.0/UDP evil.example.com\r\n"))


def test_datagram_body_longer_than_content_length_is_cut() -> None:
    data = invite() + b"trailing garbage"
    assert parse_message(data).body == SDP


def test_missing_content_length_on_a_stream_is_an_error() -> None:
    data = invite().replace(f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    assert parse_message(data).body == SDP  # datagram: the rest of the packet
    with pytest.raises(SipParseError, match="Content-Length"):
        parse_message(data, stream=True)


def test_oversize_message_is_a_513() -> None:
    data = invite(extra="X-Pad: " + "a" * MAX_MESSAGE_SIZE + "\r\n")
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 513


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("Max-Forwards: 256\r\n", "Max-Forwards"),
        ("Date: Sat, 13 Nov 2010 23:29:00 PST\r\n", "Date"),
        ("Contact: <sip:a@b>;;,\r\n", "Contact"),
        ("Bad Header: x\r\n", "header line"),
        ("NoColonHere\r\n", "header line"),
        ("Call-ID: again@example.com\r\n", "Multiple Call-ID"),
    ],
)
def test_header_faults_are_named(extra: str, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(invite(extra=extra))
    assert reason in info.value.reason
    assert info.value.status == 400 and info.value.request is not None


@pytest.mark.parametrize("bad", ["\x1b[2J", "\x00", "\x7f", "\x85", "\u2028", "\x0b"])
@pytest.mark.parametrize("where", ["Call-ID", "From", "To"])
def test_a_control_character_in_a_call_id_or_tag_is_a_400(where: str, bad: str) -> None:
    """They would split or hide in a log line: a Call-ID or tag is never allowed them."""
    original = {"Call-ID": "Call-ID: a84b4c76e66710@192.0.2.1",
                "From": 'From: "Alice A." <sip:alice@example.com>;tag=1928301774',
                "To": "To: Bob <sip:bob@example.com>"}[where]
    forged = original.replace("a84b4c76e66710", f"a84b{bad}c76") if where == "Call-ID" \
        else original.replace("1928301774", f"19{bad}28") if where == "From" \
        else original + f";tag=x{bad}y"
    data = invite().decode("latin-1").replace(original, forged).encode("utf-8")
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 400 and info.value.request is not None
    assert info.value.reason == (f"Bad {where}: control character"
                                 + ("" if where == "Call-ID" else " in the tag"))
    assert error_response(info.value) is not None  # answered: 400 with that reason


def test_a_control_character_quoted_in_a_display_name_is_refused_too() -> None:
    """RFC 4475 §3.1.1.7 lets a display name quote one; the edge accepts no control character
    in any header value (only HTAB): this one is in a field a response would copy, so the
    request is dropped rather than answered with it."""
    data = invite().replace(b'"Alice A."', b'"Alice \\\x07 A."')
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.reason == "Control character 0x07 in From"
    assert info.value.respondable is False


def test_broken_responses_are_never_answered() -> None:
    data = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n"
        b"To: <sip:b@example.com>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    with pytest.raises(SipParseError) as info:
        parse_message(data)  # no From
    assert info.value.respondable is False and error_response(info.value) is None


def test_request_without_via_is_dropped() -> None:
    data = invite().replace(b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n", b"")
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.respondable is False and error_response(info.value) is None


def test_serialise_round_trip_fixes_content_length() -> None:
    msg = parse_message(invite())
    msg.body = b"v=0\r\n"
    raw = msg.to_bytes()
    assert b"Content-Length: 5\r\n" in raw and raw.endswith(b"\r\n\r\nv=0\r\n")
    again = parse_message(raw)
    assert again.body == b"v=0\r\n"
    assert [h for h in again.headers if h[0] != "Content-Length"] == [
        h for h in msg.headers if h[0] != "Content-Length"]
    built = SipRequest("OPTIONS", "sip:a@example.com", Headers([("v", "SIP/2.0/UDP h;branch=z9hG4bKx")]))
    assert built.to_bytes().endswith(b"Via: SIP/2.0/UDP h;branch=z9hG4bKx\r\nContent-Length: 0\r\n\r\n")


def test_header_injection_is_refused() -> None:
    h = Headers()
    with pytest.raises(SipHeaderValueError):
        h.add("Subject", "hi\r\nVia: SIP/2.0/UDP evil")
    with pytest.raises(SipHeaderValueError):
        h.set("Subject", "hi\nx")
    with pytest.raises(ValueError):  # SipHeaderValueError is a ValueError too
        h.insert_first("Route", "<sip:a>\r\n")
    req = parse_message(invite())
    assert isinstance(req, SipRequest)
    with pytest.raises(SipHeaderValueError):
        make_response(req, 200, "OK\r\nX: y")


def test_make_response_copies_the_right_fields() -> None:
    req = parse_message(invite(extra="Timestamp: 54\r\n"))
    assert isinstance(req, SipRequest)
    trying = make_response(req, 100, "Trying")
    assert trying.headers.get("timestamp") == "54" and trying.to.tag is None
    ok = make_response(req, 200, "OK", to_tag="abc", body=SDP, content_type="application/sdp")
    assert ok.to.tag == "abc" and ok.headers.get("timestamp") is None
    again = parse_message(ok.to_bytes())
    assert isinstance(again, SipResponse) and again.status == 200 and again.body == SDP
    assert again.headers.get_all("via") == req.headers.get_all("via")
    assert again.cseq == req.cseq and again.from_.tag == req.from_.tag


def test_dialog_creating_responses_copy_record_route() -> None:
    rr = "Record-Route: <sip:p2.example.com;lr>\r\nRecord-Route: <sip:p1.example.com;lr>\r\n"
    req = parse_message(invite(extra=rr))
    assert isinstance(req, SipRequest)
    ok = parse_message(make_response(req, 200, "OK", to_tag="x").to_bytes())
    assert ok.headers.values("record-route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert "record-route" not in make_response(req, 100, "Trying").headers
    assert "record-route" not in make_response(req, 486, "Busy Here", to_tag="x").headers


def test_error_response_for_a_bad_request_line() -> None:
    data = invite().replace(b"INVITE sip:bob@example.com SIP/2.0", b"INVITE  sip:bob@example.com SIP/2.0")
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    resp = error_response(info.value)
    assert resp is not None and resp.status == 400 and resp.reason == "Bad request line"
    assert resp.call_id == "a84b4c76e66710@192.0.2.1"


def test_accessors_raise_only_parse_errors_on_built_messages() -> None:
    msg = SipRequest("OPTIONS", "not a uri")
    for name in ("vias", "top_via", "from_", "to", "cseq", "contacts", "request_uri"):
        try:
            getattr(msg, name)
        except SipParseError:
            pass
    msg.headers.add("Via", "garbage")
    msg.headers.add("CSeq", "x y z")
    msg.headers.add("From", "<<<")
    for name in ("vias", "top_via", "from_", "cseq"):
        with pytest.raises(SipParseError):
            getattr(msg, name)


def test_via_parse_and_str() -> None:
    v = Via.parse("SIP / 2.0 / tcp [2001:db8::1]:5061 ; branch = z9hG4bKx ; received=192.0.2.7")
    assert (v.transport, v.host, v.port) == ("TCP", "[2001:db8::1]", 5061)
    assert v.params == {"branch": "z9hG4bKx", "received": "192.0.2.7"}
    assert str(v) == "SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKx;received=192.0.2.7"
    for bad in ("SIP/3.0/UDP h", "SIP/2.0/UDP", "SIP/2.0/UDP h:0", "SIP/2.0/UDP h;=x", "SIP/2.0/UDP a b"):
        with pytest.raises(SipParseError):
            Via.parse(bad)


def test_cseq_limits() -> None:
    assert CSeq.parse("  0009\tINVITE ") == CSeq(9, "INVITE")
    for bad in ("2147483648 INVITE", "1", "1 INVITE x", "-1 INVITE", "1 INV<ITE"):
        with pytest.raises(SipParseError):
            CSeq.parse(bad)


class TestStreamFramer:
    def test_messages_and_keepalives(self) -> None:
        a, b = invite(), invite(body=b"")
        framer = StreamFramer()
        out = framer.feed(b"\r\n\r\n" + a[:10])
        assert out == [b"\r\n\r\n"]
        out = framer.feed(a[10:] + b[:-1])
        assert out == [a]
        assert framer.feed(b[-1:] + b"\r\n") == [b]

    def test_oversize_and_missing_length(self) -> None:
        with pytest.raises(SipParseError) as info:
            StreamFramer(max_size=1000).feed(b"INVITE sip:a SIP/2.0\r\nX: " + b"a" * 2000)
        assert info.value.status == 513
        with pytest.raises(SipParseError, match="Content-Length"):
            StreamFramer().feed(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n")
        with pytest.raises(SipParseError, match="Multiple"):
            StreamFramer().feed(b"OPTIONS sip:a SIP/2.0\r\nl: 0\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"])
@pytest.mark.parametrize("line_end", ["\r\n", "\n"])
def test_a_control_character_in_a_header_value_is_a_400_naming_it(char: str,
                                                                   line_end: str) -> None:
    head, _, body = invite(extra=f"Subject: hi{char}there\r\n").partition(b"\r\n\r\n")
    data = head.replace(b"\r\n", line_end.encode()) + b"\r\n\r\n" + body
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    err = info.value
    assert err.status == 400 and err.reason == f"Control character {ord(char):#04x} in Subject"
    resp = error_response(err)
    assert resp is not None and resp.status == 400
    assert b"\x00" not in bytes(resp) and char.encode() not in bytes(resp)


@pytest.mark.parametrize("name", ["Via", "To", "CSeq"])
def test_a_control_character_in_a_field_the_answer_copies_is_dropped(name: str) -> None:
    """(In a Call-ID or a From/To tag it is answered: test_a_control_character_in_a_call_id_
    or_tag_is_a_400.)"""
    data = invite()
    start = data.index(f"\r\n{name}:".encode()) + 2
    end = data.index(b"\r\n", start)
    data = data[:end] + b"\x00" + data[end:]
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 400 and name in info.value.reason
    assert error_response(info.value) is None


def test_htab_and_non_ascii_text_are_not_control_characters() -> None:
    msg = parse_message(invite(extra="Subject: caf\u00e9\tau lait\r\n"))
    assert msg.headers.get("subject") == "caf\u00e9\tau lait"
