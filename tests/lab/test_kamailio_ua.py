"""Our UA behind a real record-routing proxy: Kamailio as registrar and stateful proxy.

bob registers at Kamailio; alice calls bob's AOR at Kamailio, which looks bob up and relays
with Record-Route. The ACK and BYE must then follow the route set (loose routing, RFC 3261
§12.2.1.1, §16.12) back through the proxy.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab.kamailio import header

from softphone.phone import CallState, IncomingCall, RegState, UserAgent
from softphone.sip.transport import ListenSpec

pytestmark = pytest.mark.lab

CONFIG = header(
    ("rr", "pv", "maxfwd", "usrloc", "registrar", "textops", "siputils", "xlog")) + """\
modparam("usrloc", "db_mode", 0)
modparam("rr", "enable_full_lr", 1)
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ xlog("L_INFO", "in-dialog $rm via route\\n"); t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here"); exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("REGISTER")) {{ save("location"); exit; }}
    if (uri==myself) {{
        if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    }}
    record_route();
    xlog("L_INFO", "relay $rm $ru\\n");
    t_relay();
}}
"""


@pytest.fixture
def kamailio(tmp_path: Path, lab: Any) -> Iterator[tuple[int, Path]]:
    if shutil.which("kamailio") is None:
        pytest.skip("kamailio not installed (apt-get install kamailio)")
    (port,) = lab.take_ports(1)
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(CONFIG.format(port=port))
    run = tmp_path / "run"
    run.mkdir()
    log = tmp_path / "kamailio.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["kamailio", "-f", str(cfg), "-DD", "-E", "-Y", str(run), "-P",
             str(run / "kamailio.pid"), "-w", str(run), "-m", "32", "-M", "8"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        lab.wait_udp_listening(port, timeout=10)
        yield port, log
    finally:
        proc.send_signal(signal.SIGTERM)  # the main process; its children follow
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.timeout(40)
async def test_call_through_kamailio_follows_the_route_set(kamailio: tuple[int, Path],
                                                           lab: Any) -> None:
    port, log = kamailio
    bob_port, alice_port = lab.take_ports(2)
    bob = UserAgent(listen=[ListenSpec("udp", "127.0.0.1", bob_port)], user="bob",
                    auto_answer=True, ring=True)
    alice = UserAgent(listen=[ListenSpec("udp", "127.0.0.1", alice_port)], user="alice")
    await bob.start()
    await alice.start()
    incoming: list[Any] = []
    bob.on_event = lambda ev: incoming.append(ev.call) if isinstance(ev, IncomingCall) else None
    try:
        reg = await bob.register(f"sip:127.0.0.1:{port}", expires=60, wait=5)
        assert reg.state is RegState.REGISTERED and reg.status == 200
        call = await alice.call(f"sip:bob@127.0.0.1:{port}")
        assert await call.wait_answered(10), call.end_reason
        assert call.dialog is not None and len(call.dialog.route_set) == 1
        assert f"127.0.0.1:{port}" in call.dialog.route_set[0]
        assert incoming and incoming[0].invite.headers.get("record-route")
        await asyncio.sleep(0.2)
        await call.hangup_and_wait(10)
        assert call.bye_status == 200
        await incoming[0].wait_ended(5)
        assert incoming[0].state is CallState.TERMINATED
        assert incoming[0].end_reason == "remote hangup"
        text = log.read_text(errors="replace")
        assert "relay INVITE sip:bob@127.0.0.1" in text
        assert "in-dialog ACK via route" in text and "in-dialog BYE via route" in text
        await reg.unregister()
        assert reg.state is RegState.UNREGISTERED
    finally:
        await alice.close()
        await bob.close()
