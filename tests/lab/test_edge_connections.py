"""Connections under control, through the running edge: strangers cannot starve real phones.

- A TCP phone (baresip, registered over TCP) stays reachable while 1,100 idle TCP connections
  from 50 other loopback addresses fill the table: the edge evicts strangers (each eviction
  logged with its address), never the phone's connection, and a call to the phone still
  works; the idle ones are then closed after ``idle_unregistered_s``.
- One address gets ``max_connections_per_address`` connections, no more.
- A slowloris connection (one byte of a request every 0.4 s) is closed when
  ``message_timeout_s`` has passed since its first byte, long before it would be idle.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from lab.baresip_peer import Baresip, account, available
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import call

pytestmark = pytest.mark.lab

RTP = (24300, 24399)
MESSAGE_S = 2
IDLE_S = 6
PER_ADDRESS = 32


def edge_config(tmp_path: Path) -> Path:
    """The embedded defaults with short message and idle limits (the test's clock)."""
    text = files("softphone.configs").joinpath("edge.toml").read_text()
    for old, new in (("message_timeout_s = 10", f"message_timeout_s = {MESSAGE_S}"),
                     ("idle_unregistered_s = 30", f"idle_unregistered_s = {IDLE_S}"),
                     ("max_connections_per_address = 32",
                      f"max_connections_per_address = {PER_ADDRESS}")):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def enough_descriptors(n: int) -> None:
    """This process and the edge it starts (which inherits it) may open ``n`` more files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 1024
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def open_idle(port: int, sources: list[str], per_source: int) -> list[socket.socket]:
    """TCP connections to the edge that never send a byte (non-blocking connects)."""
    socks: list[socket.socket] = []
    for src in sources:
        for _ in range(per_source):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((src, 0))
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
    return socks


def wait_status(edge: EdgeProcess, ok: Any, timeout: float) -> dict[str, Any]:
    end = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < end:
        st = edge.status()
        if st and not st.get("starting") and ok(st):  # the first full status, not the start's
            return st
        time.sleep(0.1)
    return st


@pytest.mark.skipif(not available(), reason="baresip with opus.so not installed")
@pytest.mark.timeout(150)
def test_a_tcp_phone_stays_reachable_through_1100_idle_connections(tmp_path: Path, lab: Any,
                                                                   sipp: Any) -> None:
    enough_descriptors(1200)
    sip, b_sip, _, b_ctl, uac_port = lab.take_ports(5)
    edge = EdgeProcess(tmp_path / "edge", sip, RTP,
                       extra=["--config", str(edge_config(tmp_path))]).start()
    where = f"127.0.0.1:{sip}"
    phone = Baresip(tmp_path, "b", b_sip, b_ctl, 34400,
                    account("1002", "demo-1002", f"{where};transport=tcp", auto_answer=True),
                    freq=440, lifetime=120)
    socks: list[socket.socket] = []
    try:
        phone.start()
        assert phone.wait_registered(10), phone.log() + edge.log()
        registered = wait_status(edge, lambda st: st["registrations"] == 1, 5)
        assert registered["connections"]["open"] == 1, registered
        started = time.monotonic()
        socks = open_idle(sip, [f"127.0.1.{i}" for i in range(1, 51)], 22)
        full = wait_status(edge, lambda st: st["connections"]["evicted"] >= 1101 - 1024, 8)
        assert time.monotonic() - started < IDLE_S, "too slow to tell eviction from idleness"
        assert full["connections"]["open"] <= 1024, full
        assert full["registrations"] == 1, full
        # the phone is still reached on its own connection: a call to it goes through
        caller = call(sipp, lab, "uac", "edge_uac_quick.xml", where, "1001", "1002", uac_port,
                      wall=30)
        assert phone.wait_event("CALL_ESTABLISHED", 15), phone.log() + edge.log()
        assert caller.wait(30) == 0, caller.errors() + edge.log()
        assert phone.wait_event("CALL_CLOSED", 10), phone.log()
        # strangers that never said anything are gone after the idle limit; the phone stays
        idle = wait_status(edge, lambda st: st["connections"]["open"] <= 1, IDLE_S + 6)
        assert idle["connections"]["open"] == 1 and idle["registrations"] == 1, idle
    finally:
        for s in socks:
            s.close()
        phone.stop()
        edge.stop()
    evictions = [line for line in edge.log().splitlines() if "evicting tcp connection" in line]
    assert len(evictions) >= 1101 - 1024, edge.log()[-3000:]
    assert all("from 127.0.1." in line for line in evictions), evictions[:5]
    calls = edge.calls()
    assert len(calls) == 1 and calls[0]["end_cause"] == "caller-bye", calls
    assert [leg["transport"] for leg in calls[0]["legs"]] == ["udp", "tcp"], calls


@pytest.mark.timeout(60)
def test_per_address_limit_and_slowloris(tmp_path: Path, lab: Any) -> None:
    (sip,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", sip, RTP,
                       extra=["--config", str(edge_config(tmp_path))]).start()
    socks: list[socket.socket] = []
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        socks = open_idle(sip, ["127.0.0.2"], PER_ADDRESS + 8)
        st = wait_status(edge, lambda st: st["connections"]["refused_per_address"] >= 8, 5)
        assert st["connections"]["refused_per_address"] == 8, st
        assert st["connections"]["open"] == PER_ADDRESS, st
        for s in socks:
            s.close()
        socks = []
        # one byte every 0.4 s of a request that never ends
        slow.bind(("127.0.0.3", 0))
        slow.connect(("127.0.0.1", sip))
        slow.settimeout(0.4)
        request = (f"OPTIONS sip:edge@127.0.0.1:{sip} SIP/2.0\r\n"
                   "Via: SIP/2.0/TCP 127.0.0.3:5060;branch=z9hG4bK-slow\r\n" * 40).encode()
        first = time.monotonic()
        closed_after = None
        for i in range(len(request)):
            try:
                slow.sendall(request[i:i + 1])
                if slow.recv(1) == b"":
                    closed_after = time.monotonic() - first
                    break
            except TimeoutError:
                continue
            except OSError:  # reset by the edge
                closed_after = time.monotonic() - first
                break
            if time.monotonic() - first > IDLE_S + 4:
                break
        st = wait_status(edge, lambda st: st["connections"]["slow_closed"] == 1, 3)
    finally:
        for s in socks:
            s.close()
        with contextlib.suppress(OSError):
            slow.close()
        edge.stop()
    assert closed_after is not None, "the slowloris connection was never closed"
    # closed for its slowness, at the message limit (a byte every 0.4 s), not for idleness;
    # asyncio runs a timer up to its clock resolution early, hence the small slack below
    assert MESSAGE_S - 0.05 <= closed_after < MESSAGE_S + 0.9 < IDLE_S, closed_after
    assert st["connections"]["slow_closed"] == 1, st
    assert "a message still incomplete" in edge.log() and "127.0.0.3" in edge.log()
