"""Is a loopback port free? Asked by binding it ourselves: nothing reaches any peer."""

from __future__ import annotations

import socket
import subprocess
from typing import Any


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


def udp_ports_of(pid: int) -> set[int]:
    """The local UDP ports the process ``pid`` holds, from ``ss``."""
    out = subprocess.run(["ss", "-Hunap"], capture_output=True, text=True, timeout=10).stdout
    ports = set()
    for line in out.splitlines():
        if f"pid={pid}," in line:
            local = line.split()[3]
            ports.add(int(local.rsplit(":", 1)[1]))
    return ports


def edge_pid(edge: Any) -> int:
    """The edge itself (the child of timeout(1))."""
    assert edge.proc is not None
    out = subprocess.run(["pgrep", "-P", str(edge.proc.pid)], capture_output=True, text=True,
                         timeout=10).stdout.split()
    assert out, "the edge process is not running"
    return int(out[0])
