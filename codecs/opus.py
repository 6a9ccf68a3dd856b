"""Opus (RFC 6716, RTP payload RFC 7587) encoder and decoder over libopus.

Why opuslib: it is the maintained ctypes binding that loads the system libopus (Debian's
``libopus0``, 1.3.1 here), so there is nothing to compile and the codec is the one the
distribution patches. opuslib 3.0.1 imports and works on Python 3.11 (checked; its only wart is a
``SyntaxWarning`` for ``is not 0``). We use it for what it does well, loading the library,
creating and destroying the states and the CTLs, and call ``opus_encode``/``opus_decode``
through our own ctypes prototypes with buffers allocated once per codec: opuslib's
``Decoder.decode`` turns every frame into a Python list of ints on the way out and its
``Encoder.encode`` allocates an output buffer the size of the input, which costs more than the
codec itself at 8-16 kHz (see bench/opus.py).

Frames are interleaved signed 16-bit little-endian PCM. Wrong sizes and corrupt packets raise
:class:`OpusCodecError`; ``decode(None)`` runs libopus' packet-loss concealment, and
``decode(next_packet, fec=True)`` recovers a lost frame from the in-band FEC of the next one.
"""

from __future__ import annotations

import ctypes
import weakref
from typing import Any

import opuslib  # type: ignore[import-untyped]
import opuslib.api.ctl  # type: ignore[import-untyped]
import opuslib.api.decoder  # type: ignore[import-untyped]
import opuslib.api.encoder  # type: ignore[import-untyped]

__all__ = [
    "APPLICATIONS",
    "SAMPLE_RATES",
    "OpusCodecError",
    "OpusDecoder",
    "OpusEncoder",
    "libopus_version",
    "valid_frame_samples",
]

SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
APPLICATIONS = {
    "voip": opuslib.APPLICATION_VOIP,
    "audio": opuslib.APPLICATION_AUDIO,
    "restricted_lowdelay": opuslib.APPLICATION_RESTRICTED_LOWDELAY,
}
# libopus' recommended upper bound for one packet (opus_encode documentation).
MAX_PACKET_BYTES = 4000
MAX_FRAME_MS = 120

_ERRORS = {
    -1: "bad argument",
    -2: "buffer too small",
    -3: "internal error",
    -4: "corrupted packet",
    -5: "unimplemented request",
    -6: "invalid state",
    -7: "allocation failed",
}

_lib = opuslib.api.libopus
_encode = ctypes.CFUNCTYPE(
    ctypes.c_int32, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int32
)(("opus_encode", _lib))
_decode = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.c_int32,
    ctypes.c_void_p,
    ctypes.c_int,
    ctypes.c_int,
)(("opus_decode", _lib))


class OpusCodecError(ValueError):
    """Bad parameters, a PCM frame of the wrong size, or a packet libopus refuses."""


def libopus_version() -> str:
    """The loaded libopus' version string, e.g. ``libopus 1.3.1``."""
    raw: bytes = opuslib.api.info.get_version_string()
    return raw.decode()


def valid_frame_samples(sample_rate: int) -> tuple[int, ...]:
    """Samples per channel of the Opus frame durations 2.5, 5, 10, 20, 40 and 60 ms."""
    if sample_rate not in SAMPLE_RATES:
        raise OpusCodecError(f"Opus sample rate {sample_rate} not one of {SAMPLE_RATES}")
    base = sample_rate // 400  # 2.5 ms
    return tuple(base * k for k in (1, 2, 4, 8, 16, 24))


def _check_rate_channels(sample_rate: int, channels: int) -> None:
    if sample_rate not in SAMPLE_RATES:
        raise OpusCodecError(f"Opus sample rate {sample_rate} not one of {SAMPLE_RATES}")
    if channels not in (1, 2):
        raise OpusCodecError(f"Opus channels must be 1 or 2, got {channels}")


def _error(result: int, what: str) -> OpusCodecError:
    return OpusCodecError(f"{what}: libopus error {result} ({_ERRORS.get(result, 'unknown')})")


def _address(state: Any) -> int:
    return ctypes.cast(state, ctypes.c_void_p).value or 0


