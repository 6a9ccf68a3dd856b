"""Desk phones for the web phone's tests: a real baresip registered to the test's edge."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser.conftest import WebEdge
from lab import baresip_peer
from lab.baresip_peer import Baresip, account
from lab.conftest import take_ports

DESK_HZ = 440
DESK_RTP = 22400  # desk phones' own RTP ports (22400-22499), clear of the edge's


@contextmanager
def desk_phone(tmp_path: Path, edge: WebEdge, user: str = "1002", *,
               auto_answer: bool = False, rtp: int = DESK_RTP) -> Iterator[Baresip]:
    """baresip registered as ``user``, sending a 440 Hz sine, stopped by PID at the end."""
    if not baresip_peer.available():
        pytest.skip("baresip with opus.so not installed (apt-get install baresip-core)")
    sip, _, ctl = take_ports(3)  # baresip also takes the port after its SIP port
    where = f"127.0.0.1:{edge.sip_port}"
    phone = Baresip(tmp_path, f"desk{user}", sip, ctl, rtp,
                    account(user, f"demo-{user}", where, auto_answer=auto_answer), freq=DESK_HZ)
    # baresip 1.0 may dump core when stopped after a call refused 488 (today's browser legs),
    # and raises its own core limit: started from the test's tmp dir, a core file lands there
    # and not in the working tree (the kernel's core_pattern is relative to the cwd)
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        try:
            phone.start()
        finally:
            os.chdir(here)
        assert phone.wait_registered(10), phone.log()
        yield phone
    finally:
        phone.stop()
