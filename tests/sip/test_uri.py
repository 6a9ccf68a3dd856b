"""SIP/SIPS/tel URIs and name-addr values."""

from __future__ import annotations

import pytest

from softphone.sip.errors import SipParseError
from softphone.sip.uri import NameAddr, SipUri, split_hostport


def test_sip_uri_parts() -> None:
    u = SipUri.parse("sips:alice:secret@Example.COM:5061;transport=tls;lr?Subject=hi")
    assert (u.scheme, u.user, u.password, u.host, u.port) == (
        "sips", "alice", "secret", "Example.COM", 5061)
    assert u.params == {"transport": "tls", "lr": None}
    assert u.headers == "Subject=hi"
    assert str(u) == "sips:alice:secret@Example.COM:5061;transport=tls;lr?Subject=hi"
    assert u.is_sip


def test_tel_and_other_schemes() -> None:
    t = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert t.user == "+1-201-555-0123" and t.params == {"phone-context": "example.com"}
    assert str(t) == "tel:+1-201-555-0123;phone-context=example.com"
    with pytest.raises(SipParseError) as info:
        SipUri.parse("mailto:a@example.com")
    assert info.value.status == 416
    other = SipUri.parse("urn:service:sos", any_scheme=True)
    assert other.opaque == "service:sos" and not other.is_sip and str(other) == "urn:service:sos"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("example.com", "example.com", None),
        ("192.0.2.1:5060", "192.0.2.1", 5060),
        ("[2001:db8::1]", "[2001:db8::1]", None),
        ("[2001:db8::1]:5070", "[2001:db8::1]", 5070),
        ("[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]", None),
    ],
)
def test_hostport(text: str, host: str, port: int | None) -> None:
    assert split_hostport(text) == (host, port)


@pytest.mark.parametrize(
    "bad",
    ["", ":5060", "host:0", "host:65536", "host:50x", "2001:db8::1", "[2001:db8::1",
     "[2001:db8:::1]", "[192.0.2.1]", "[2001:db8::1]x", "ho st", "h<st"],
)
def test_bad_hostport(bad: str) -> None:
    with pytest.raises(SipParseError):
        split_hostport(bad)


@pytest.mark.parametrize(
    "bad",
    ["sip:", "sip:@host", "sip:us er@host", "sip:user@", "sip:a%zz@host", "sip:a@host;;=x",
     "<sip:a@host>", "sip:a@host;p=<x>", "1sip:host"],
)
def test_bad_uris_are_400(bad: str) -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse(bad)
    assert info.value.status == 400


def test_user_escapes_round_trip() -> None:
    u = SipUri.parse("sip:%61lice%20b@example.com")
    assert u.user == "alice b"
    assert SipUri.parse(str(u)) == u


def test_name_addr_forms() -> None:
    a = NameAddr.parse('"Alice \\"A\\"" <sip:alice@example.com;transport=udp>;tag=abc;x')
    assert a.display == 'Alice \\"A\\"' and a.tag == "abc" and a.params["x"] is None
    assert a.uri.params == {"transport": "udp"}
    assert NameAddr.parse(str(a)) == a
    b = NameAddr.parse("sip:bob@example.com ; tag = 9")
    assert b.tag == "9" and not b.bracketed and b.uri.params == {}
    assert str(b.with_tag("10")) == "sip:bob@example.com;tag=10"
    c = NameAddr.parse("Bob Smith <sip:bob@example.com>")
    assert c.display == "Bob Smith"
    d = NameAddr.parse("Jos\u00e9 <sip:jose@example.com>")  # UTF-8 names unquoted are tolerated
    assert d.display == "Jos\u00e9"


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ('"unterminated <sip:a@b>', "quoted"),
        ("Smith, John <sip:a@b>", "quotes"),
        ("< sip:a@b>", "Spaces"),
        ("<sip:a@b", "Unclosed"),
        ("<sip:a@b> junk", "Garbage"),
        ("sip:a@b?x=y", "<URI>"),
        ('"x" sip:a@b', "<URI>"),
        ("", "Empty"),
    ],
)
def test_bad_name_addr(bad: str, words: str) -> None:
    with pytest.raises(SipParseError) as info:
        NameAddr.parse(bad)
    assert words in info.value.reason


def test_quoted_header_param_with_semicolon() -> None:
    a = NameAddr.parse('<sip:a@b>;+sip.instance="<urn:uuid:1;2>";expires=60')
    assert a.params == {"+sip.instance": '"<urn:uuid:1;2>"', "expires": "60"}
