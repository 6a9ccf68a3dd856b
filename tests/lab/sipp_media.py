"""Media helpers for sipp runs: free port blocks for -mp, raw A-law tone files for rtp_stream."""

from __future__ import annotations

import math
import socket
from pathlib import Path

from softphone.native.g711 import alaw_encode


def media_ports(first: int, count: int, span: int = 4) -> list[int]:
    """``count`` bases of ``span`` free consecutive UDP ports (sipp binds -mp .. -mp+3)."""
    out: list[int] = []
    port = first
    while len(out) < count and port < first + 2000:
        if all(_udp_free(p) for p in range(port, port + span)):
            out.append(port)
        port += span
    assert len(out) == count, "no free media ports"
    return out


def _udp_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        s.close()
    return True


def write_alaw(path: Path, freq: float, secs: float) -> None:
    n = int(8000 * secs)
    pcm = b"".join(int(8000 * math.sin(2 * math.pi * freq * i / 8000)).to_bytes(2, "little",
                                                                                  signed=True)
                   for i in range(n))
    path.write_bytes(alaw_encode(pcm))
