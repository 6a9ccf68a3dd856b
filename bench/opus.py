"""Opus wrapper overhead (goal O1 of PERF-ANCHORS: <= 1.1x opuslib) and transcode legs per core.

For each rate and complexity, the same synthetic speech-like frames (voiced harmonics, syllable
envelope, pauses: silence would flatter the encoder) are encoded and decoded by opuslib's own
classes (the reference) and by softphone.codecs.opus, with the same settings (VOIP, mono, FEC
off on both, auto bitrate). Process CPU time, best of 3, per 20 ms frame.

usage: python bench/opus.py [seconds-of-audio]
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import numpy as np
import opuslib  # type: ignore[import-untyped]
import opuslib.api.ctl  # type: ignore[import-untyped]
import opuslib.api.encoder  # type: ignore[import-untyped]
from softphone.codecs.opus import OpusDecoder, OpusEncoder, libopus_version


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

    ref_enc = opuslib.Encoder(rate, 1, opuslib.APPLICATION_VOIP)
    opuslib.api.encoder.encoder_ctl(
        ref_enc.encoder_state, opuslib.api.ctl.set_complexity, complexity
    )
    ref_dec = opuslib.Decoder(rate, 1)
    ours_enc = OpusEncoder(rate, 1, "voip", complexity=complexity, fec=False)
    ours_dec = OpusDecoder(rate, 1)

    packets = [ref_enc.encode(f, fs) for f in frames]
    ours_packets = [ours_enc.encode(f) for f in frames]
    # Same settings, fresh states: the bitstreams must be identical, so the work is the same.
    assert packets == ours_packets, "wrapper and opuslib disagree on the bitstream"

    def ref_encode() -> None:
        for f in frames:
            ref_enc.encode(f, fs)

    def ref_decode() -> None:
        for p in packets:
            ref_dec.decode(p, fs)

    def our_encode() -> None:
        for f in frames:
            ours_enc.encode(f)

    def our_decode() -> None:
        for p in packets:
            ours_dec.decode(p)

    n = len(frames)
    return (
        best(ref_encode) / n * 1e6,
        best(ref_decode) / n * 1e6,
        best(our_encode) / n * 1e6,
        best(our_decode) / n * 1e6,
    )


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    print(
        f"{libopus_version()}, VOIP mono, {seconds:g} s of speech-like audio, best of 3, CPU µs per 20 ms"
    )
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
