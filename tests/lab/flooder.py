"""One misbehaving source on loopback: SIP requests as fast as a scanner sends them, from
127.0.0.2, bounded in time, in a thread the test starts and stops."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

# (edge port, our source port, message number) -> one datagram
Message = Callable[[int, int, int], bytes]


def flood(port: int, seconds: float, stop: threading.Event, sent: list[int],
          answered: list[int], message: Message, *, pace: int = 30) -> None:
    """``message`` datagrams to 127.0.0.1:``port`` from 127.0.0.2, a 10 ms pause every
    ``pace`` of them (about 3,000 a second at 30): much faster and the kernel's receive queue of
    the edge's one UDP socket overflows before the application sees anything, which is a job
    for the host's packet filter, not the edge. Counts what was sent and what was answered."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))
    s.setblocking(False)
    src = s.getsockname()[1]
    end = time.monotonic() + seconds
    n = 0
    try:
        while time.monotonic() < end and not stop.is_set():
            s.sendto(message(port, src, n), ("127.0.0.1", port))
            n += 1
            try:
                while True:
                    s.recv(4096)
                    answered[0] += 1
            except BlockingIOError:
                pass
            if n % pace == 0:
                time.sleep(0.01)
    finally:
        sent[0] = n
        s.close()
