"""Pure-Python reference of the conference mixer (softphone.native.mixer / sp_mix).

w_j = (gain_j * x_j + 16384) >> 15 (floor shift: round half up), exact integer sums,
clamp to int16 at the end. Leg i hears everything but itself, plus its inject frame.
"""

from __future__ import annotations


def clamp16(v: int) -> int:
    return -32768 if v < -32768 else 32767 if v > 32767 else v


def mix(inputs: list[list[int]], gains: list[int],
        injects: list[list[int] | None]) -> tuple[list[list[int]], list[int]]:
    n = len(inputs)
    ns = len(inputs[0]) if n else 0
    weighted = [[(g * x + 16384) >> 15 for x in frame] for frame, g in zip(inputs, gains, strict=True)]
    totals = [sum(w[k] for w in weighted) for k in range(ns)]
    record = [clamp16(t) for t in totals]
    outputs = []
    for i in range(n):
        inj = injects[i]
        outputs.append([clamp16(totals[k] - weighted[i][k] + (inj[k] if inj is not None else 0))
                        for k in range(ns)])
    return outputs, record
