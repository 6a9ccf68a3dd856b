"""G.711 frame codecs and ``codec_for``: what the bridge gets for each negotiated stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from softphone.codecs.frame import (
    FrameCodec,
    OpusFrameCodec,
    UnsupportedCodec,
    codec_for,
    fmtp_params,
)
from softphone.codecs.g711 import G711Codec, G711Error
from softphone.codecs.offer_answer import answer_offer
from softphone.codecs.registry import OPUS, PCMA, PCMU, Codec
from softphone.codecs.sdp import parse_sdp


@pytest.mark.parametrize("law", ["PCMA", "PCMU"])
def test_g711_tone_round_trip(audio: Any, law: str) -> None:
    codec = G711Codec(law)
    assert codec.frame_samples(20) == 160 and codec.frame_samples(30) == 240
    out = b""
    for i in range(10):
        payload = codec.encode(audio.tone(1000, 8000, 160, start=i * 160))
        assert len(payload) == 160
        out += codec.decode(payload)
    assert audio.tone_ratio(out, 8000, 1000) > 0.99
    assert abs(audio.rms(out) - 5657) < 100


def test_g711_known_code_points() -> None:
    # ITU-T G.711: silence encodes to 0xD5 (A-law) and 0xFF (mu-law); decode of those is ~0.
    assert G711Codec("PCMA").encode(bytes(4)) == b"\xd5\xd5"
    assert G711Codec("pcmu").encode(bytes(4)) == b"\xff\xff"
    assert G711Codec("PCMU").decode(b"\x80") == (32124).to_bytes(2, "little", signed=True)
    assert G711Codec("PCMA").decode(b"\x55") == (-8).to_bytes(2, "little", signed=True)


def test_g711_plc_replays_at_half_then_silence(audio: Any) -> None:
    codec = G711Codec("PCMA")
    assert codec.decode(None) == bytes(320)  # nothing heard yet: silence
    last = codec.decode(codec.encode(audio.tone(1000, 8000, 160)))
    first = codec.decode(None)
    assert abs(audio.rms(first) - audio.rms(last) / 2) < 5
    assert audio.tone_ratio(first, 8000, 1000) > 0.99
    assert codec.decode(None) == bytes(320)
    codec.decode(codec.encode(audio.tone(1000, 8000, 160)))
    assert audio.rms(codec.decode(None)) > 1000  # a good packet resets the loss run


def test_g711_errors() -> None:
    with pytest.raises(G711Error, match="unknown G.711 law"):
        G711Codec("G722")
    with pytest.raises(G711Error, match="whole 16-bit samples"):
        G711Codec("PCMA").encode(b"\x00\x01\x02")
    with pytest.raises(G711Error, match="ptime"):
        G711Codec("PCMA").frame_samples(0)


def test_codec_for_registry_codecs(audio: Any) -> None:
    pcma = codec_for(PCMA.with_payload_type(8))
    assert isinstance(pcma, G711Codec) and isinstance(pcma, FrameCodec)
    assert (pcma.clock_rate, pcma.rtp_clock_rate, pcma.payload_type) == (8000, 8000, 8)
    opus = codec_for(OPUS.with_payload_type(111), opus_rate=16000)
    assert isinstance(opus, OpusFrameCodec) and isinstance(opus, FrameCodec)
    assert (opus.clock_rate, opus.rtp_clock_rate, opus.payload_type) == (16000, 48000, 111)
    assert opus.frame_samples(20) == 320 and opus.rtp_samples(20) == 960
    assert pcma.frame_samples(20) == pcma.rtp_samples(20) == 160
    out = b"".join(
        opus.decode(opus.encode(audio.tone(1000, 16000, 320, start=i * 320))) for i in range(25)
    )
    assert audio.tone_ratio(out[len(out) // 2 :], 16000, 1000) > 0.95
    assert len(opus.decode(None)) == 640
    with pytest.raises(UnsupportedCodec, match="G729/8000"):
        codec_for(Codec("G729", 8000, 1, 18))


def test_codec_for_negotiated_reads_the_peers_fmtp(sdp_file: Callable[[str], bytes]) -> None:
    baresip = answer_offer(
        parse_sdp(sdp_file("baresip_offer.sdp")), address="127.0.0.1", port=20000
    )
    codec = codec_for(baresip)
    assert isinstance(codec, OpusFrameCodec)
    assert codec.encoder.get("inband_fec") == 0  # baresip did not say useinbandfec=1
    offer = (
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=fmtp:111 minptime=10; useinbandfec=1; maxaveragebitrate=20000\r\n"
    )
    chrome_like = codec_for(answer_offer(parse_sdp(offer), address="10.0.0.2", port=20000))
    assert isinstance(chrome_like, OpusFrameCodec)
    assert chrome_like.payload_type == 111
    assert chrome_like.encoder.get("inband_fec") == 1
    assert chrome_like.encoder.get("bitrate") == 20000
    pjsua = answer_offer(parse_sdp(sdp_file("pjsua2_offer.sdp")), address="127.0.0.1", port=20000)
    assert isinstance(codec_for(pjsua), G711Codec) and codec_for(pjsua).payload_type == 8
    sipp = answer_offer(parse_sdp(sdp_file("sipp_uac_offer.sdp")), address="127.0.0.1", port=20000)
    assert codec_for(sipp).name == "PCMU" and codec_for(PCMU).payload_type == 0


def test_fmtp_params() -> None:
    assert fmtp_params("stereo=1;sprop-stereo=1") == {"stereo": "1", "sprop-stereo": "1"}
    assert fmtp_params(" minptime=10; useinbandfec=1 ") == {"minptime": "10", "useinbandfec": "1"}
    assert fmtp_params(None) == {} and fmtp_params("") == {}
    assert fmtp_params("0-16") == {"0-16": ""}
