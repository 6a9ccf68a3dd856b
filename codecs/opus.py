"""Opus (RFC 6716, RTP payload RFC 7587) encoder and decoder over libopus.

Which libopus: the one PyAV's wheels bundle (``av.libs/libopus-*.so*``). aiortc, which
terminates the browser legs, depends on PyAV and decodes Opus through that same library, so one
Opus implementation serves every leg, and a fresh machine runs OPUS from the package install
alone (no system package). Where PyAV carries no libopus of its own (a PyAV built against the
system FFmpeg), the system's libopus (Debian ``libopus0``) is used instead; with neither,
:func:`load_error` says why, and the edge does not offer OPUS at all.

Why our own ctypes prototypes rather than PyAV's codec contexts: PyAV wraps FFmpeg's libopus
encoder, which has no packet-loss concealment entry (a lost packet cannot be "decoded") nor
in-band FEC recovery of the previous frame, and it allocates frame and packet objects per 20 ms
that cost more than the codec itself at 8-16 kHz (see bench/opus.py). libopus' own API is small
and stable (opus_encoder_create/opus_encode/opus_decode/the CTLs), so we call it directly, with
buffers allocated once per codec.

Frames are interleaved signed 16-bit little-endian PCM. Wrong sizes and corrupt packets raise
:class:`OpusCodecError`; ``decode(None)`` runs libopus' packet-loss concealment, and
``decode(next_packet, fec=True)`` recovers a lost frame from the in-band FEC of the next one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
import weakref
from collections.abc import Callable

__all__ = [
    "APPLICATIONS",
    "SAMPLE_RATES",
    "OpusCodecError",
    "OpusDecoder",
    "OpusEncoder",
    "libopus_path",
    "libopus_version",
    "load_error",
    "valid_frame_samples",
]

SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
# opus_defines.h
APPLICATIONS = {"voip": 2048, "audio": 2049, "restricted_lowdelay": 2051}
_SET = {"bitrate": 4002, "complexity": 4010, "inband_fec": 4012, "packet_loss_perc": 4014,
        "dtx": 4016}
_GET = {name: request + 1 for name, request in _SET.items()}
_RESET_STATE = 4028
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


def _candidates() -> list[str]:
    """Where libopus may be, best first: bundled in PyAV's wheel, then the system's."""
    out: list[str] = []
    forced = os.environ.get("SOFTPHONE_LIBOPUS")
    if forced:
        return [forced]
    spec = importlib.util.find_spec("av")
    if spec is not None and spec.submodule_search_locations:
        pkg = list(spec.submodule_search_locations)[0]
        site = os.path.dirname(pkg)
        for pattern in ("av.libs/libopus*.so*", "av/.dylibs/libopus*.dylib",
                        "av.libs/opus*.dll", "av.libs/libopus*.dll"):
            out += sorted(glob.glob(os.path.join(site, pattern)))
    system = ctypes.util.find_library("opus")
    if system:
        out.append(system)
    return out


def _load() -> tuple[ctypes.CDLL | None, str, str]:
    """(library, path, why not) for the first libopus that loads and looks like libopus."""
    errors: list[str] = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            lib.opus_get_version_string.restype = ctypes.c_char_p
            version = lib.opus_get_version_string()
        except (OSError, AttributeError) as exc:
            errors.append(f"{path}: {exc}")
            continue
        if not version or not version.startswith(b"libopus"):
            errors.append(f"{path}: not libopus ({version!r})")
            continue
        return lib, path, ""
    why = "; ".join(errors) or "no libopus found (PyAV's wheel bundles one: pip install av)"
    return None, "", why


_lib, _path, _why = _load()


def load_error() -> str:
    """Why OPUS cannot run here ("" when it can): the edge leaves it out of its offers."""
    return _why


def libopus_path() -> str:
    """The file of the libopus in use ("" when none could be loaded)."""
    return _path


def _api() -> ctypes.CDLL:
    if _lib is None:
        raise OpusCodecError(f"Opus is not available: {_why}")
    return _lib


def _prototypes(lib: ctypes.CDLL) -> None:
    i32, vp, ip = ctypes.c_int32, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)
    lib.opus_encoder_create.argtypes = [i32, ctypes.c_int, ctypes.c_int, ip]
    lib.opus_encoder_create.restype = vp
    lib.opus_encoder_destroy.argtypes = [vp]
    lib.opus_encoder_destroy.restype = None
    lib.opus_decoder_create.argtypes = [i32, ctypes.c_int, ip]
    lib.opus_decoder_create.restype = vp
    lib.opus_decoder_destroy.argtypes = [vp]
    lib.opus_decoder_destroy.restype = None
    lib.opus_encode.argtypes = [vp, ctypes.c_char_p, ctypes.c_int, vp, i32]
    lib.opus_encode.restype = i32
    lib.opus_decode.argtypes = [vp, ctypes.c_char_p, i32, vp, ctypes.c_int, ctypes.c_int]
    lib.opus_decode.restype = ctypes.c_int
    # the CTLs are variadic in C: every request we use passes one opus_int32 or one pointer
    # to one, which the x86-64 and AArch64 Linux ABIs pass like a fixed argument
    lib.opus_encoder_ctl.restype = ctypes.c_int
    lib.opus_decoder_ctl.restype = ctypes.c_int


if _lib is not None:
    _prototypes(_lib)


class OpusCodecError(ValueError):
    """Bad parameters, a PCM frame of the wrong size, or a packet libopus refuses."""


def libopus_version() -> str:
    """The loaded libopus' version string, e.g. ``libopus 1.5.2``."""
    raw: bytes = _api().opus_get_version_string()
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


