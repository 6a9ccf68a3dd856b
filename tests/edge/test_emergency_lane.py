"""The flood guard's emergency lane: which request lines it lets past an exhausted budget."""

from __future__ import annotations

import pytest

from softphone.edge.emergency_lane import EmergencyLane


def lane() -> EmergencyLane:
    return EmergencyLane({"112", "15", "17", "911"}, outside_line_prefix="0")


def line(method: str, uri: str) -> bytes:
    return f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\n\r\n" \
        .encode()


@pytest.mark.parametrize("method,uri", [
    ("INVITE", "sip:112@edge.example"), ("INVITE", "sip:+112@edge;user=phone"),
    ("INVITE", "sip:0112@edge"), ("INVITE", "tel:112"), ("ACK", "sip:17@10.0.0.1:5060"),
    ("CANCEL", "sip:15@edge"), ("INVITE", "urn:service:sos.fire"),
    ("INVITE", "sip:urn%3Aservice%3Asos@edge"), ("INVITE", "SIP:911@EDGE"),
    ("INVITE", "sip:1-1-2@edge"),
])
def test_a_dialled_emergency_call_is_in_the_lane(method: str, uri: str) -> None:
    assert lane().kind(line(method, uri)) == "dialled"


@pytest.mark.parametrize("data", [
    line("INVITE", "sip:1002@edge"), line("INVITE", "sip:01120000@edge"),
    line("BYE", "sip:112@edge"), line("OPTIONS", "sip:112@edge"),
    line("REGISTER", "sip:edge"), line("INVITE", "sip:1002@edge;x=urn:service:sos"),
    b"SIP/2.0 200 OK\r\n\r\n", b"\r\n\r\n", b"", b"garbage", line("INVITE", "urn:service:police"),
])
def test_everything_else_is_not(data: bytes) -> None:
    assert lane().kind(data) is None


def test_a_live_emergency_dialog_is_recognised_by_its_token_only_while_live() -> None:
    lane_ = lane()
    token = lane_.new_token()
    assert token.startswith("sos-") and len(token) == 36
    for method in ("ACK", "BYE", "INVITE", "INFO"):
        assert lane_.kind(line(method, f"sip:{token}@127.0.0.1:5060")) == "dialog"
    assert lane_.kind(line("BYE", "sip:sos-00000000000000000000000000000000@edge")) is None
    lane_.release(token)
    assert lane_.kind(line("BYE", f"sip:{token}@127.0.0.1:5060")) is None
    assert lane().new_token() != lane().new_token()
