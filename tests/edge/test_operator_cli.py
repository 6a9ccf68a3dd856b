"""`softphone status` and the `[http]` keys: clear errors, nothing else changed."""

from __future__ import annotations

import socket
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from softphone.configfile import ConfigError
from softphone.edge.config import Overrides, apply_overrides, load_edge_config


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_status_says_when_no_edge_answers(tmp_path: Path) -> None:
    port = free_tcp_port()
    out = subprocess.run([sys.executable, "-m", "softphone", "status", "--http-port", str(port)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 1, out
    assert f"no edge answers at http://127.0.0.1:{port}/api/status" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_status_with_the_listener_off_asks_for_a_port(tmp_path: Path) -> None:
    text = resources.files("softphone.configs").joinpath("edge.toml").read_text()
    cfg = tmp_path / "edge.toml"
    cfg.write_text(text.replace("port = 8080", "port = 0"))
    out = subprocess.run([sys.executable, "-m", "softphone", "status", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2 and "give --http-port N" in out.stderr, out


def test_http_keys_are_checked_with_their_line(tmp_path: Path) -> None:
    text = resources.files("softphone.configs").joinpath("edge.toml").read_text()
    assert load_edge_config(None).http_port == 8080
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("port = 8080"))
    bad = tmp_path / "edge.toml"
    bad.write_text(text.replace("port = 8080", "port = 80800"))
    with pytest.raises(ConfigError) as err:
        load_edge_config(bad)
    assert (err.value.key, err.value.line) == ("http.port", line), err.value
    cfg = apply_overrides(load_edge_config(None), Overrides(http_port=0))
    assert cfg.http_port == 0
    with pytest.raises(ConfigError) as err:
        apply_overrides(cfg, Overrides(http_port=-1))
    assert err.value.key == "http.port"
