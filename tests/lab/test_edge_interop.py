"""Stock peers through the running edge, with their default settings: sipp authenticating
without ``-auth_uri`` (it signs the digest with ``uri="sip:<edge host:port>"``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import start_callee

pytestmark = pytest.mark.lab

RTP = (21000, 21199)


@pytest.mark.timeout(120)
def test_stock_sipp_registers_and_calls_without_auth_uri(tmp_path: Path, lab: Any,
                                                         sipp: Any) -> None:
    edge_port, uas_port, reg_port, uac_port = lab.take_ports(4)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP).start()
    target = f"127.0.0.1:{edge_port}"
    try:
        uas = start_callee(sipp, lab, "uas", "edge_uas_answer.xml", uas_port,
                           extra=["-m", "1"])
        reg = sipp.start("reg", [target, "-sf", str(lab.scenarios /
                                                    "interop_register_domain.xml"),
                                 "-i", "127.0.0.1", "-p", str(reg_port), "-au", "1002",
                                 "-ap", "demo-1002", "-set", "user", "1002",
                                 "-set", "cport", str(uas_port), "-m", "1", "-timeout_error"],
                         wall=20, trace_msg=True)
        assert reg.wait(20) == 0, reg.errors() + edge.log()
        uac = sipp.start("uac", [target, "-sf", str(lab.scenarios / "edge_uac_quick.xml"),
                                 "-s", "1002", "-i", "127.0.0.1", "-p", str(uac_port),
                                 "-au", "1001", "-ap", "demo-1001", "-set", "user", "1001",
                                 "-m", "1", "-timeout_error"], wall=40, trace_msg=True)
        assert uac.wait(40) == 0, uac.errors() + edge.log()
        assert uas.wait(20) == 0, uas.errors()
    finally:
        edge.stop()
    # on the wire: the credentials named the edge itself, not the Request-URI
    own = f'uri="sip:{target}"'
    assert re.search(r"^REGISTER sip:127\.0\.0\.1 SIP/2\.0", reg.messages(), re.M)
    assert own in reg.messages(), reg.messages()[-2000:]
    assert re.search(rf"^INVITE sip:1002@{re.escape(target)} SIP/2\.0", uac.messages(), re.M)
    assert own in uac.messages(), uac.messages()[-2000:]
    calls = edge.calls()
    assert len(calls) == 1 and calls[0]["caller"] == "1001" and calls[0]["callee"] == "1002", \
        calls

