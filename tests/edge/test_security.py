"""R-ACCT-5 credential security at the edge: the lock-out arithmetic, the security log's line
format and the fail2ban filter shipped in docs/, the [security] configuration keys."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import pytest

from softphone.configfile import ConfigError
from softphone.edge.config import load_edge_config
from softphone.edge.security import (
    LINE_KEYS,
    AuthLockout,
    Security,
    SecurityLog,
    SecuritySettings,
)

FILTER = Path(__file__).parents[2] / "docs" / "fail2ban" / "softphone-edge.conf"
# what fail2ban puts for <HOST> (IPv4 and names; enough for these lines)
F2B_HOST = r"(?:::f{4,6}:)?(?P<host>[\w\-.^_]*\w)"


def failregex() -> re.Pattern[str]:
    """The filter's failregex as fail2ban applies it: to the line with its date cut out."""
    parser = configparser.RawConfigParser()
    parser.read(FILTER)
    pattern = parser.get("Definition", "failregex").strip()
    return re.compile(pattern.replace("<HOST>", F2B_HOST))


def banned_host(line: str) -> str | None:
    cut = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", "", line, count=1)
    m = failregex().search(cut)
    return m.group("host") if m else None


def lockout(n: int = 3, window: float = 60, lock: float = 600) -> AuthLockout:
    return AuthLockout(SecuritySettings(n, window, lock))


def test_failures_within_the_window_lock_the_source_and_the_user_out() -> None:
    g = lockout()
    assert g.failed("192.0.2.9", "1001", 0.0) == []
    assert g.failed("192.0.2.9", "1001", 10.0) == []
    started = g.failed("192.0.2.9", "1001", 20.0)
    assert [(s.kind, s.key, s.until, s.failures) for s in started] == [
        ("source", "192.0.2.9", 620.0, 3), ("user", "1001", 620.0, 3)]
    assert g.locked("192.0.2.9", "1002", 21.0) == "source locked out"
    assert g.locked("198.51.100.1", "1001", 21.0) == "user locked out"
    assert g.locked("198.51.100.1", "1002", 21.0) is None
    # locked until 620 s, then free again with a clean slate
    assert g.locked("192.0.2.9", "", 619.9) is not None
    assert g.locked("192.0.2.9", "", 620.0) is None
    assert g.failed("192.0.2.9", "1001", 621.0) == []


def test_failures_spread_beyond_the_window_never_lock() -> None:
    g = lockout(window=60)
    for t in range(0, 600, 31):  # two in any 60 s
        assert g.failed("192.0.2.9", "1001", float(t)) == []
    assert g.locked("192.0.2.9", "1001", 601.0) is None


def test_a_user_lockout_spares_addresses_it_authenticated_from_but_not_the_attacker() -> None:
    g = lockout()
    g.succeeded("127.0.0.1", "1001")
    for t in (1.0, 2.0, 3.0):
        g.failed("127.0.0.2", "1001", t)
    assert g.locked("127.0.0.1", "1001", 4.0) is None          # the user's own phone
    assert g.locked("127.0.0.3", "1001", 4.0) == "user locked out"
    assert g.locked("127.0.0.2", "1001", 4.0) == "source locked out"


def test_several_sources_add_up_for_one_user_and_lockout_zero_only_logs() -> None:
    g = lockout()
    for i, t in enumerate((1.0, 2.0, 3.0)):
        g.failed(f"192.0.2.{i}", "1001", t)
    assert g.locked("192.0.2.77", "1001", 4.0) == "user locked out"
    assert g.locked("192.0.2.0", "1002", 4.0) is None
    off = lockout(lock=0)
    assert all(off.failed("192.0.2.9", "1001", float(t)) == [] for t in range(20))
    assert off.locked("192.0.2.9", "1001", 21.0) is None


def test_memory_is_bounded() -> None:
    g = AuthLockout(SecuritySettings(3, 60, 600), max_tracked=100)
    for i in range(1000):
        g.failed(f"10.0.{i // 256}.{i % 256}", f"u{i}", float(i) / 1000)
    assert len(g._failures["source"]) == 100 and len(g._failures["user"]) == 100


def test_log_lines_have_a_fixed_key_order_and_the_filter_finds_the_source(
        tmp_path: Path) -> None:
    clock = [0.0]
    sec = Security(SecuritySettings(2, 60, 600), SecurityLog(tmp_path / "security.jsonl"),
                   clock=lambda: clock[0])
    sec.auth_failed("192.0.2.9", 5070, "1001", "REGISTER", "unknown user or wrong password")
    # a user name made to look like another address cannot move the ban elsewhere
    forged = 'x", "src": "10.9.9.9", "sport": 1, "y": "'
    sec.auth_failed("192.0.2.9", 5071, forged, "INVITE", "nonce count replayed")
    sec.log.close()
    lines = (tmp_path / "security.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    # two users: only the source reached the limit
    assert [e["event"] for e in entries] == ["auth-failure", "auth-failure", "lockout"]
    assert all(tuple(e) == LINE_KEYS for e in entries)
    assert entries[1]["user"] == forged and entries[0]["sport"] == 5070
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(entries[0]["ts"]))
    assert "source 192.0.2.9: 2 failures within 60 s, locked out for 600 s" in \
        str(entries[2]["reason"])
    assert [banned_host(line) for line in lines] == ["192.0.2.9", "192.0.2.9", None]


@pytest.mark.parametrize(("line", "key", "lineno"), [
    ("max_auth_failures = 0", "security.max_auth_failures", 2),
    ("window_s = -5", "security.window_s", 2),
    ('lockout_s = "ten"', "security.lockout_s", 2),
    ("lockout = 5", "security.lockout", 2),
])
def test_bad_security_values_name_key_and_line(tmp_path: Path, line: str, key: str,
                                               lineno: int) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(f"[security]\n{line}\n\n[[users]]\next = \"1001\"\npassword = \"pw-1\"\n")
    with pytest.raises(ConfigError) as err:
        load_edge_config(path)
    assert err.value.key == key and err.value.line == lineno, str(err.value)


def test_security_defaults() -> None:
    cfg = load_edge_config()
    assert (cfg.max_auth_failures, cfg.auth_window_s, cfg.auth_lockout_s) == (10, 60, 600)
