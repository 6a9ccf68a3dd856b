"""A real baresip (Debian's baresip-core, with opus.so) on loopback, driven over ctrl_tcp.

Headless: the source is ausine (a sine at a chosen frequency), the player a null aubridge,
and sndfile dumps every call's decoded audio to ``<work>/rec/*-dec.wav`` so the tests check
the audio itself. Each instance is bounded by ``timeout -k 3`` and stopped by its PID.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def write_config(conf: Path, *, sip_port: int, account: str, rtp_ports: tuple[int, int],
                 player: str, freq: int = 440, codecs: Sequence[str] = ("opus", "g711"),
                 ctrl_port: int | None = None, rec_dir: Path | None = None,
                 extra: Sequence[str] = ()) -> None:
    """A headless baresip's ``config`` and ``accounts`` in ``conf``: loopback only, a sine
    source at ``freq``, a null player named ``player`` (unique per instance), the codec
    modules asked for; ``ctrl_port`` adds ctrl_tcp, ``rec_dir`` sndfile dumps there."""
    lines = ["poll_method epoll", f"sip_listen 127.0.0.1:{sip_port}",
             "net_interface 127.0.0.1", "dns_server 127.0.0.1:53", *extra,
             f"audio_player aubridge,null_{player}", f"audio_alert aubridge,null_{player}",
             f"audio_source ausine,{freq}", "ausrc_srate 48000", "ausrc_channels 2",
             f"rtp_ports {rtp_ports[0]}-{rtp_ports[1]}", "module_path /usr/lib/baresip/modules",
             *(f"module {c}.so" for c in codecs), "module ausine.so", "module aubridge.so"]
    if rec_dir is not None:
        lines.append("module sndfile.so")
    lines += ["module_tmp uuid.so", "module_tmp account.so", "module_app menu.so"]
    if ctrl_port is not None:
        lines += ["module_app ctrl_tcp.so", f"ctrl_tcp_listen 127.0.0.1:{ctrl_port}"]
    if rec_dir is not None:
        lines.append(f"snd_path {rec_dir}")
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "config").write_text("\n".join(lines) + "\n")
    (conf / "accounts").write_text(account + "\n")


def available() -> bool:
    return shutil.which("baresip") is not None and Path("/usr/lib/baresip/modules/opus.so").exists()


@dataclass
class Baresip:
    """One baresip instance with one account registered to the edge."""

    work: Path
    name: str
    sip_port: int
    ctrl_port: int
    rtp_port: int
    account: str
    freq: int = 1000
    lifetime: int = 60
    proc: subprocess.Popen[bytes] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    _sock: socket.socket | None = None
    _buf: bytes = b""

    @property
    def rec_dir(self) -> Path:
        return self.work / "rec" / self.name

    def start(self) -> None:
        conf = self.work / self.name
        conf.mkdir(parents=True, exist_ok=True)
        self.rec_dir.mkdir(parents=True, exist_ok=True)
        write_config(conf, sip_port=self.sip_port, account=self.account,
                     rtp_ports=(self.rtp_port, self.rtp_port + 49), player=self.name,
                     freq=self.freq, ctrl_port=self.ctrl_port, rec_dir=self.rec_dir,
                     extra=["call_local_timeout 20", "rtp_stats yes"])
        log = open(self.work / f"{self.name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            ["timeout", "-k", "3", str(self.lifetime), "baresip", "-f", str(conf)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"baresip {self.name} did not start: {self.log()}") from None
                time.sleep(0.1)

    def log(self) -> str:
        p = self.work / f"{self.name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def send(self, command: str, params: str = "", token: str = "t") -> None:
        assert self._sock is not None
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._sock.sendall(str(len(body)).encode() + b":" + body + b",")

    def _read(self, timeout: float) -> dict[str, Any] | None:
        assert self._sock is not None
        end = time.monotonic() + timeout
        while True:
            if b":" in self._buf:
                n_text, rest = self._buf.split(b":", 1)
                n = int(n_text)
                if len(rest) >= n + 1:
                    msg, self._buf = rest[:n], rest[n + 1:]
                    decoded: dict[str, Any] = json.loads(msg)
                    return decoded
            left = end - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                return None
            self._buf += chunk

    def wait_event(self, etype: str, timeout: float) -> dict[str, Any] | None:
        for m in self.events:
            if m.get("event") and m.get("type") == etype:
                return m
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = self._read(max(0.05, end - time.monotonic()))
            if m is None:
                continue
            self.events.append(m)
            if m.get("event") and m.get("type") == etype:
                return m
        return None

    def wait_registered(self, timeout: float = 10) -> bool:
        """The registrar's 200: as an event, or in the log when it came before ctrl_tcp."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.wait_event("REGISTER_OK", 0.2) is not None:
                return True
            if " 200 OK " in self.log() and "binding" in self.log():
                return True
        return False

    def decoded_wavs(self) -> list[Path]:
        return sorted(self.rec_dir.glob("*-dec.wav"))

    def stop(self) -> None:
        if self._sock is not None:
            try:
                self.send("quit", token="q")
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.terminate()  # timeout(1) forwards it; -k 3 makes it final
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            self.proc = None


def account(user: str, password: str, edge: str, *, codecs: str = "opus/48000/2,PCMA/8000/1,PCMU/8000/1",
            auto_answer: bool = False, regint: int = 60) -> str:
    """An accounts line registering ``user`` to the edge at ``edge`` (host:port)."""
    line = (f"<sip:{user}@{edge}>;auth_pass={password};regint={regint};"
            f"audio_codecs={codecs}")
    if auto_answer:
        line += ";answermode=auto"
    return line


def echo_call(tmp_path: Path, lab: Any, edge: Any, media_base: int, *, user: str = "1003",
              freq: float = 1000, seconds: float = 3) -> Baresip:
    """baresip registers as ``user`` at the running ``edge``, calls the echo extension (600)
    with its tone for ``seconds`` and hangs up; the stopped phone, whose decoded WAVs hold
    what came back."""
    sip, _, ctl = lab.take_ports(3)  # baresip also takes the port after its SIP port
    where = f"127.0.0.1:{edge.sip_port}"
    phone = Baresip(tmp_path, "echo", sip, ctl, media_base,
                    account(user, f"demo-{user}", where), freq=freq)
    try:
        phone.start()
        assert phone.wait_registered(10), phone.log() + edge.log()
        phone.send("dial", f"sip:600@{where}", token="dial")
        assert phone.wait_event("CALL_ESTABLISHED", 10), phone.log() + edge.log()
        time.sleep(seconds)
        phone.send("hangup", token="hup")
        assert phone.wait_event("CALL_CLOSED", 10)
    finally:
        phone.stop()
    return phone
