"""The edge behind a site's front proxy (RFC 3327 Path): Debian's Kamailio as a dispatcher in
front of the edge, adding Path to REGISTERs and record-routing. A phone registered through
the proxy is called through it, not straight at its Contact."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import call
from lab.kamailio import header
from lab.sip_phone import SipPhone

from softphone.sip.message import Headers, SipRequest

pytestmark = pytest.mark.lab

RTP = (21200, 21399)

CONFIG = header(
    ("rr", "pv", "maxfwd", "textops", "siputils", "xlog", "path", "dispatcher")) + """\
modparam("rr", "enable_full_lr", 1)
modparam("dispatcher", "list_file", "{dispatcher}")
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ xlog("L_INFO", "in-dialog $rm via route\\n"); t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here"); exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if ($si == "127.0.0.1" && $sp == {edge}) {{
        xlog("L_INFO", "from the edge $rm $ru\\n");
        record_route();
        loose_route();
        t_relay();
        exit;
    }}
    if (is_method("REGISTER")) {{
        add_path();
        if (!ds_select_dst("1", "2")) {{ sl_send_reply("503", "No Edge"); exit; }}
        xlog("L_INFO", "register to $du\\n");
        t_relay();
        exit;
    }}
    record_route();
    if (!ds_select_dst("1", "1")) {{ sl_send_reply("503", "No Edge"); exit; }}
    xlog("L_INFO", "phone $rm to $du\\n");
    t_relay();
}}
"""


@pytest.fixture
def proxy_ports(lab: Any) -> tuple[int, int]:
    kam, edge = lab.take_ports(2)
    return kam, edge


@pytest.fixture
def kamailio(tmp_path: Path, lab: Any, proxy_ports: tuple[int, int]) -> Iterator[Path]:
    if shutil.which("kamailio") is None:
        pytest.skip("kamailio not installed (apt-get install kamailio)")
    port, edge = proxy_ports
    dispatcher = tmp_path / "dispatcher.list"
    dispatcher.write_text(f"1 sip:127.0.0.1:{edge}\n")
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(CONFIG.format(port=port, edge=edge, dispatcher=dispatcher))
    run = tmp_path / "run"
    run.mkdir()
    log = tmp_path / "kamailio.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["timeout", "-k", "5", "120", "kamailio", "-f", str(cfg), "-DD", "-E", "-Y",
             str(run), "-P", str(run / "kamailio.pid"), "-w", str(run), "-m", "32", "-M", "8"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        lab.wait_udp_listening(port, timeout=10)
        yield log
    finally:
        proc.send_signal(signal.SIGTERM)  # timeout(1) forwards it to kamailio's main process
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.timeout(120)
def test_a_phone_registered_through_a_path_proxy_is_called_through_it(
        tmp_path: Path, lab: Any, sipp: Any, tshark: Any, kamailio: Path,
        proxy_ports: tuple[int, int]) -> None:
    kam_port, edge_port = proxy_ports
    uas_port, reg_port, uac_port = lab.take_ports(3)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP).start()
    proxy = f"127.0.0.1:{kam_port}"
    try:
        uas = sipp.start("uas", ["-sf", str(lab.scenarios / "interop_uas_rr.xml"),
                                 "-i", "127.0.0.1", "-p", str(uas_port), "-m", "1"],
                         trace_msg=True, wall=60)
        lab.wait_udp_listening(uas_port)
        reg = sipp.start("reg", [proxy, "-sf", str(lab.scenarios / "edge_register.xml"),
                                 "-i", "127.0.0.1", "-p", str(reg_port), "-au", "1002",
                                 "-ap", "demo-1002", "-set", "user", "1002",
                                 "-set", "cport", str(uas_port), "-m", "1", "-timeout_error"],
                         wall=20)
        assert reg.wait(20) == 0, reg.errors() + edge.log() + kamailio.read_text()
        invites = tshark.start(uas_port, fields=["udp.srcport", "sip.Method", "sip.Via",
                                                 "sip.Route", "sip.r-uri"],
                               display_filter='sip.Method == "INVITE" || sip.Method == "ACK"'
                                              ' || sip.Method == "BYE"', seconds=40)
        uac = call(sipp, lab, "uac", "interop_uac_rr.xml", proxy, "1001", "1002", uac_port)
        assert uac.wait(40) == 0, uac.errors() + edge.log() + kamailio.read_text()
        assert uas.wait(20) == 0, uas.errors() + edge.log()
        time.sleep(1.0)  # tshark prints what it captured a little later
        wire = invites.stop()
    finally:
        edge.stop()
    # on the wire: INVITE, ACK and BYE reach the phone from the proxy's port, never the edge's
    rows = [line.split("|") for line in wire.splitlines() if line.strip()]
    methods = {row[1] for row in rows}
    assert {"INVITE", "ACK", "BYE"} <= methods, wire
    assert all(row[0] == str(kam_port) for row in rows), wire
    # the INVITE came through the proxy's Via after the edge's, to the registered Contact
    invite = next(row for row in rows if row[1] == "INVITE")
    vias = invite[2].split(",")
    assert vias[0].startswith(f"SIP/2.0/UDP 127.0.0.1:{kam_port}"), invite
    assert f"127.0.0.1:{edge_port}" in vias[1], invite
    assert invite[4] == f"sip:1002@127.0.0.1:{uas_port}", invite
    text = kamailio.read_text(errors="replace")
    assert re.search(rf"from the edge INVITE sip:1002@127\.0\.0\.1:{uas_port}", text), text
    assert "in-dialog BYE via route" in text, text
    calls = edge.calls()
    assert len(calls) == 1 and calls[0]["callee"] == "1002", calls


@pytest.mark.timeout(60)
def test_a_register_with_a_broken_path_is_a_400_and_stores_nothing(tmp_path: Path,
                                                                   lab: Any) -> None:
    (edge_port,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP).start()
    phone = SipPhone(edge_port, "1002", "demo-1002")
    caller = SipPhone(edge_port, "1001", "demo-1001")
    statuses = []
    try:
        for path in ("garbage", "<tel:+33123>", "<sip:127.0.0.1:15070;lr>"):
            aor = "sip:1002@127.0.0.1"
            h = Headers([("From", f"<{aor}>;tag={uuid.uuid4().hex[:8]}"), ("To", f"<{aor}>"),
                         ("Call-ID", uuid.uuid4().hex), ("CSeq", "1 REGISTER"),
                         ("Contact", f"<sip:1002@127.0.0.1:{phone.port}>"),
                         ("Path", path), ("Supported", "path"), ("Max-Forwards", "70")])
            req = SipRequest("REGISTER", "sip:127.0.0.1", h)
            phone._via(req)
            resp = phone.final(req)
            if resp.status == 401:
                req = phone.digest.authorize(req, resp)
                phone._via(req)
                resp = phone.final(req)
            statuses.append((resp.status, resp.reason, resp.headers.get_all("path")))
            if path == "<tel:+33123>":  # nothing was stored: 1002 cannot be called yet
                assert caller.dial("sip:1002@127.0.0.1", 0).status == 480
    finally:
        phone.close()
        caller.close()
        edge.stop()
    assert statuses == [(400, "Bad Path: Bad URI", []), (400, "Bad Path: tel URI", []),
                        (200, "OK", ["<sip:127.0.0.1:15070;lr>"])], statuses
