"""What the docs promise about durability is what the running edge does, checked on its own
system calls (strace -y names the file behind every descriptor): with ``[data] durability =
"full"`` (the default) the guard's ledger (SQLite WAL, ``synchronous=FULL``) and the audit log
are fsync'd after the decision and before the SIP message that follows it leaves: the INVITE
to the callee after the admission, the 200 OK to the caller after the answer. With
``"relaxed"`` the ledger's WAL is not synced there (what POLICY.md says a power cut can lose).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import call, register, start_callee

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(shutil.which("strace") is None, reason="strace missing"),
              pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp missing")]

RTP = (21000, 21999)
SYNC = re.compile(r"^(fsync|fdatasync)\(\d+<([^>]*)>\)")


def _syscalls(trace: Path) -> list[str]:
    out = []
    for line in trace.read_text(errors="replace").splitlines():
        pid, _, rest = line.partition(" ")
        if pid.isdigit() and rest:
            out.append(rest.strip())
    return out


def _synced(calls: list[str], start: int, end: int) -> set[str]:
    """Names of the files fsync'd or fdatasync'd between two system calls."""
    return {m.group(2).rsplit("/", 1)[-1] for c in calls[start:end] if (m := SYNC.match(c))}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("durability", ["full", "relaxed"])
def test_the_ledger_and_the_audit_log_reach_the_disk_before_the_answer_leaves(
        durability: str, tmp_path: Path, lab: Any, sipp: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """1001 calls 1002 (a sipp UAS that answers) through an edge under strace. For the INVITE
    the edge sends to the callee (after the admission) and for the 200 OK it sends the caller
    (after the answer): between the SIP message that triggered the decision and the one that
    follows it, "full" fsyncs the ledger's WAL and the audit log; "relaxed" does not sync
    the WAL."""
    monkeypatch.setenv("SOFTPHONE_LOOP", "asyncio")  # sendto/recvfrom with their buffers
    edge_port, uas_port, reg_port, uac_port = lab.take_ports(4)
    data, trace = tmp_path / "edge", tmp_path / "edge.strace"
    edge = EdgeProcess(data, edge_port, RTP, extra=["--durability", durability],
                       wrap=["strace", "-f", "-y", "-qq", "-s", "4000", "-o", str(trace),
                             "-e", "trace=fsync,fdatasync,sendto,recvfrom"]).start(timeout=40)
    target = f"127.0.0.1:{edge_port}"
    try:
        start_callee(sipp, lab, "uas", "edge_uas_answer.xml", uas_port)
        register(sipp, lab, target, "1002", uas_port, reg_port)
        caller = call(sipp, lab, "uac", "edge_uac_quick.xml", target, "1001", "1002", uac_port)
        assert caller.wait(30) == 0, caller.errors() + edge.log()
        assert edge.wait_calls(1), edge.log()
    finally:
        edge.stop()
    calls = _syscalls(trace)

    def first(pattern: str, start: int = 0) -> int:
        rx = re.compile(pattern)
        return next(i for i, c in enumerate(calls[start:], start) if rx.search(c))

    def last_before(pattern: str, end: int) -> int:
        rx = re.compile(pattern)
        return max(i for i, c in enumerate(calls[:end]) if rx.search(c))

    # the admission: the authenticated INVITE in, the INVITE to the callee out
    b_invite = first(r'^sendto\(\d+<[^>]*>, "INVITE sip:1002@')
    a_invite = last_before(r'^recvfrom\(\d+<[^>]*>, "INVITE sip:1002@.*Authorization',
                           b_invite)
    # the answer: the callee's 200 OK in, the 200 OK to the caller out
    answer = first(r'^sendto\(\d+<[^>]*>, "SIP/2.0 200 OK\\r\\n.*CSeq: \d+ INVITE', b_invite)
    b_ok = last_before(r'^recvfrom\(\d+<[^>]*>, "SIP/2.0 200 OK\\r\\n.*CSeq: \d+ INVITE',
                       answer)
    wal, log = "policy-ledger.sqlite3-wal", "audit.jsonl"
    for start, end in ((a_invite, b_invite), (b_ok, answer)):
        synced = _synced(calls, start, end)
        if durability == "full":
            assert {wal, log} <= synced, (synced, calls[start:end + 1])
        else:
            assert wal not in synced, synced
