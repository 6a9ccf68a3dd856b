"""The agent's TOML file: a bad key or value names the file, the key and its line, and the
agent exits 2 before anything binds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from softphone.agent.config import ConfigError, parse

GOOD = """
[agent]
id = "desk-1"

[mqtt]
host = "127.0.0.1"
port = 1883

[[accounts]]
name = "main"
registrar = "sip:127.0.0.1:5060"
user = "1001"
password = "demo-1001"

[[accounts]]
name = "second"
registrar = "sip:127.0.0.1:5070;transport=tcp"
user = "2001"
emergency = true
"""


def test_a_good_file_gives_accounts_codecs_in_order_and_the_broker() -> None:
    cfg = parse(GOOD, "agent.toml")
    assert cfg.agent_id == "desk-1"
    assert [a.name for a in cfg.accounts] == ["main", "second"]
    assert [c.name for c in cfg.codecs] == ["opus", "PCMA", "PCMU"]
    assert cfg.rtp_ports == (20000, 22000)
    assert cfg.mqtt is not None and cfg.mqtt.port == 1883 and cfg.mqtt.queue == 1000
    assert cfg.accounts[1].emergency and not cfg.accounts[0].emergency


def test_without_mqtt_control_is_off() -> None:
    text = GOOD.replace('[mqtt]\nhost = "127.0.0.1"\nport = 1883\n', "")
    assert parse(text).mqtt is None


@pytest.mark.parametrize(("old", "new", "key", "line"), [
    ('user = "2001"', 'user = "2001"\nsecret = 1', "accounts[1].secret", 19),
    ('id = "desk-1"', 'id = "desk/1"', "agent.id", 3),
    ('port = 1883', 'port = 70000', "mqtt.port", 7),
    ('name = "second"', 'name = "main"', "accounts[1].name", 16),
    ('registrar = "sip:127.0.0.1:5060"', 'registrar = "http://x"', "accounts[0].registrar", 11),
    ('[agent]\nid = "desk-1"', '[agent]\nid = "desk-1"\ncodecs = ["opus", "g729"]',
     "agent.codecs", 4),
])
def test_a_bad_key_names_the_key_and_its_line(old: str, new: str, key: str, line: int) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as err:
        parse(GOOD.replace(old, new, 1), "agent.toml")
    assert err.value.key == key and err.value.line == line, str(err.value)
    assert str(err.value).startswith(f"agent.toml:{line}: {key}: "), str(err.value)


def test_the_command_exits_2_naming_key_and_line_before_binding(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(GOOD.replace("port = 1883", "port = \"x\""))
    out = subprocess.run([sys.executable, "-m", "softphone", "agent", "--config", str(path)],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2, out
    assert f"{path}:7: mqtt.port: must be an integer" in out.stderr, out.stderr
    bad_audio = subprocess.run([sys.executable, "-m", "softphone", "agent", "--config",
                                str(path.with_name("none.toml")), "--audio", "null"],
                               capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL)
    assert bad_audio.returncode == 2 and "none.toml" in bad_audio.stderr, bad_audio.stderr
