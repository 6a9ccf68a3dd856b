"""`softphone edge` refuses a bad configuration before anything binds, naming file, key, line."""

from __future__ import annotations

import socket
import subprocess
import sys
from importlib import resources
from pathlib import Path

from lab.netutil import free_port


def run_edge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "softphone", "edge", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_bad_config_names_key_and_line_and_starts_nothing(tmp_path: Path) -> None:
    text = resources.files("softphone.configs").joinpath("edge.toml").read_text()
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("rtp_ports"))
    bad = tmp_path / "edge.toml"
    bad.write_text(text.replace('rtp_ports = "20000-22000"', 'rtp_ports = "20001-22000"'))
    port = free_port()
    out = run_edge("--config", str(bad), "--sip-port", str(port), "--data-dir",
                   str(tmp_path / "data"), cwd=tmp_path)
    assert out.returncode == 2, out
    assert f"{bad}:{line}: media.rtp_ports:" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "data").exists()  # nothing started half-configured
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))  # the SIP port was never taken


def test_bad_flag_is_refused(tmp_path: Path) -> None:
    out = run_edge("--rtp-ports", "22000-20000", "--data-dir", str(tmp_path / "d"),
                   cwd=tmp_path)
    assert out.returncode == 2 and "--rtp-ports" in out.stderr, out
    out = run_edge("--bind", "192.0.2.10", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert out.returncode == 2 and "demo passwords" in out.stderr, out


def test_bad_policy_names_key_and_line_and_starts_nothing(tmp_path: Path) -> None:
    """The terms' tables are checked like the edge's own file: a bad value, and the edge
    never starts (no data dir, no port)."""
    text = resources.files("softphone.configs").joinpath("policy.toml").read_text()
    line = next(i for i, ln in enumerate(text.splitlines(), 1)
                if ln.startswith("objection_digit"))
    bad = tmp_path / "policy.toml"
    bad.write_text(text.replace('objection_digit = "9"', 'objection_digit = "99"', 1))
    port = free_port()
    out = run_edge("--policy", str(bad), "--sip-port", str(port), "--data-dir",
                   str(tmp_path / "data"), cwd=tmp_path)
    assert out.returncode == 2, out
    assert f"{bad}:{line}: recording.objection_digit:" in out.stderr, out.stderr
    assert "one DTMF key" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "data").exists()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))
