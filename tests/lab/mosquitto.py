"""Debian's mosquitto as the tests run it: on 127.0.0.1, a free port, a generated config.

Persistence on (in the test's own directory) so that a stop and a start keep the persistent
sessions of the test's subscriber: what the agent publishes while the subscriber reconnects is
queued for it, not lost. Stopped by its PID (SIGTERM: it sends the Wills of the clients still
connected and saves its database), never by name.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if os.access(p, os.X_OK)), None)
PASSWD = shutil.which("mosquitto_passwd")


class Mosquitto:
    def __init__(self, workdir: Path, port: int, *, secure_port: int | None = None,
                 cert: tuple[Path, Path] | None = None,
                 users: dict[str, str] | None = None) -> None:
        """``port``: plain, anonymous. ``secure_port``: TLS with ``cert`` (certificate, key)
        and only the ``users`` (name -> password), each listener with its own settings."""
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed")
        self.workdir = workdir
        self.port = port
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        lines = ["per_listener_settings true", "persistence true",
                 f"persistence_location {workdir}/", "log_dest stderr",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 f"listener {port} 127.0.0.1", "allow_anonymous true"]
        if secure_port is not None:
            assert cert is not None and users
            passwords = workdir / "passwords"
            passwords.write_text("")
            for name, password in users.items():
                subprocess.run([PASSWD or "mosquitto_passwd", "-b", str(passwords), name,
                                password], check=True, timeout=20, capture_output=True)
            lines += [f"listener {secure_port} 127.0.0.1", f"certfile {cert[0]}",
                      f"keyfile {cert[1]}", "allow_anonymous false",
                      f"password_file {passwords}"]
        if os.geteuid() == 0:
            # as root it would drop to the user "mosquitto", who cannot write the test's dir
            lines.append(f"user {getpass.getuser()}")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> Mosquitto:
        assert MOSQUITTO is not None
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(["timeout", "-k", "5", "600", MOSQUITTO, "-c",
                                          str(self.conf)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen: {self.log.read_text()[-2000:]}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # timeout(1) forwards it to mosquitto
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
