"""Edge configuration: defaults load, every bad value names its key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from softphone.configfile import ConfigError
from softphone.edge.config import (
    Durability,
    Overrides,
    apply_overrides,
    check_exposure,
    load_edge_config,
    parse_port_range,
)

GOOD = """\
[sip]
bind = "127.0.0.1"
udp_port = 5060

[media]
rtp_ports = "20000-22000"
codecs = ["opus", "PCMA", "PCMU"]

[[users]]
ext = "1001"
password = "demo-1001"

[[users]]
ext = "1002"
password = "secret-2"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "edge.toml"
    p.write_text(text)
    return p


def test_embedded_defaults() -> None:
    cfg = load_edge_config()
    assert (cfg.bind, cfg.udp_port, cfg.tcp_port) == ("127.0.0.1", 5060, 5060)
    assert (cfg.rtp_first, cfg.rtp_last) == (20000, 22000)
    assert [c.lower() for c in cfg.codecs] == ["opus", "pcma", "pcmu"]
    assert [u.ext for u in cfg.users] == ["1001", "1002", "1003", "1004"]
    assert cfg.echo_ext == "600" and cfg.tone_ext == "601"
    check_exposure(cfg)  # loopback with demo passwords is fine


@pytest.mark.parametrize(
    ("old", "new", "key", "line"),
    [
        ('rtp_ports = "20000-22000"', 'rtp_ports = "20001-22000"', "media.rtp_ports", 6),
        ('rtp_ports = "20000-22000"', 'rtp_ports = "banana"', "media.rtp_ports", 6),
        ('udp_port = 5060', 'udp_port = 70000', "sip.udp_port", 3),
        ('udp_port = 5060', 'udp_port = "5060"', "sip.udp_port", 3),
        ('bind = "127.0.0.1"', 'bind = "localhost:5"', "sip.bind", 2),
        ('codecs = ["opus", "PCMA", "PCMU"]', 'codecs = ["opus", "G729"]', "media.codecs", 7),
        ('ext = "1002"', 'ext = "1001"', "users[1].ext", 14),
        ('password = "secret-2"', 'password = "x"', "users[1].password", 15),
        ('udp_port = 5060', 'udp_port = 5060\nudp_prot = 1', "sip.udp_prot", 4),
    ],
)
def test_bad_value_names_key_and_line(tmp_path: Path, old: str, new: str, key: str,
                                      line: int) -> None:
    text = GOOD.replace(old, new)
    assert text != GOOD
    with pytest.raises(ConfigError) as err:
        load_edge_config(write(tmp_path, text))
    assert err.value.key == key
    assert err.value.line == line
    assert f":{line}: {key}:" in str(err.value)


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_edge_config(write(tmp_path, GOOD.replace('udp_port = 5060', 'udp_port = = 5')))
    assert err.value.line == 3


def test_shared_upstream_account_refused(tmp_path: Path) -> None:
    text = GOOD.replace('password = "demo-1001"', 'password = "demo-1001"\ntrunk_user = "acct"')
    text = text.replace('password = "secret-2"', 'password = "secret-2"\ntrunk_user = "acct"')
    with pytest.raises(ConfigError, match="R-ACCT-1"):
        load_edge_config(write(tmp_path, text))


def test_overrides_and_exposure(tmp_path: Path) -> None:
    cfg = load_edge_config(write(tmp_path, GOOD))
    cfg2 = apply_overrides(cfg, Overrides(sip_port=15060, rtp_ports="21000-21100",
                                          data_dir=str(tmp_path)))
    assert (cfg2.udp_port, cfg2.tcp_port, cfg2.rtp_first, cfg2.rtp_last) == (15060, 15060, 21000,
                                                                              21100)
    with pytest.raises(ConfigError, match="--rtp-ports"):
        apply_overrides(cfg, Overrides(rtp_ports="21001-21100"))
    exposed = apply_overrides(cfg, Overrides(bind="192.0.2.10"))
    with pytest.raises(ConfigError, match="demo passwords"):
        check_exposure(exposed)


@pytest.mark.parametrize("prefix", ["", "x-"])
def test_shipped_passwords_never_leave_loopback_whatever_the_prefix(tmp_path: Path,
                                                                   prefix: str) -> None:
    """Emptying or changing [demo] password_prefix does not make demo-1001 a secret."""
    text = GOOD.replace('password = "demo-1001"', 'password = "demo-1002"')
    cfg = load_edge_config(write(tmp_path, f'[demo]\npassword_prefix = "{prefix}"\n\n' + text))
    assert cfg.demo_prefix == prefix
    check_exposure(cfg)  # loopback: fine
    with pytest.raises(ConfigError, match="users 1001 still have demo passwords"):
        check_exposure(apply_overrides(cfg, Overrides(bind="192.0.2.10")))
    own = load_edge_config(write(tmp_path, GOOD.replace('"demo-1001"', '"s3cret-own-1001"')
                                 .replace("[sip]", f'[demo]\npassword_prefix = "{prefix}"\n\n[sip]')))
    check_exposure(apply_overrides(own, Overrides(bind="192.0.2.10")))  # nothing shipped


