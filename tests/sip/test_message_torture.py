"""RFC 4475 (SIP torture messages) and RFC 5118 (IPv6 torture messages) against the parser.

The vectors are in tests/sip/data/ (written by data/make_vectors.py, one per RFC case). Valid
messages must parse, with the detail the RFC points at checked; invalid ones must raise
SipParseError with the status the RFC asks for and a reason naming the fault, and a request
must be answerable (error_response) while a broken response is dropped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from softphone.sip.errors import SipParseError
from softphone.sip.message import (
    SipRequest,
    SipResponse,
    StreamFramer,
    error_response,
    parse_message,
)

DATA = Path(__file__).parent / "data"


def load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def parse_all_accessors(data: bytes) -> SipRequest | SipResponse:
    msg = parse_message(data)
    assert msg.vias and msg.cseq.number >= 0
    assert msg.from_.uri.scheme and msg.to.uri.scheme
    assert all(c.uri.scheme for c in msg.contacts)
    return msg


# name -> (status, words the reason must contain, answerable)
INVALID: dict[str, tuple[int, str, bool]] = {
    # §3.1.2.1: ";;,;,," in Via (and Contact): the Via is what a server reads first.
    "rfc4475/badinv01": (400, "Via", True),
    # §3.1.2.2 on a datagram: the body is shorter than Content-Length.
    "rfc4475/clerr": (400, "Content-Length", True),
    "rfc4475/ncl": (400, "Content-Length", True),  # §3.1.2.3
    # §3.1.2.4: "should respond with a 400 due to the CSeq error" (Max-Forwards, Expires too).
    "rfc4475/scalar02": (400, "CSeq", True),
    # §3.1.2.5: a response with scalars out of range is simply discarded.
    "rfc4475/scalarlg": (400, "CSeq", False),
    "rfc4475/quotbal": (400, "quoted string", True),  # §3.1.2.6
    "rfc4475/ltgtruri": (400, "Request-URI", True),  # §3.1.2.7
    "rfc4475/lwsruri": (400, "request line", True),  # §3.1.2.8
    # §3.1.2.9 and §3.1.2.10: it is reasonable to reject; we do not forward such lines.
    "rfc4475/lwsstart": (400, "request line", True),
    "rfc4475/trws": (400, "request line", True),
    "rfc4475/escruri": (400, "Request-URI", True),  # §3.1.2.11
    # §3.1.2.12: acceptable to reject; we would otherwise mis-read the time.
    "rfc4475/baddate": (400, "Date", True),
    "rfc4475/regbadct": (400, "Contact", True),  # §3.1.2.13
    "rfc4475/badaspec": (400, "To", True),  # §3.1.2.14
    "rfc4475/baddn": (400, "From", True),  # §3.1.2.15
    "rfc4475/badvers": (505, "Version", True),  # §3.1.2.16: 505 Version Not Supported
    "rfc4475/mismatch01": (400, "CSeq method", True),  # §3.1.2.17
    "rfc4475/mismatch02": (400, "CSeq method", True),  # §3.1.2.18: 400, not 501
    "rfc4475/bigcode": (400, "status code", False),  # §3.1.2.19: dropped
    "rfc4475/insuf": (400, "Missing", True),  # §3.3.1
    # §3.3.2/§3.3.3: a UAS that does not know the scheme answers 416 Unsupported URI Scheme.
    "rfc4475/unkscm": (416, "URI Scheme", True),
    "rfc4475/novelsc": (416, "URI Scheme", True),
    "rfc4475/multi01": (400, "Multiple", True),  # §3.3.8
    # §3.3.9: conflicting Content-Length is a framing error (on TCP: close, see below).
    "rfc4475/mcl01": (400, "Content-Length", True),
    # §3.1.1.3 counts BEL, NUL and DEL as quoted-pairs in To's display name valid; we refuse
    # any control character but HTAB in a header value, escaped or not (a NUL cuts the value
    # short in C peers); in To, which the answer would copy, it is dropped.
    "rfc4475/intmeth": (400, "Control character", False),
    "rfc5118/ipv6-bad": (400, "IPv6", True),  # §4.2: IPv6 without brackets in a URI
    "rfc5118/ipv6-via-no-brackets": (400, "IPv6", True),
    "rfc5118/ipv6-bug-abnf-3-colons": (400, "IPv6", True),  # §4.9
}

VALID = sorted(
    p.parent.name + "/" + p.stem
    for p in DATA.glob("*/*.dat")
    if p.parent.name + "/" + p.stem not in INVALID
)


def test_every_rfc_case_has_a_vector() -> None:
    names = {p.parent.name + "/" + p.stem for p in DATA.glob("*/*.dat")}
    rfc4475 = {
        "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
        "semiuri", "transports", "mpart01", "unreason", "noreason", "badinv01", "clerr", "ncl",
        "scalar02", "scalarlg", "quotbal", "ltgtruri", "lwsruri", "lwsstart", "trws", "escruri",
        "baddate", "regbadct", "badaspec", "baddn", "badvers", "mismatch01", "mismatch02",
        "bigcode", "badbranch", "insuf", "unkscm", "novelsc", "unksm2", "bext01", "invut",
        "regaut01", "multi01", "mcl01", "bcast", "zeromf", "cparam01", "cparam02", "regescrt",
        "sdp01", "inv2543",
    }
    assert {f"rfc4475/{n}" for n in rfc4475} <= names
    assert len([n for n in names if n.startswith("rfc5118/")]) >= 10


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_messages_are_rejected_with_a_named_reason(name: str) -> None:
    status, words, answerable = INVALID[name]
    with pytest.raises(SipParseError) as info:
        parse_message(load(name))
    err = info.value
    assert err.status == status
    assert words.lower() in err.reason.lower()
    assert "\r" not in err.reason and "\n" not in err.reason
    response = error_response(err)
    if not answerable:
        assert response is None
        return
    assert response is not None
    assert response.status == status and response.reason == err.reason
    # The answer copies what the request had (§8.2.6.2) and is itself a valid response.
    request = err.request
    assert request is not None
    assert response.headers.get_all("via") == request.headers.get_all("via")
    assert response.call_id == request.call_id
    raw = response.to_bytes()
    assert raw.startswith(f"SIP/2.0 {status} {err.reason}\r\n".encode())
    assert raw.endswith(b"Content-Length: 0\r\n\r\n")


@pytest.mark.parametrize("name", VALID)
def test_valid_messages_parse_and_round_trip(name: str) -> None:
    msg = parse_all_accessors(load(name))
    again = parse_all_accessors(msg.to_bytes())
    assert type(again) is type(msg)
    assert list(again.headers) == list(msg.headers)
    assert again.body == msg.body


def test_wsinv_folding_lws_and_mixed_forms() -> None:
    msg = parse_message(load("rfc4475/wsinv"))
    assert isinstance(msg, SipRequest) and msg.method == "INVITE"
    assert msg.uri == "sip:ringo@drums.example.com;unknownparam"
    assert msg.to.tag == "8321234356n" and msg.to.uri.user == "ringo"
    assert msg.from_.tag == "77asjd9" and msg.from_.display == 'R Starkey \\\\\\"'
    assert msg.cseq.number == 13 and msg.cseq.method == "INVITE"
    assert msg.headers.get("Max-Forwards") == "0069"
    vias = msg.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers.get("subject") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = msg.contacts
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert msg.body.startswith(b"v=0\r\n") and msg.body.endswith(b"PCMU/8000\r\n")


def test_intmeth_token_alphabet_and_quoted_pairs() -> None:
    # the vector with its control characters replaced by printable quoted-pairs (the original
    # is refused, see INVALID)
    data = load("rfc4475/intmeth")
    for ctl in (b"\\\x07", b"\\\x00", b"\\\x7f"):
        assert ctl in data
        data = data.replace(ctl, b"\\x")
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    ruri = msg.request_uri
    assert ruri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert ruri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert ruri.host == "example.com"
    assert (msg.to.display or "").count("x") == 3
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.from_.display == "token1~` token2'+_ token3*%!.-"
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"


def test_escapes_are_decoded_in_users_only() -> None:
    msg = parse_message(load("rfc4475/esc01"))
    assert isinstance(msg, SipRequest)
    assert msg.request_uri.user == "sips:user@example.com"
    assert msg.request_uri.host == "example.net"
    assert msg.to.uri.user == "user"
    assert msg.from_.uri.user == "I have spaces"
    # Re-escaped on output, and the same URI once parsed again.
    assert str(msg.request_uri) == "sip:sips%3Auser%40example.com@example.net"
    null = parse_message(load("rfc4475/escnull"))
    assert null.to.uri.user == "null-\x00-null"
    assert [c.uri.user for c in null.contacts] == ["\x00", "\x00\x00"]


def test_esc02_percent_is_no_escape_in_method_and_header_names() -> None:
    msg = parse_message(load("rfc4475/esc02"))
    assert isinstance(msg, SipRequest) and msg.method == "RE%47IST%45R"
    assert [c.uri.host for c in msg.contacts] == ["host1.example.com", "host3.example.com"]
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert msg.to.display == "%Z%45"


def test_lwsdisp_semiuri_transports_and_longreq() -> None:
    assert parse_message(load("rfc4475/lwsdisp")).from_.display == "caller"
    semi = parse_message(load("rfc4475/semiuri"))
    assert isinstance(semi, SipRequest)
    assert semi.request_uri.user == "user;par=u@example.net"
    assert semi.request_uri.host == "example.com" and semi.request_uri.params == {}
    assert len(semi.headers.values("accept")) == 6
    vias = parse_message(load("rfc4475/transports")).vias
    assert [v.transport for v in vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    long = parse_message(load("rfc4475/longreq"))
    assert len(long.vias) == 33
    assert long.from_.tag is not None and len(long.from_.tag) > 150


def test_dblreq_only_the_first_message_counts_on_a_datagram() -> None:
    msg = parse_message(load("rfc4475/dblreq"))
    assert isinstance(msg, SipRequest) and msg.method == "REGISTER" and msg.body == b""


def test_mpart01_binary_body_is_kept_byte_for_byte() -> None:
    data = load("rfc4475/mpart01")
    msg = parse_message(data)
    assert msg.body == data[data.index(b"\r\n\r\n") + 4 :]
    assert b"\xff\xfe\x00" in msg.body
    assert parse_message(msg.to_bytes()).body == msg.body


def test_odd_reason_phrases() -> None:
    un = parse_message(load("rfc4475/unreason"))
    assert isinstance(un, SipResponse) and un.status == 200
    assert un.reason.startswith("= 2**3 * 5**2 ") and un.reason.endswith("\u043f\u0440\u043e\u0441\u0442\u043e\u0435")
    no = parse_message(load("rfc4475/noreason"))
    assert isinstance(no, SipResponse) and no.status == 100 and no.reason == ""


def test_semantics_cases_parse_and_leave_the_decision_to_the_ua() -> None:
    # §3.3.4: other schemes in To/From/Contact are syntactically valid; a registrar would
    # answer 400 because an AOR must be sip/sips, which is its decision, not the parser's.
    unk = parse_message(load("rfc4475/unksm2"))
    assert unk.to.uri.scheme == "isbn" and unk.to.uri.opaque == "2983792873"
    assert unk.from_.uri.scheme == "http" and unk.from_.tag == "3234233"
    assert unk.contacts[0].uri.scheme == "name"
    # §3.3.12/§3.3.13: where a Contact parameter belongs depends on the <>.
    c1 = parse_message(load("rfc4475/cparam01")).contacts[0]
    assert c1.params == {"unknownparam": None} and c1.uri.params == {}
    c2 = parse_message(load("rfc4475/cparam02")).contacts[0]
    assert c2.params == {} and c2.uri.params == {"unknownparam": None}
    # §3.3.14: escaped headers in a bracketed Contact are kept for the registrar.
    rc = parse_message(load("rfc4475/regescrt")).contacts[0]
    assert rc.uri.headers == "Route=%3Csip:sip.example.com%3E"
    # §3.3.10, §3.3.11, §3.2.1, §3.4.1: well-formed; the decisions belong to other layers.
    bcast = parse_message(load("rfc4475/bcast"))
    assert bcast.vias[1].host == "255.255.255.255"
    assert parse_message(load("rfc4475/zeromf")).headers.get("max-forwards") == "0"
    assert parse_message(load("rfc4475/badbranch")).top_via.branch == "z9hG4bK"
    old = parse_message(load("rfc4475/inv2543"))
    assert old.top_via.branch is None and old.from_.tag is None


def test_rfc5118_ipv6_references() -> None:
    good = parse_message(load("rfc5118/ipv6-good"))
    assert isinstance(good, SipRequest)
    assert good.request_uri.host == "[2001:db8::10]"
    assert good.request_uri.host_no_brackets == "2001:db8::10"
    assert good.top_via.host == "[2001:db8::9:1]" and good.top_via.port is None
    assert good.contacts[0].uri.host == "[2001:db8::1]"
    amb = parse_message(load("rfc5118/port-ambiguous"))
    assert isinstance(amb, SipRequest)
    assert amb.request_uri.host == "[2001:db8::10:5070]" and amb.request_uri.port is None
    unamb = parse_message(load("rfc5118/port-unambiguous"))
    assert isinstance(unamb, SipRequest)
    assert unamb.request_uri.host == "[2001:db8::10]" and unamb.request_uri.port == 5070
    # §4.4: received with and without brackets are both accepted.
    with_delim = parse_message(load("rfc5118/via-received-param-with-delim")).top_via
    assert with_delim.port == 6050 and with_delim.params["received"] == "[2001:db8::9:255]"
    no_delim = parse_message(load("rfc5118/via-received-param-no-delim")).top_via
    assert no_delim.params["received"] == "2001:db8::9:255"
    multi = parse_message(load("rfc5118/mult-ip-in-header"))
    assert [v.host for v in multi.vias] == ["[2001:db8::9:1]", "192.0.2.1"]
    assert [c.uri.host for c in multi.contacts] == ["[2001:db8::9:1]", "192.0.2.1"]
    mapped = parse_message(load("rfc5118/ipv4-mapped-ipv6"))
    assert isinstance(mapped, SipRequest) and mapped.request_uri.host == "[::ffff:192.0.2.10]"
    sdp = parse_message(load("rfc5118/ipv6-in-sdp"))
    assert b"c=IN IP6 2001:db8::1" in sdp.body


def test_stream_framing_of_torture_messages() -> None:
    # Valid messages framed by Content-Length arrive whole, byte by byte.
    data = load("rfc4475/wsinv")
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    assert out == [data]
    # §3.3.9 on a stream: conflicting Content-Length cannot be framed: close the connection.
    with pytest.raises(SipParseError, match="Content-Length"):
        StreamFramer().feed(load("rfc4475/mcl01"))
    with pytest.raises(SipParseError, match="Content-Length"):
        StreamFramer().feed(load("rfc4475/ncl"))