def _created(create: Callable[[ctypes.c_int], int | None], what: str) -> int:
    err = ctypes.c_int(0)
    state = create(err)
    if err.value != 0 or not state:
        raise _error(err.value or -7, f"cannot create Opus {what}")
    return state


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
        lib = _api()
        self._lib = lib
        self._ptr = _created(lambda err: lib.opus_encoder_create(
            sample_rate, channels, APPLICATIONS[application], ctypes.byref(err)), "encoder")
        self._finalizer = weakref.finalize(self, lib.opus_encoder_destroy, self._ptr)
        self._ctl("complexity", complexity)
        if bitrate is not None:
            self._ctl("bitrate", bitrate)
        self._ctl("inband_fec", 1 if fec else 0)
        self._ctl("packet_loss_perc", expected_loss_percent if fec else 0)
        self._ctl("dtx", 1 if dtx else 0)
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)

    def _ctl(self, name: str, value: int) -> None:
        rc = self._lib.opus_encoder_ctl(ctypes.c_void_p(self._ptr), ctypes.c_int(_SET[name]),
                                        ctypes.c_int32(value))
        if rc != 0:
            raise _error(rc, f"Opus encoder setting {name}={value} refused")

    def get(self, request_name: str) -> int:
        """Read a CTL value, e.g. ``get("bitrate")``, ``get("complexity")``, ``get("inband_fec")``."""
        request = _GET.get(request_name)
        if request is None:
            raise OpusCodecError(f"no Opus encoder CTL get_{request_name}")
        value = ctypes.c_int32(0)
        rc = self._lib.opus_encoder_ctl(ctypes.c_void_p(self._ptr), ctypes.c_int(request),
                                        ctypes.byref(value))
        if rc != 0:
            raise _error(rc, f"Opus encoder get_{request_name}")
        return value.value

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
        n = self._lib.opus_encode(
            self._ptr, bytes(pcm_frame), samples, ctypes.addressof(self._out), MAX_PACKET_BYTES
        )
        if n < 0:
            raise _error(n, "opus_encode")
        return ctypes.string_at(self._out, n)

    def reset(self) -> None:
        self._lib.opus_encoder_ctl(ctypes.c_void_p(self._ptr), ctypes.c_int(_RESET_STATE))


class OpusDecoder:
    """One Opus decoder state; any Opus packet decodes at this rate and channel count."""

    def __init__(self, sample_rate: int = 48000, channels: int = 1) -> None:
        _check_rate_channels(sample_rate, channels)
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_sizes = valid_frame_samples(sample_rate)
        lib = _api()
        self._lib = lib
        self._ptr = _created(lambda err: lib.opus_decoder_create(
            sample_rate, channels, ctypes.byref(err)), "decoder")
        self._finalizer = weakref.finalize(self, lib.opus_decoder_destroy, self._ptr)
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
        n = self._lib.opus_decode(
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
        self._lib.opus_decoder_ctl(ctypes.c_void_p(self._ptr), ctypes.c_int(_RESET_STATE))