def test_port_range_parser() -> None:
    assert parse_port_range("20000-22000") == (20000, 22000)
    for bad in ("22000-20000", "20000", "1000-2000", "20000-70000"):
        with pytest.raises(ValueError):
            parse_port_range(bad)


@pytest.mark.parametrize(
    ("value", "key", "message"),
    [
        ("emergency_reserved_ports = 3", "media.emergency_reserved_ports", "must be even"),
        ("emergency_reserved_ports = 2002", "media.emergency_reserved_ports",
         "would leave none"),
        ('emergency_reserved_ports = "4"', "media.emergency_reserved_ports", "integer"),
        ("per_user_max_ports = 2", "media.per_user_max_ports", "at least 4"),
        ("per_user_max_ports = -4", "media.per_user_max_ports", "between"),
        ('latch = "loose"', "media.latch", "must be one of address-only, strict, any"),
    ],
)
def test_bad_media_guard_value_names_key_and_line(tmp_path: Path, value: str, key: str,
                                                  message: str) -> None:
    text = GOOD.replace('codecs = ["opus", "PCMA", "PCMU"]',
                        'codecs = ["opus", "PCMA", "PCMU"]\n' + value)
    with pytest.raises(ConfigError, match=message) as err:
        load_edge_config(write(tmp_path, text))
    assert (err.value.key, err.value.line) == (key, 8)


def test_media_guard_defaults_and_a_range_too_small_for_the_share(tmp_path: Path) -> None:
    cfg = load_edge_config()
    assert (cfg.emergency_reserved_ports, cfg.per_user_max_ports, cfg.latch,
            cfg.app_calls_per_user) == (4, 262, "address-only", 1)
    text = GOOD.replace('rtp_ports = "20000-22000"', 'rtp_ports = "20000-20003"')
    with pytest.raises(ConfigError, match="holds 2 port pairs") as err:
        load_edge_config(write(tmp_path, text))
    assert err.value.key == "media.emergency_reserved_ports"
    with pytest.raises(ConfigError, match="--rtp-ports"):
        apply_overrides(cfg, Overrides(rtp_ports="21000-21003"))
    assert apply_overrides(cfg, Overrides(rtp_ports="21000-21005")).rtp_last == 21005
    text = GOOD.replace("[media]", "[extensions]\ncalls_per_user = 0\n\n[media]")
    with pytest.raises(ConfigError) as err:
        load_edge_config(write(tmp_path, text))
    assert (err.value.key, err.value.line) == ("extensions.calls_per_user", 6)


def test_durability_is_full_unless_relaxed_and_a_bad_value_is_named(tmp_path: Path) -> None:
    assert load_edge_config().durability is Durability.FULL
    relaxed = load_edge_config(write(tmp_path, GOOD + '\n[data]\ndurability = "relaxed"\n'))
    assert relaxed.durability is Durability.RELAXED
    assert apply_overrides(relaxed, Overrides(durability="full")).durability is Durability.FULL
    with pytest.raises(ConfigError) as err:
        load_edge_config(write(tmp_path, GOOD + '\n[data]\ndurability = "sometimes"\n'))
    assert err.value.key == "data.durability" and err.value.line == 18
    with pytest.raises(ConfigError, match="--durability"):
        apply_overrides(relaxed, Overrides(durability="never"))


def test_the_web_phone_is_https_only_off_loopback(tmp_path: Path) -> None:
    """A browser sends its SIP password over /ws: off loopback the HTTP listener needs TLS
    (its own certificate, or the SIP TLS listener's), or the edge does not start."""
    own = GOOD.replace('"demo-1001"', '"s3cret-own-1001"').replace('"secret-2"', '"s3cret-2"')
    cfg = load_edge_config(write(tmp_path, own + '\n[http]\nbind = "192.0.2.10"\n'))
    with pytest.raises(ConfigError, match="https/wss only") as err:
        check_exposure(apply_overrides(cfg, Overrides(tls_port=0)))
    assert "http.bind" in str(err.value)
    check_exposure(cfg)  # the SIP TLS listener is on (5061): its certificate serves
    check_exposure(apply_overrides(cfg, Overrides(tls_port=0, http_port=0)))  # no listener
    with_cert = load_edge_config(write(tmp_path, own + '\n[http]\nbind = "192.0.2.10"\n'
                                       'tls_cert = "/etc/ssl/edge.pem"\n'
                                       'tls_key = "/etc/ssl/edge.key"\n'))
    check_exposure(apply_overrides(with_cert, Overrides(tls_port=0)))
    with pytest.raises(ConfigError, match="go together") as err:
        load_edge_config(write(tmp_path, own + '\n[http]\ntls_cert = "/etc/ssl/edge.pem"\n'))
    assert "edge.toml:17: http.tls_key" in str(err.value)  # the key and its line
    # demo passwords never leave loopback through the web phone either
    demo = load_edge_config(write(tmp_path, GOOD + '\n[http]\nbind = "192.0.2.10"\n'))
    with pytest.raises(ConfigError, match="demo passwords"):
        check_exposure(demo)
