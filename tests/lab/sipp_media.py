"""Media helpers for sipp runs: free port blocks for -mp, raw A-law tone files for rtp_stream."""

from __future__ import annotations

import math
from pathlib import Path

from lab.netutil import bindable
from softphone.native.g711 import alaw_encode


def media_ports(first: int, count: int, span: int = 4) -> list[int]:
    """``count`` bases of ``span`` free consecutive UDP ports (sipp binds -mp .. -mp+3)."""
    out: list[int] = []
    port = first
    while len(out) < count and port < first + 2000:
        if all(bindable(p) for p in range(port, port + span)):
            out.append(port)
        port += span
    assert len(out) == count, "no free media ports"
    return out



def write_alaw(path: Path, freq: float, secs: float) -> None:
    n = int(8000 * secs)
    pcm = b"".join(int(8000 * math.sin(2 * math.pi * freq * i / 8000)).to_bytes(2, "little",
                                                                                  signed=True)
                   for i in range(n))
    path.write_bytes(alaw_encode(pcm))
