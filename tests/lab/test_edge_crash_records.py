"""A crash does not lose the call records, through the running edge.

Two calls are up (1001 -> 1002, 1003 -> 1004, sipp phones) when the edge is SIGKILLed: no
BYE, no calls.jsonl line, a status.json that still shows two live calls. Started again on
the same data, by the time it says it is listening it has written one record per killed call
(end cause ``edge-restart``, caller, callee, answered, from the ledger) and a status.json with
no calls; started once more after a clean stop, it writes nothing twice.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(not Path("/usr/bin/sipp").exists(), reason="sipp missing")]

RTP = (24200, 24299)


def status_when_recorded(data: Path, out: list[dict[str, Any]]) -> None:
    """status.json as it is the moment the restarted edge has written its first call record
    (long before it listens: the policy, the prompts and the sockets come after)."""
    calls = data / "calls.jsonl"
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if calls.exists() and calls.read_text().strip():
            out.append(json.loads((data / "status.json").read_text()))
            return
        time.sleep(0.002)


def start_call(sipp: Any, lab: Any, target: str, caller: str, callee: str,
               ports: list[int]) -> Any:
    uas_port, reg_port, uac_port = ports
    sipp.start(f"uas{callee}", ["-sf", str(lab.scenarios / "edge_uas_answer.xml"),
                                "-i", "127.0.0.1", "-p", str(uas_port), "-mi", "127.0.0.1",
                                "-m", "1"], wall=60)
    lab.wait_udp_listening(uas_port)
    reg = sipp.start(f"reg{callee}", [target, "-sf", str(lab.scenarios / "edge_register.xml"),
                                      "-i", "127.0.0.1", "-p", str(reg_port), "-au", callee,
                                      "-ap", f"demo-{callee}", "-set", "user", callee,
                                      "-set", "cport", str(uas_port), "-m", "1",
                                      "-timeout_error"], wall=20)
    assert reg.wait(20) == 0, reg.errors()
    return sipp.start(f"uac{caller}", [target, "-sf", str(lab.scenarios / "dialog_uac_long.xml"),
                                       "-s", callee, "-i", "127.0.0.1", "-p", str(uac_port),
                                       "-au", caller, "-ap", f"demo-{caller}",
                                       "-set", "user", caller, "-auth_uri", f"{callee}@{target}",
                                       "-m", "1", "-timeout_error"], wall=40, trace_msg=True)


@pytest.mark.timeout(120)
def test_calls_killed_by_a_crash_are_recorded_at_restart(tmp_path: Path, lab: Any,
                                                         sipp: Any) -> None:
    edge_port, *ports = lab.take_ports(7)
    target = f"127.0.0.1:{edge_port}"
    data = tmp_path / "edge"
    edge = EdgeProcess(data, edge_port, RTP).start()
    try:
        uacs = [start_call(sipp, lab, target, "1001", "1002", ports[0:3]),
                start_call(sipp, lab, target, "1003", "1004", ports[3:6])]
        end = time.monotonic() + 20
        while edge.status().get("calls", {}).get("answered") != 2 \
                or edge.status().get("live_calls") != 2:
            assert time.monotonic() < end, edge.log()
            time.sleep(0.1)
        time.sleep(1.2)  # the status of two live calls is on disk, as a crash would leave it
        edge.crash()
        for uac in uacs:
            uac.stop()
    finally:
        edge.stop()
    assert edge.status()["live_calls"] == 2
    assert edge.calls() == []
    call_ids = {re.search(r"^Call-ID:\s*(\S+)", u.messages(), flags=re.M).group(1)  # type: ignore[union-attr]
                for u in uacs}

    seen: list[dict[str, Any]] = []
    watcher = threading.Thread(target=status_when_recorded, args=(data, seen))
    watcher.start()
    edge = EdgeProcess(data, edge_port, RTP).start()
    watcher.join(30)
    try:
        # at once: when it is listening, the records and the new status are there
        records, status = edge.calls(), edge.status()
        edge.stop()
        edge = EdgeProcess(data, edge_port, RTP).start()
        again = edge.calls()
    finally:
        edge.stop()
    assert status.get("live_calls") == 0 and status.get("ports_in_use") == 0, status
    # rewritten first, before the edge even listens: no stale "2 live calls" after a restart
    assert seen and seen[0].get("live_calls") == 0, seen
    assert len(records) == 2, records
    assert {r["call_id"] for r in records} == call_ids
    assert sorted((r["caller"], r["callee"]) for r in records) == \
        [("1001", "1002"), ("1003", "1004")]
    for r in records:
        assert r["end_cause"] == "edge-restart" and r["answered"] is not None, r
        assert r["started"] <= r["answered"] and r["ended"] is None and r["status"] == 200, r
        assert [(leg["role"], leg["user"]) for leg in r["legs"]] == \
            [("caller", r["caller"]), ("callee", r["callee"])], r
    assert again == records  # a later start finds no call left to record
