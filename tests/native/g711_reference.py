"""Pure-Python G.711 (ITU-T G.711 segment rules), the reference for softphone.native.g711.

Written from the standard's description (sign, 3-bit segment, 4-bit step; A-law with even
bits inverted, mu-law with all bits inverted and a bias of 33), not from the C tables, with
the input scaling and rounding of the CCITT/Sun reference code that CPython's audioop uses:
A-law on the 13-bit scale (sample >> 3, negatives as one's complement), mu-law on the 14-bit
scale (sample >> 2, negatives negated, magnitude clipped at 8159).
"""

from __future__ import annotations


def linear_to_alaw(sample: int) -> int:
    v = sample >> 3
    sign = 0x80 if v >= 0 else 0x00
    mag = v if v >= 0 else -v - 1            # 0 .. 4095
    seg = max(0, mag.bit_length() - 5)       # mag < 32 -> segment 0, else top bit - 4
    step = (mag >> 1) if seg == 0 else (mag >> seg)
    return (sign | (seg << 4) | (step & 0x0F)) ^ 0x55


def alaw_to_linear(code: int) -> int:
    a = code ^ 0x55
    seg = (a >> 4) & 0x07
    step = a & 0x0F
    mag = (step << 4) + 8 if seg == 0 else ((step << 4) + 0x108) << (seg - 1)
    return mag if a & 0x80 else -mag


def linear_to_ulaw(sample: int) -> int:
    v = sample >> 2
    sign = 0x80 if v < 0 else 0x00            # set before the inversion = negative
    mag = min(-v if v < 0 else v, 8159) + 33  # 33 .. 8192
    seg = mag.bit_length() - 6                 # 33..63 -> 0, ..., 4096..8191 -> 7
    if seg > 7:
        return (sign | 0x7F) ^ 0xFF
    step = (mag >> (seg + 1)) & 0x0F
    return (sign | (seg << 4) | step) ^ 0xFF


def ulaw_to_linear(code: int) -> int:
    u = code ^ 0xFF
    seg = (u >> 4) & 0x07
    step = u & 0x0F
    mag = (((step << 3) + 0x84) << seg) - 0x84
    return -mag if u & 0x80 else mag


def encode(law: str, pcm: list[int]) -> bytes:
    f = linear_to_alaw if law == "alaw" else linear_to_ulaw
    return bytes(f(s) for s in pcm)


def decode(law: str, data: bytes) -> list[int]:
    f = alaw_to_linear if law == "alaw" else ulaw_to_linear
    return [f(c) for c in data]
