"""What the desktop app keeps between runs: the account, its password, the call history and
the one-time emergency risk acknowledgement (R-EMERG-5).

Everything but the password lives in one SQLite file (``desktop.db`` in the data directory):
``settings`` (key/value: the account as JSON, the acknowledgement with its date, the chosen
input and output sound devices by name) and
``history`` (one row per call: when, direction, the other party, outcome and the refusal reason
in words, duration, MOS). The password goes to the operating system's keyring (``keyring``)
when a usable backend exists; otherwise to ``password`` in the data directory, created 0600
(readable by the user only), and :attr:`Secrets.warning` says so for the window to show. The
password is never logged and never written to the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KEYRING_SERVICE = "softphone-desktop"
TRANSPORTS = ("udp", "tcp", "tls")


class AccountError(ValueError):
    """Account settings that cannot be used (the field is named)."""


@dataclass(frozen=True)
class AccountSettings:
    server: str = ""           # host or host:port of the registrar / proxy
    user: str = ""
    transport: str = "udp"     # udp | tcp | tls
    display_name: str = ""
    emergency: bool = False    # the line has the emergency service (R-EMERG-1)
    location: str = ""         # the recorded location the provider holds for the line
    country: str = "FR"
    outside_line_prefix: str = ""

    def check(self) -> AccountSettings:
        host, _, port = self.server.strip().rpartition(":") if ":" in self.server else (
            self.server.strip(), "", "")
        if not (host or self.server).strip() or any(c in self.server for c in " /;@<>"):
            raise AccountError(f"server: must be a host or host:port, got {self.server!r}")
        if port and (not port.isdigit() or not 0 < int(port) < 65536):
            raise AccountError(f"server: bad port in {self.server!r}")
        if not self.user or any(c in self.user for c in "@:;<> "):
            raise AccountError(f"user: must be a SIP user part, got {self.user!r}")
        if self.transport not in TRANSPORTS:
            raise AccountError(f"transport: must be one of {', '.join(TRANSPORTS)}, "
                               f"got {self.transport!r}")
        if len(self.country) != 2 or not self.country.isalpha() or not self.country.isupper():
            raise AccountError(f"country: must be an ISO 3166 code like FR, got {self.country!r}")
        if self.outside_line_prefix and not self.outside_line_prefix.isdigit():
            raise AccountError("outside line prefix: must be digits")
        return self

    @property
    def configured(self) -> bool:
        return bool(self.server and self.user)

    def registrar(self) -> str:
        """The registrar's SIP URI: ``sip:host:port[;transport=tcp]`` or ``sips:`` for TLS."""
        scheme = "sips" if self.transport == "tls" else "sip"
        params = ";transport=tcp" if self.transport == "tcp" else ""
        return f"{scheme}:{self.server.strip()}{params}"


@dataclass(frozen=True)
class CallRecord:
    id: int
    started: float
    direction: str   # outgoing | incoming
    peer: str        # what was dialled, or the caller
    outcome: str     # answered | refused | missed | failed | cancelled | rejected
    reason: str      # the refusal in words (the edge's Warning), or the end cause
    duration_s: float
    mos: float | None


class DesktopStore:
    """The SQLite file of the app (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = sqlite3.connect(str(data_dir / "desktop.db"))
        self.db.execute("CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS history (id INTEGER PRIMARY KEY, "
                        "started REAL, direction TEXT, peer TEXT, outcome TEXT, reason TEXT, "
                        "duration_s REAL, mos REAL)")
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    # -- settings ---------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
                        (key, value))
        self.db.commit()

    def account(self) -> AccountSettings:
        raw = self.get("account")
        if raw is None:
            return AccountSettings()
        data: dict[str, Any] = json.loads(raw)
        known = AccountSettings.__dataclass_fields__
        return AccountSettings(**{k: v for k, v in data.items() if k in known})

    def save_account(self, account: AccountSettings) -> None:
        self.put("account", json.dumps(asdict(account.check())))

    def emergency_ack(self) -> str | None:
        """The date (ISO 8601, UTC) the emergency risk was acknowledged, or None."""
        return self.get("emergency_ack")

    def acknowledge_emergency(self, when: float | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if when is None
                                                                 else when))
        self.put("emergency_ack", stamp)
        return stamp

    # -- history ----------------------------------------------------------------------------

    def sound_devices(self) -> tuple[str, str]:
        """The chosen (input, output) device names; "" for none (file/null audio)."""
        return self.get("sound.input") or "", self.get("sound.output") or ""

    def save_sound_devices(self, input_name: str, output_name: str) -> None:
        self.put("sound.input", input_name)
        self.put("sound.output", output_name)

    def add_call(self, *, started: float, direction: str, peer: str, outcome: str,
                 reason: str, duration_s: float, mos: float | None) -> int:
        cur = self.db.execute(
            "INSERT INTO history (started, direction, peer, outcome, reason, duration_s, mos) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (started, direction, peer, outcome, reason, duration_s, mos))
        self.db.commit()
        return int(cur.lastrowid or 0)

    def calls(self, search: str = "", limit: int = 500) -> list[CallRecord]:
        """Newest first; ``search`` matches the other party, the outcome or the reason."""
        like = f"%{search}%"
        rows = self.db.execute(
            "SELECT id, started, direction, peer, outcome, reason, duration_s, mos "
            "FROM history WHERE peer LIKE ? OR outcome LIKE ? OR reason LIKE ? "
            "ORDER BY started DESC, id DESC LIMIT ?", (like, like, like, limit)).fetchall()
        return [CallRecord(*row) for row in rows]


class Secrets:
    """The account's password: the OS keyring when usable, else a 0600 file (with a warning)."""

    def __init__(self, data_dir: Path, *, use_keyring: bool = True) -> None:
        self.file = data_dir / "password"
        self.backend = self._keyring() if use_keyring else None
        self.warning = "" if self.backend is not None else (
            "No usable keyring on this system: the password is kept in a file only you can "
            f"read ({self.file.name} in the data directory, mode 0600).")

    @staticmethod
    def _keyring() -> Any:
        try:
            import keyring
            from keyring.backends import fail
        except ImportError:
            return None
        backend = keyring.get_keyring()
        priority = getattr(backend, "priority", 0)
        if isinstance(backend, fail.Keyring) or not priority or priority <= 0:
            return None
        return backend

    @property
    def where(self) -> str:
        return "keyring" if self.backend is not None else "file"

    def get(self, user: str) -> str:
        if self.backend is not None:
            with contextlib.suppress(Exception):
                value = self.backend.get_password(KEYRING_SERVICE, user)
                return str(value) if value is not None else ""
            return ""
        try:
            data: dict[str, str] = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return ""
        return str(data.get(user, ""))

    def set(self, user: str, password: str) -> None:
        if self.backend is not None:
            self.backend.set_password(KEYRING_SERVICE, user, password)
            return
        fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an older file made with a wider mode is narrowed too
        with os.fdopen(fd, "w") as f:
            json.dump({user: password}, f)
