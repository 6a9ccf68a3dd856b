"""Opus: the codec's binding (libopus bundled in PyAV's wheel) beside opuslib over the system
libopus (the binding the codec used before), and transcode legs per core.

For each rate and complexity, the same synthetic speech-like frames (voiced harmonics, syllable
envelope, pauses: silence would flatter the encoder) are encoded and decoded by opuslib's own
classes (the reference, system libopus) and by softphone.codecs.opus (PyAV's libopus), with the
same settings (VOIP, mono, FEC off on both, auto bitrate). Process CPU time, best of 3, per
20 ms frame. The two libraries may be different libopus releases: each decodes its own
encoder's packets, so each column is one library's whole cost, and the ratio shows what moving
to the bundled library costs or saves. Without a system libopus the reference columns are
left out.

usage: python bench/opus.py [seconds-of-audio]
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import numpy as np
from softphone.codecs.opus import OpusDecoder, OpusEncoder, libopus_path, libopus_version

try:
    import opuslib  # type: ignore[import-untyped]
    import opuslib.api.ctl  # type: ignore[import-untyped]
    import opuslib.api.encoder  # type: ignore[import-untyped]
    import opuslib.api.info  # type: ignore[import-untyped]
except Exception as exc:  # opuslib raises at import when there is no system libopus
    opuslib = None
    NO_REFERENCE = f"opuslib not usable ({exc})"
else:
    NO_REFERENCE = ""


def speechlike(rate: int, seconds: float, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t) + 15 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    sig = np.zeros(n)
    for h in range(1, 25):
        if h * 160 > rate / 2:
            break
        sig += (1.0 / h) * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    env = np.clip(np.sin(2 * np.pi * 4 * t) * 0.5 + 0.5, 0, 1) ** 2
    pause = np.sin(2 * np.pi * 0.3 * t) > 0.6
    sig = sig * env * ~pause + 0.01 * rng.standard_normal(n)
    return (sig / np.max(np.abs(sig)) * 12000).astype("<i2")


def best(fn: Callable[[], None], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def run(rate: int, complexity: int, seconds: float) -> tuple[float, float, float, float]:
    pcm = speechlike(rate, seconds)
    fs = rate // 50
    frames = [pcm[i : i + fs].tobytes() for i in range(0, len(pcm) - fs + 1, fs)]
    ours_enc = OpusEncoder(rate, 1, "voip", complexity=complexity, fec=False)
    ours_dec = OpusDecoder(rate, 1)
    ours_packets = [ours_enc.encode(f) for f in frames]

    def our_encode() -> None:
        for f in frames:
            ours_enc.encode(f)

    def our_decode() -> None:
        for p in ours_packets:
            ours_dec.decode(p)

    n = len(frames)
    oe, od = best(our_encode) / n * 1e6, best(our_decode) / n * 1e6
    if opuslib is None:
        return math.nan, math.nan, oe, od
    ref_enc = opuslib.Encoder(rate, 1, opuslib.APPLICATION_VOIP)
    opuslib.api.encoder.encoder_ctl(
        ref_enc.encoder_state, opuslib.api.ctl.set_complexity, complexity
    )
    ref_dec = opuslib.Decoder(rate, 1)
    packets = [ref_enc.encode(f, fs) for f in frames]

    def ref_encode() -> None:
        for f in frames:
            ref_enc.encode(f, fs)

    def ref_decode() -> None:
        for p in packets:
            ref_dec.decode(p, fs)

    return best(ref_encode) / n * 1e6, best(ref_decode) / n * 1e6, oe, od


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    reference = NO_REFERENCE or (
        f"{opuslib.api.info.get_version_string().decode()} (system, through opuslib)")
    print(f"ours: {libopus_version()} from {libopus_path()}")
    print(f"reference: {reference}")
    print(f"VOIP mono, {seconds:g} s of speech-like audio, best of 3, CPU µs per 20 ms")
    header = (
        "| rate | cx | opuslib enc | opuslib dec | opuslib enc+dec | ours enc | ours dec "
        "| ours enc+dec | ours/opuslib | transcode legs/core (ours) |"
    )
    print(header)
    print("|---" * 10 + "|")
    for rate in (48000, 16000, 8000):
        for complexity in (9, 5):
            re_, rd, oe, od = run(rate, complexity, seconds)
            ratio = (oe + od) / (re_ + rd)
            legs = math.floor(20000 / (oe + od))
            print(
                f"| {rate} | {complexity} | {re_:.1f} | {rd:.1f} | {re_ + rd:.1f} | {oe:.1f} "
                f"| {od:.1f} | {oe + od:.1f} | {ratio:.2f} | {legs} |"
            )


if __name__ == "__main__":
    main()
