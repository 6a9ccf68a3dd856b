"""The seam between negotiation and the media bridge: one ``FrameCodec`` per negotiated leg.

A bridge that transcodes (Opus <-> G.711) sees every leg the same way: ``clock_rate`` is the
rate of the PCM it hands in and gets out (mono int16), ``frame_samples(ptime)`` the frame it
must cut, ``rtp_samples(ptime)`` the RTP timestamp step, ``encode`` makes one RTP payload and
``decode(None)`` conceals a lost one. The bridge resamples between legs with the native
resampler. ``rtp_clock_rate`` is the RTP timestamp rate, which for Opus is 48000 whatever the
PCM rate is (RFC 7587 §4.1).

Opus runs mono internally: the bridge mixes mono, and a mono encoder's packets are valid for a
peer that asked for ``stereo=1`` (RFC 7587 §6.1 makes stereo a receiver preference only). Its
internal rate is a parameter: 48 kHz for full band, 16 kHz to halve the cost of a wideband
bridge (see bench/opus.py).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from softphone.codecs.g711 import G711Codec
from softphone.codecs.offer_answer import Negotiated
from softphone.codecs.registry import Codec

__all__ = ["FrameCodec", "OpusFrameCodec", "UnsupportedCodec", "codec_for", "fmtp_params",
           "runnable"]


class UnsupportedCodec(ValueError):
    """A negotiated codec we have no encoder for (cannot happen with the registry's order)."""


@runtime_checkable
class FrameCodec(Protocol):
    name: str
    payload_type: int
    clock_rate: int
    rtp_clock_rate: int

    def frame_samples(self, ptime_ms: int = 20) -> int: ...

    def rtp_samples(self, ptime_ms: int = 20) -> int: ...

    def encode(self, pcm: bytes) -> bytes: ...

    def decode(self, payload: bytes | None) -> bytes: ...


def fmtp_params(fmtp: str | None) -> dict[str, str]:
    """``a=fmtp`` parameters as a dict: ``"stereo=1; useinbandfec=1"`` -> {"stereo": "1", ...}."""
    out: dict[str, str] = {}
    for item in (fmtp or "").split(";"):
        key, _, value = item.strip().partition("=")
        if key:
            out[key.strip().lower()] = value.strip()
    return out


class OpusFrameCodec:
    """Opus for one leg: mono PCM at ``internal_rate``, packets at RTP clock 48000."""

    name = "opus"
    rtp_clock_rate = 48000

    def __init__(
        self,
        payload_type: int = 96,
        *,
        internal_rate: int = 48000,
        complexity: int = 5,
        fec: bool = True,
        bitrate: int | None = None,
    ) -> None:
        from softphone.codecs.opus import OpusDecoder, OpusEncoder

        self.payload_type = payload_type
        self.clock_rate = internal_rate
        self.encoder = OpusEncoder(
            internal_rate, 1, "voip", complexity=complexity, bitrate=bitrate, fec=fec
        )
        self.decoder = OpusDecoder(internal_rate, 1)

    def frame_samples(self, ptime_ms: int = 20) -> int:
        return self.encoder.frame_samples(ptime_ms)

    def rtp_samples(self, ptime_ms: int = 20) -> int:
        """RTP timestamp increment per packet: always at 48 kHz for Opus."""
        self.encoder.frame_samples(ptime_ms)  # same validity check
        return self.rtp_clock_rate * ptime_ms // 1000

    def encode(self, pcm: bytes) -> bytes:
        return self.encoder.encode(pcm)

    def decode(self, payload: bytes | None) -> bytes:
        return self.decoder.decode(payload)

    def recover(self, next_payload: bytes) -> bytes:
        """The lost frame just before ``next_payload``, from its in-band FEC (else PLC).

        Call it when the jitter buffer holds the packet after a gap, then ``decode`` that same
        packet as usual for its own frame.
        """
        return self.decoder.decode(next_payload, fec=True)


def codec_for(
    negotiated: Negotiated | Codec,
    *,
    opus_rate: int = 48000,
    opus_complexity: int = 5,
    opus_bitrate: int | None = None,
) -> FrameCodec:
    """The frame codec for a negotiated stream (or a registry codec with its PT).

    For Opus, FEC is spent only when the peer said its decoder uses it (``useinbandfec=1``
    in its fmtp, RFC 7587 §6.1); a bare registry codec gets FEC on.
    """
    if isinstance(negotiated, Negotiated):
        codec = negotiated.codec
        remote = fmtp_params(negotiated.remote_fmtp)
        fec = remote.get("useinbandfec", "0") == "1"
        cap = remote.get("maxaveragebitrate", "")
        if cap.isdigit() and opus_bitrate is None:
            opus_bitrate = max(6000, min(510000, int(cap)))
    else:
        codec = negotiated
        fec = True
    name = codec.name.lower()
    if name == "opus":
        return OpusFrameCodec(
            codec.payload_type,
            internal_rate=opus_rate,
            complexity=opus_complexity,
            fec=fec,
            bitrate=opus_bitrate,
        )
    if name in ("pcma", "pcmu"):
        return G711Codec(codec.name, codec.payload_type)
    raise UnsupportedCodec(f"no frame codec for {codec.rtpmap}")


def runnable(codec: Codec) -> str:
    """Why ``codec`` cannot run here ("" when it can): one frame of silence through a fresh
    encoder and decoder, as a call would. The edge offers only codecs that pass, so it never
    answers a call with a codec it cannot run (an Opus whose library did not load, say)."""
    try:
        fc = codec_for(codec)
        frame = bytes(2 * fc.frame_samples(20))
        if len(fc.decode(fc.encode(frame))) != len(frame):
            return f"{codec.name}: a 20 ms frame did not come back whole"
    except Exception as exc:  # any failure means: do not offer it
        return f"{codec.name}: {exc}"
    return ""
