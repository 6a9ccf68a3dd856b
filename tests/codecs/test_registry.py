"""The codec registry and the configurable offer order."""

from __future__ import annotations

import dataclasses

import pytest
from softphone.codecs.registry import (
    DEFAULT_ORDER,
    OPUS,
    PCMA,
    PCMU,
    STATIC_PAYLOAD_TYPES,
    TELEPHONE_EVENT,
    Codec,
    UnknownCodecError,
    codec_by_name,
    codec_order_from_names,
)


def test_constants_are_what_the_terms_require() -> None:
    assert DEFAULT_ORDER == (OPUS, PCMA, PCMU)
    assert (OPUS.name, OPUS.clock_rate, OPUS.channels, OPUS.payload_type) == ("opus", 48000, 2, 96)
    assert OPUS.fmtp == "useinbandfec=1" and not OPUS.is_static
    assert (PCMA.payload_type, PCMA.rtpmap, PCMA.is_static) == (8, "PCMA/8000", True)
    assert (PCMU.payload_type, PCMU.rtpmap) == (0, "PCMU/8000")
    assert (TELEPHONE_EVENT.payload_type, TELEPHONE_EVENT.rtpmap, TELEPHONE_EVENT.fmtp) == (
        101,
        "telephone-event/8000",
        "0-16",
    )
    assert OPUS.rtpmap == "opus/48000/2"
    assert STATIC_PAYLOAD_TYPES[8] == ("PCMA", 8000, 1)
    assert STATIC_PAYLOAD_TYPES[18] == ("G729", 8000, 1)


def test_codec_is_frozen_and_payload_type_rebinds() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        OPUS.payload_type = 111  # type: ignore[misc]
    chrome_opus = OPUS.with_payload_type(111)
    assert chrome_opus.payload_type == 111 and chrome_opus.rtpmap == OPUS.rtpmap
    assert OPUS.payload_type == 96
    with pytest.raises(ValueError, match="out of range"):
        OPUS.with_payload_type(128)


@pytest.mark.parametrize(
    ("codec", "encoding", "rate", "channels", "expected"),
    [
        (OPUS, "opus", 48000, 2, True),
        (OPUS, "OPUS", 48000, 2, True),
        (OPUS, "opus", 48000, 1, True),  # RFC 7587 says /2; a peer writing /1 still means opus
        (OPUS, "opus", 16000, 2, False),
        (PCMA, "pcma", 8000, 1, True),
        (PCMA, "PCMA", 8000, 2, False),
        (PCMA, "PCMU", 8000, 1, False),
        (PCMU, "PCMU", 16000, 1, False),
    ],
)
def test_matches(codec: Codec, encoding: str, rate: int, channels: int, expected: bool) -> None:
    assert codec.matches(encoding, rate, channels) is expected


def test_order_from_names() -> None:
    assert codec_order_from_names(["opus", "PCMA", "PCMU"]) == DEFAULT_ORDER
    assert codec_order_from_names(["pcmu", " Opus "]) == (PCMU, OPUS)
    assert codec_order_from_names(("PCMA",)) == (PCMA,)
    assert codec_by_name("pcma") is PCMA


@pytest.mark.parametrize(
    ("names", "reason"),
    [
        (["opus", "G729"], r"unknown codec 'G729' \(known: opus, PCMA, PCMU\)"),
        (["opus", "OPUS"], "listed twice"),
        ([], "empty"),
        ("opus", "must be a list"),
        ([7], "strings"),
        (["telephone-event"], "unknown codec"),
    ],
)
def test_order_from_names_errors(names: object, reason: str) -> None:
    with pytest.raises(UnknownCodecError, match=reason):
        codec_order_from_names(names)  # type: ignore[arg-type]
    assert issubclass(UnknownCodecError, ValueError)
