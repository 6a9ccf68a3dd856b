"""tshark on loopback for RTP: which UDP ports talked to which, how many packets."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path


class UdpCapture:
    """Counts UDP datagrams per (source port, destination port) for a BPF filter."""

    def __init__(self, workdir: Path, bpf: str, seconds: int = 60) -> None:
        self.out = workdir / "udp_capture.txt"
        self.err = workdir / "udp_capture.err"
        argv = ["tshark", "-i", "lo", "-f", bpf, "-a", f"duration:{seconds}", "-l",
                "-T", "fields", "-E", "separator=|", "-e", "udp.srcport", "-e", "udp.dstport"]
        with self.out.open("wb") as o, self.err.open("wb") as e:
            self.proc = subprocess.Popen(argv, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while "Capturing on" not in self.err.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise AssertionError(f"tshark did not start: {self.err.read_text()[-400:]}")
            time.sleep(0.05)

    def stop(self) -> Counter[tuple[int, int]]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        flows: Counter[tuple[int, int]] = Counter()
        for line in self.out.read_text(errors="replace").splitlines():
            src, _, dst = line.partition("|")
            if src.isdigit() and dst.isdigit():
                flows[(int(src), int(dst))] += 1
        return flows
