"""The media side of a sipp phone: a UDP socket named in the phone's SDP (``-set mport``).

It records every RTP payload that arrives (with its arrival time) and, once the edge has sent
it a packet (symmetric RTP: that source is where to talk back), sends PCMA at 20-ms pacing: a
tone from ``talk_after`` seconds on (silence before), and RFC 4733 key presses when asked.
sipp keeps the signalling real; this keeps the audio checkable sample by sample.
"""

from __future__ import annotations

import math
import socket
import struct
import threading
import time

from softphone.native.g711 import alaw_decode, alaw_encode

DTMF_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}


class RtpPhone:
    def __init__(self, freq: float, *, talk_after: float = 0.0, seconds: float = 30.0,
                 dtmf_pt: int = 101) -> None:
        self.freq = freq
        self.talk_after = talk_after
        self.seconds = seconds
        self.dtmf_pt = dtmf_pt
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.received: list[tuple[float, int, bytes]] = []  # (arrival, pt, payload)
        self.remote: tuple[str, int] | None = None
        self.first_at: float | None = None
        self.digits_sent: list[tuple[float, str]] = []
        self._keys: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rx = threading.Thread(target=self._receive, daemon=True)
        self._tx = threading.Thread(target=self._talk, daemon=True)
        self._rx.start()
        self._tx.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) <= 12 or data[0] >> 6 != 2:
                continue
            if self.remote is None:
                self.remote, self.first_at = source, time.monotonic()
            cc = data[0] & 0x0F
            self.received.append((time.monotonic(), data[1] & 0x7F, data[12 + 4 * cc:]))

    def press(self, key: str) -> None:
        """Send ``key`` as RFC 4733 events (about 160 ms, then three end packets)."""
        with self._lock:
            self._keys.append(key)

    def _talk(self) -> None:
        while self.remote is None and not self._stop.wait(0.01):
            pass
        if self.remote is None:
            return
        seq, ts, ssrc = 1000, 0, 0x5EED1234
        step = 2 * math.pi * self.freq / 8000
        start = time.monotonic()
        next_at = start
        n = 0
        while not self._stop.is_set() and time.monotonic() - start < self.seconds:
            with self._lock:
                key = self._keys.pop(0) if self._keys else None
            if key is not None:
                seq, ts, next_at = self._send_key(key, seq, ts, ssrc, next_at)
                continue
            if time.monotonic() - start >= self.talk_after:
                pcm = b"".join(struct.pack("<h", int(8000 * math.sin(step * (n + i))))
                               for i in range(160))
            else:
                pcm = bytes(320)
            n += 160
            header = struct.pack("!BBHII", 0x80, 8, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
            self._send(header + alaw_encode(pcm))
            seq, ts = seq + 1, ts + 160
            next_at += 0.02
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _send_key(self, key: str, seq: int, ts: int, ssrc: int,
                  next_at: float) -> tuple[int, int, float]:
        event = DTMF_EVENTS[key]
        self.digits_sent.append((time.monotonic(), key))
        for i in range(8):  # 160 ms of the key held
            payload = struct.pack("!BBH", event, 10, 160 * (i + 1))
            marker = 0x80 if i == 0 else 0
            self._send(struct.pack("!BBHII", 0x80, marker | self.dtmf_pt, seq & 0xFFFF, ts,
                                   ssrc) + payload)
            seq += 1
            next_at += 0.02
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        for _ in range(3):  # the end, three times (RFC 4733 §2.5.1.4)
            payload = struct.pack("!BBH", event, 0x80 | 10, 160 * 9)
            self._send(struct.pack("!BBHII", 0x80, self.dtmf_pt, seq & 0xFFFF, ts, ssrc)
                       + payload)
            seq += 1
        return seq, ts + 160 * 9, next_at

    def _send(self, packet: bytes) -> None:
        assert self.remote is not None
        try:
            self.sock.sendto(packet, self.remote)
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._tx.join(3)
        self._rx.join(3)
        self.sock.close()

    def pcm(self, since: float = 0.0, until: float = math.inf) -> bytes:
        """What arrived as PCMA, decoded (8 kHz), between two monotonic instants."""
        return b"".join(alaw_decode(p) for at, pt, p in self.received
                        if pt == 8 and since <= at < until)