class OpusEncoder:
    """One Opus encoder state.

    ``fec`` turns on in-band FEC; libopus only spends bits on it when it expects loss, so
    ``expected_loss_percent`` (OPUS_SET_PACKET_LOSS_PERC) is set too. ``bitrate`` None leaves
    libopus' automatic choice.
    """

    def __init__(
        self,
        sample_rate: int = 48000,
        channels: int = 1,
        application: str = "voip",
        complexity: int = 5,
        bitrate: int | None = None,
        fec: bool = True,
        expected_loss_percent: int = 10,
        dtx: bool = False,
    ) -> None:
        _check_rate_channels(sample_rate, channels)
        if application not in APPLICATIONS:
            raise OpusCodecError(
                f"Opus application {application!r} not one of {list(APPLICATIONS)}"
            )
        if not 0 <= complexity <= 10:
            raise OpusCodecError(f"Opus complexity {complexity} out of range 0..10")
        if bitrate is not None and not 500 <= bitrate <= 512000:
            raise OpusCodecError(f"Opus bitrate {bitrate} out of range 500..512000 bit/s")
        if not 0 <= expected_loss_percent <= 100:
            raise OpusCodecError(f"expected loss {expected_loss_percent}% out of range 0..100")
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_sizes = valid_frame_samples(sample_rate)
        try:
            state = opuslib.api.encoder.create_state(
                sample_rate, channels, APPLICATIONS[application]
            )
        except opuslib.OpusError as exc:
            raise OpusCodecError(f"cannot create Opus encoder: {exc}") from None
        self._state = state
        self._ptr = _address(state)
        self._finalizer = weakref.finalize(self, opuslib.api.encoder.destroy, state)
        self._ctl(opuslib.api.ctl.set_complexity, complexity)
        if bitrate is not None:
            self._ctl(opuslib.api.ctl.set_bitrate, bitrate)
        self._ctl(opuslib.api.ctl.set_inband_fec, 1 if fec else 0)
        self._ctl(opuslib.api.ctl.set_packet_loss_perc, expected_loss_percent if fec else 0)
        self._ctl(opuslib.api.ctl.set_dtx, 1 if dtx else 0)
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)

    def _ctl(self, request: Any, value: int) -> None:
        try:
            opuslib.api.encoder.encoder_ctl(self._state, request, value)
        except opuslib.OpusError as exc:
            raise OpusCodecError(f"Opus encoder setting refused: {exc}") from None

    def get(self, request_name: str) -> int:
        """Read a CTL value, e.g. ``get("bitrate")``, ``get("complexity")``, ``get("inband_fec")``."""
        request = getattr(opuslib.api.ctl, f"get_{request_name}", None)
        if request is None:
            raise OpusCodecError(f"no Opus encoder CTL get_{request_name}")
        value: int = opuslib.api.encoder.encoder_ctl(self._state, request)
        return value

    def frame_samples(self, ptime_ms: float) -> int:
        """Samples per channel in a ``ptime_ms`` frame; an error unless Opus allows that size."""
        samples = int(round(self.sample_rate * ptime_ms / 1000))
        if samples not in self.frame_sizes:
            raise OpusCodecError(f"{ptime_ms} ms is not an Opus frame duration")
        return samples

    def encode(self, pcm_frame: bytes) -> bytes:
        """One packet from one frame of interleaved int16 PCM (2.5 to 60 ms)."""
        size = len(pcm_frame)
        bytes_per_sample = 2 * self.channels
        samples = size // bytes_per_sample
        if size % bytes_per_sample or samples not in self.frame_sizes:
            ms = ", ".join(f"{s * 1000 / self.sample_rate:g}" for s in self.frame_sizes)
            raise OpusCodecError(
                f"PCM frame of {size} bytes is not an Opus frame at {self.sample_rate} Hz x "
                f"{self.channels} ch (durations {ms} ms, {bytes_per_sample} bytes per sample)"
            )
        n = _encode(
            self._ptr, bytes(pcm_frame), samples, ctypes.addressof(self._out), MAX_PACKET_BYTES
        )
        if n < 0:
            raise _error(n, "opus_encode")
        return ctypes.string_at(self._out, n)

    def reset(self) -> None:
        opuslib.api.encoder.encoder_ctl(self._state, opuslib.api.ctl.reset_state)


class OpusDecoder:
    """One Opus decoder state; any Opus packet decodes at this rate and channel count."""

    def __init__(self, sample_rate: int = 48000, channels: int = 1) -> None:
        _check_rate_channels(sample_rate, channels)
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_sizes = valid_frame_samples(sample_rate)
        try:
            state = opuslib.api.decoder.create_state(sample_rate, channels)
        except opuslib.OpusError as exc:
            raise OpusCodecError(f"cannot create Opus decoder: {exc}") from None
        self._state = state
        self._ptr = _address(state)
        self._finalizer = weakref.finalize(self, opuslib.api.decoder.destroy, state)
        self._max_samples = sample_rate * MAX_FRAME_MS // 1000
        self._pcm = ctypes.create_string_buffer(self._max_samples * channels * 2)
        self._last_samples = sample_rate // 50  # 20 ms until a packet says otherwise

    def decode(
        self, packet: bytes | None, fec: bool = False, frame_samples: int | None = None
    ) -> bytes:
        """PCM of one packet; ``None`` (or b"") conceals a lost one.

        With ``fec=True`` the frame *before* ``packet`` is rebuilt from its in-band FEC (or
        concealed if it carries none). PLC and FEC produce ``frame_samples`` per channel,
        by default as many as the last decoded packet.
        """
        if packet is not None and not isinstance(packet, bytes | bytearray | memoryview):
            raise OpusCodecError(f"Opus packet must be bytes or None, got {type(packet).__name__}")
        data = bytes(packet) if packet else None
        if data is not None and len(data) > 1275 * 3 + 7:
            raise OpusCodecError(f"Opus packet of {len(data)} bytes exceeds the RFC 6716 limit")
        if data is None or fec:
            samples = self._last_samples if frame_samples is None else frame_samples
            if samples % (self.sample_rate // 400) or not 0 < samples <= self._max_samples:
                raise OpusCodecError(
                    f"{samples} samples is not a multiple of 2.5 ms at {self.sample_rate} Hz"
                )
        else:
            samples = self._max_samples
        n = _decode(
            self._ptr,
            data,
            len(data) if data else 0,
            ctypes.addressof(self._pcm),
            samples,
            1 if (fec and data is not None) else 0,
        )
        if n < 0:
            raise _error(n, "opus_decode")
        if data is not None and not fec:
            self._last_samples = n
        return ctypes.string_at(self._pcm, n * self.channels * 2)

    def reset(self) -> None:
        opuslib.api.decoder.decoder_ctl(self._state, opuslib.api.ctl.reset_state)
