"""Pure-Python reference of the polyphase resampler (softphone.native.resampler / sp_rs).

Given the prototype taps h (Q15) that the C side designed, this is the plain definition of
a streaming interpolator / decimator with exact integer sums:
  up by L:   y[n*L + p] = sum_j h[p + j*L] * x[n - j]
  down by M: y[t/M]     = sum_k h[k] * x[t - k]      for t = 0, M, 2M, ... of the stream
each rounded as (acc + 16384) >> 15 and clamped to int16; x before the stream is zero.
"""

from __future__ import annotations


def clamp16(v: int) -> int:
    return -32768 if v < -32768 else 32767 if v > 32767 else v


class ReferenceResampler:
    def __init__(self, up: int, down: int, taps: tuple[int, ...]) -> None:
        self.up, self.down, self.taps = up, down, taps
        self.copy = up == down == 1
        span = len(taps) // up if up > 1 else len(taps)
        self.history = [0] * (span - 1)
        self.next = 0  # decimation: stream index of the next output, relative to this call

    def process(self, samples: list[int]) -> list[int]:
        if self.copy:
            return list(samples)
        h, L, M = self.taps, self.up, self.down
        past = len(self.history)
        x = self.history + list(samples)  # x[past + i] is samples[i]
        out: list[int] = []
        if M == 1:
            per = len(h) // L
            for n in range(len(samples)):
                for p in range(L):
                    acc = sum(h[p + j * L] * x[past + n - j] for j in range(per))
                    out.append(clamp16((acc + 16384) >> 15))
        else:
            t = self.next
            while t < len(samples):
                acc = sum(h[k] * x[past + t - k] for k in range(len(h)))
                out.append(clamp16((acc + 16384) >> 15))
                t += M
            self.next = t - len(samples)
        self.history = x[len(x) - past:] if past else []
        return out
