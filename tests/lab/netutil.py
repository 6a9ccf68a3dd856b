"""Is a loopback port free? Asked by binding it ourselves: nothing reaches any peer."""

from __future__ import annotations

import socket


def bindable(port: int, kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> bool:
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind((host, port))
    except OSError:
        return False
    finally:
        s.close()
    return True


def free_udp_tcp(port: int) -> bool:
    return bindable(port, socket.SOCK_DGRAM) and bindable(port, socket.SOCK_STREAM)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A loopback port the kernel just handed out (bound once, then released)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
