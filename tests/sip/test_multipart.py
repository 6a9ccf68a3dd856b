"""MIME multipart bodies (RFC 2046 §5.1, RFC 5621): what a phone sends, what we build."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from softphone.sip.multipart import (
    BodyPart,
    MultipartError,
    boundary_of,
    build_multipart,
    parse_multipart,
)

SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" \
      b"m=audio 4000 RTP/AVP 8\r\n"


def test_rfc_6442_example_shape_splits_into_sdp_and_pidf() -> None:
    body = (b"--boundary1\r\nContent-Type: application/sdp\r\n\r\n" + SDP +
            b"\r\n--boundary1\r\nContent-Type: application/pidf+xml\r\n"
            b"Content-ID: <target123@atlanta.example.com>\r\n\r\n<presence/>\r\n"
            b"--boundary1--\r\n")
    parts = parse_multipart('multipart/mixed; boundary="boundary1"', body)
    assert [p.media_type for p in parts] == ["application/sdp", "application/pidf+xml"]
    assert parts[0].body == SDP
    assert parts[1].content_id == "target123@atlanta.example.com"
    assert parts[1].body == b"<presence/>"


def test_a_preamble_and_transport_padding_are_skipped() -> None:
    body = b"ignored preamble\r\n--b  \r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--"
    (part,) = parse_multipart("multipart/mixed;boundary=b", body)
    assert part.body == b"hi"


def test_a_part_without_content_type_is_text_plain() -> None:
    (part,) = parse_multipart("multipart/mixed;boundary=b", b"--b\r\n\r\nhi\r\n--b--\r\n")
    assert part.media_type == "text/plain" and part.body == b"hi"


@pytest.mark.parametrize(("content_type", "body", "fault"), [
    ("multipart/mixed", b"--b\r\n\r\nx\r\n--b--", "no boundary"),
    ('multipart/mixed;boundary=""', b"--\r\n\r\nx\r\n----", "invalid boundary"),
    ("multipart/mixed;boundary=b", b"--b\r\nContent-Type: a/b\r\n\r\nx", "no closing"),
    ("multipart/mixed;boundary=b", b"no delimiter here", "no delimiter"),
    ("multipart/mixed;boundary=b", b"--b--\r\n", "no body part"),
    ("multipart/mixed;boundary=b", b"--b\r\nbad header line\r\n\r\nx\r\n--b--", "bad part"),
    ("multipart/mixed;boundary=b", b"--bxx\r\n\r\nx\r\n--b--", "not followed by CRLF"),
])
def test_broken_bodies_are_a_400_naming_the_fault(content_type: str, body: bytes,
                                                  fault: str) -> None:
    with pytest.raises(MultipartError) as err:
        parse_multipart(content_type, body)
    assert err.value.status == 400 and fault in err.value.reason


def test_too_many_parts_are_refused() -> None:
    body = b"".join(b"--b\r\n\r\nx\r\n" for _ in range(17)) + b"--b--"
    with pytest.raises(MultipartError, match="more than 16"):
        parse_multipart("multipart/mixed;boundary=b", body)


def test_boundary_is_read_quoted_or_not() -> None:
    assert boundary_of("multipart/mixed; charset=x; boundary=abc") == "abc"
    assert boundary_of('multipart/mixed;BOUNDARY="a b:c"') == "a b:c"


_headers = st.lists(st.tuples(st.sampled_from(["Content-Type", "Content-ID", "X-A"]),
                              st.text("abcdef/+@<>.-", min_size=1, max_size=20)), max_size=3)


@given(st.lists(st.tuples(_headers, st.binary(max_size=200)), min_size=1, max_size=5))
@example([([], b"\r\n")])  # no headers, a body that is an empty line: was read as b""
def test_what_we_build_parses_back_to_the_same_parts(spec: list[tuple[list[tuple[str, str]],
                                                                      bytes]]) -> None:
    boundary = "loc-7f3a9c"
    parts = [BodyPart(tuple(h), b) for h, b in spec
             if b"\r\n--" + boundary.encode() not in b"\r\n" + b]
    if not parts:
        return
    body = build_multipart(boundary, parts)
    assert parse_multipart(f"multipart/mixed;boundary={boundary}", body) == parts


@given(st.binary(max_size=300))
def test_any_bytes_are_parts_or_a_400(body: bytes) -> None:
    try:
        parts = parse_multipart("multipart/mixed;boundary=b", body)
    except MultipartError as exc:
        assert exc.status == 400
    else:
        assert parts
