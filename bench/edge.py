"""Edge capacity benchmark: signalling (calls per second) and media (concurrent calls) of
``softphone edge``, each printed beside a reference measured by the same script in the same run
(PERF-ANCHORS 2.1, 2.8 and goals R1, R2, S2).

1. Signalling. sipp UAC -> ``softphone edge`` (its own process, as shipped, pinned to CPU 0) ->
   sipp UAS, at rising rates, ~8 s each; the reference is sipp -sn uac -> sipp -sn uas directly
   (the UAS in the edge's place on CPU 0). Every edge call is a real one: 407 challenge, digest,
   policy admission (SQLite ledger), location lookup, B2BUA with two RTP port pairs, BYE. The
   shipped policy allows one call at a time per user (plus up to 64 paid extra channels) and
   flags a user dialling every few seconds as a machine, so the load is spread: 300 bench
   callers (4 channels each) in 4 sipp UAC instances, each calling its own registered callee
   (65 channels) at rate/4 (sipp's -auth_uri is one per process), and the bench policy is the
   shipped one with only the automated-dialing heuristics and the daily short-call average
   switched off. All load comes from 127.0.0.1, so the per-source flood guard's limit is
   raised out of reach (the guard stays in the path).
2. Media. A driver process (``edge.py serve``) builds N calls from the product's own classes
   (PortAllocator, CallMedia.reserve/attach/connect, RtpSession, Bridge, TickScheduler) with
   both phones at the C load generator (bench/rtp_loadgen.c, 50 pps per direction per call).
   Rows: bare relay (no parsing) on the default asyncio loop and on uvloop, the edge's relay
   fast path (PCMA both legs), and the bridge forced (a recorder set: jitter buffer, G.711
   decode, 16 kHz mix, encode) - each on the default loop (what ``softphone edge`` runs) and
   on uvloop.
3. Transcoding. N calls with Opus on one leg (pre-encoded Opus frames replayed) and PCMA on
   the other through the bridge: CPU per call -> calls per core at 85 %.

Everything is on 127.0.0.1, every process is started and stopped by its PID, every wait is
bounded. Pinning as the shared harness: system under test on CPU 0, load on CPU 1.

usage: python bench/edge.py [--quick] [--only signalling,media,transcode]
       python bench/edge.py serve MODE LOOP NCALLS FIRST LAST SECS PORTFILE CALLER CALLEE
       (internal: the media driver; CALLER/CALLEE are the load generator's first phone ports)
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCENARIOS = HERE / "scenarios"
LAB_SCENARIOS = ROOT / "tests" / "lab" / "scenarios"
LOADGEN_SRC = HERE / "rtp_loadgen.c"
WORK = Path(tempfile.gettempdir()) / f"softphone-bench-edge-{os.getpid()}"
LOADGEN = WORK / "rtp_loadgen"
TCK = os.sysconf("SC_CLK_TCK")
# the interpreter whose softphone is measured, and its label in the tables ("" for this one):
# --edge-python before=/path/to/other/venv/bin/python,after=.venv/bin/python runs the same
# rows for two installs of the edge in one run, side by side
EDGE_PYTHON = sys.executable
EDGE_LABEL = ""


def use_edge(label: str, python: str) -> None:
    global EDGE_PYTHON, EDGE_LABEL
    EDGE_LABEL, EDGE_PYTHON = label, python
CPU_LIMIT = 85.0
CALLERS = 300  # bench users 3000-3299 place the calls, 4 channels each
UACS = 4  # sipp UAC instances, each calling its own callee (4000+k, 65 channels) at rate/4
SIP_PORTS = (16000, 16999)  # lab tests take 15200-15999

_procs: list[subprocess.Popen[Any]] = []


# ---------------------------------------------------------------------------- processes

def start(argv: Sequence[str], out: TextIO | int | None = subprocess.DEVNULL) -> subprocess.Popen[Any]:
    # from the work folder: "python -m softphone" must find the interpreter's installed
    # softphone, not a source tree that happens to be the current directory (--edge-python)
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, cwd=WORK)
    _procs.append(proc)
    return proc


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
    """Stop one process this script started, by its PID: ``sig``, then SIGKILL."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    if proc in _procs:
        _procs.remove(proc)


def stop_all() -> None:
    for proc in list(_procs):
        stop(proc, grace=2.0)


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])  # utime + stime


def runq_wait_s(pid: int) -> float:
    """Seconds ``pid`` (its main thread) spent runnable but waiting for a CPU: on a shared box
    this says how much of a measurement window the system under test was crowded out."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def port_free(port: int) -> bool:
    """Nobody holds ``port`` on UDP or TCP (sipp opens both for some transports)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_ports(n: int) -> list[int]:
    lo, hi = SIP_PORTS
    out = [p for p in range(lo + (os.getpid() % 50) * 10, hi) if port_free(p)][:n]
    if len(out) < n:
        raise RuntimeError(f"no {n} free ports in {lo}-{hi}")
    return out


def free_block(n: int, lo: int = 17000, hi: int = 17999, udp_only: bool = False,
               after: int = 0) -> int:
    """The first of ``n`` consecutive free ports (sipp's -mp takes mp..mp+3; the load
    generator's phones take N each), at or above ``after``."""
    step = max(n, 4)
    for first in range(max(lo, after), hi - n, step):
        if all(udp_free(p) if udp_only else port_free(p) for p in range(first, first + n)):
            return first
    raise RuntimeError(f"no {n} consecutive free ports in {lo}-{hi}")


def udp_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        s.close()
    return True


def phone_bases(ncalls: int) -> tuple[int, int]:
    """Where the load generator's phones go: two free blocks of 2 x ``ncalls`` UDP ports above
    the RTP range (other benchmarks and sipp's media sockets live on this host too). Phone i
    is at base + 2i: its RTCP port (+1), where the edge sends reports, stays unbound."""
    caller = free_block(2 * ncalls, 34000, 60000, udp_only=True)
    callee = free_block(2 * ncalls, 34000, 60000, udp_only=True, after=caller + 2 * ncalls)
    return caller, callee


# ---------------------------------------------------------------------------- signalling

def sipp_stats(path: Path) -> dict[str, str]:
    """The last row of a sipp -trace_stat CSV."""
    try:
        with path.open(newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
    except OSError:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False)) if len(rows) > 1 else {}


def stat(d: dict[str, str], key: str) -> int:
    v = d.get(key, "0") or "0"
    return int(v) if v.isdigit() else 0


def sipp_files(name: str) -> list[str]:
    return ["-nostdin", "-trace_stat", "-stf", str(WORK / f"{name}.csv"), "-fd", "1",
            "-trace_err", "-error_file", str(WORK / f"{name}_err.log"),
            "-trace_screen", "-screen_file", str(WORK / f"{name}.screen")]


def bench_policy() -> Path:
    """The shipped policy with the automated-dialing heuristics and the daily short-call
    average switched off, nothing else (a load generator dials like a machine), in WORK."""
    policy = (ROOT / "configs" / "policy.toml").read_text()
    # the largest values the policy loader accepts; a run places < 100 calls per caller
    for key, value in (("max_attempts", "100000"), ("gap_streak", "1000"),
                       ("threshold", "100000")):
        policy, n = re.subn(rf"(?m)^{key} = \d+", f"{key} = {value}", policy, count=1)
        if n != 1:
            raise RuntimeError(f"policy.toml has no {key} any more: update bench/edge.py")
    pol = WORK / "policy.toml"
    pol.write_text(policy)
    return pol


def bench_configs() -> tuple[Path, Path, list[Path], Path]:
    """Edge config (the shipped one, bench users instead of the demo ones), bench policy, and
    the sipp injection files: one caller list per UAC instance, and the callees."""
    edge_text = (ROOT / "configs" / "edge.toml").read_text()
    first_user = re.search(r"(?m)^\[\[users\]\]", edge_text)  # a table, not a comment's words
    if first_user is None:
        raise RuntimeError("configs/edge.toml has no [[users]] table: update bench/edge.py")
    edge_text = edge_text[:first_user.start()]
    # every bench request comes from 127.0.0.1, which the per-source flood guard (default 200
    # requests/s, then 5 s of silence) would take for a scanner: keep the guard in the path,
    # with a limit no bench rate reaches
    for key in ("flood_rate_per_s", "flood_burst"):
        edge_text = re.sub(rf"(?m)^{key} = \d+", f"{key} = 1000000", edge_text)
    users = []
    for ext, extra in [(3000 + i, 3) for i in range(CALLERS)] + [(4000 + k, 64) for k in range(UACS)]:
        users.append(f'[[users]]\next = "{ext}"\nname = "Bench {ext}"\n'
                     f'password = "bench-{ext}"\nextra_channels = {extra}\n')
    cfg = WORK / "edge.toml"
    cfg.write_text(edge_text + "\n".join(users))
    pol = bench_policy()

    def auth(ext: int) -> str:
        # sipp expands a keyword found in an injected field, not a field inside a keyword
        return f"[authentication username={ext} password=bench-{ext}]"

    per = CALLERS // UACS
    callers = []
    for k in range(UACS):
        path = WORK / f"callers{k}.csv"
        path.write_text("SEQUENTIAL\n" + "".join(
            f"{3000 + per * k + i};{auth(3000 + per * k + i)};{4000 + k};\n" for i in range(per)))
        callers.append(path)
    callees = WORK / "callees.csv"
    callees.write_text("SEQUENTIAL\n" + "".join(
        f"{4000 + k};{auth(4000 + k)};\n" for k in range(UACS)))
    return cfg, pol, callers, callees


def wait_for(path: Path, text: str, proc: subprocess.Popen[Any], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"{text!r} not seen in {path}:\n{path.read_text(errors='replace')[-3000:]}")


def wait_udp(port: int, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return
        finally:
            s.close()
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on udp {port}")


def udp_rcvbuf_errors() -> int:
    """Datagrams the kernel dropped because a socket's receive buffer was full (whole host:
    a SIP process that falls behind loses requests here and the peers retransmit)."""
    with open("/proc/net/snmp") as f:
        rows = [ln.split() for ln in f if ln.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def rate_row(kind: str, rate: int, uac: dict[str, str], uas_retrans: int, reqs_per_call: int,
             cpu_pct: float, asked: int) -> dict[str, Any]:
    ok = stat(uac, "SuccessfulCall(C)")
    failed = stat(uac, "FailedCall(C)")
    calls = stat(uac, "OutgoingCall(C)")
    failed += max(0, asked - ok - failed)  # calls never placed or never finished count as failed
    retrans = stat(uac, "Retransmissions(C)") + uas_retrans
    # retransmittable messages: the UAC's requests with a timer plus the UAS's 200 OK
    base = max(1, calls * (reqs_per_call + 1))
    pct = 100.0 * retrans / base
    clean = failed == 0 and pct < 0.1
    return {"kind": kind, "rate": rate, "calls": calls, "ok": ok, "failed": failed,
            "retrans": retrans, "uac_retrans": stat(uac, "Retransmissions(C)"),
            "uas_retrans": uas_retrans, "retrans_pct": pct, "cpu_pct": cpu_pct, "clean": clean}


def signalling(rates: Sequence[int], direct_rates: Sequence[int], secs: float,
               profile: bool = False, durability: str = "full") -> list[dict[str, Any]]:
    cfg, pol, callers, callees = bench_configs()
    edge_port, uas_port, reg_port, *uac_ports = free_ports(3 + UACS)
    media_port = free_block(4)  # the UAS binds RTP/RTCP for audio and video from here
    rows: list[dict[str, Any]] = []
    edge_log = WORK / "edge.log"
    with edge_log.open("w") as log:
        edge = start(["taskset", "-c", "0", EDGE_PYTHON, "-m", "softphone", "edge",
                      "--config", str(cfg), "--policy", str(pol), "--sip-port", str(edge_port),
                      "--tls-port", "0", "--rtp-ports", "20000-22000", "--http-port", "0",
                      "--durability", durability,
                      "--data-dir", str(WORK / f"edge-data-{durability}")], out=log)
    uas = spy = None
    try:
        wait_for(edge_log, "softphone edge listening", edge, 30)
        if profile:  # sampled from outside: py-spy attaches to the edge by PID
            spy = start([str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                         str(edge.pid), "--rate", "250", "--format", "raw",
                         "--output", str(WORK / "edge-profile.txt"), "--nonblocking"],
                        out=(WORK / "py-spy.log").open("w"))
        uas = start(["taskset", "-c", "1", "sipp", "-sf", str(LAB_SCENARIOS / "edge_uas_answer.xml"),
                     "-i", "127.0.0.1", "-p", str(uas_port), "-mi", "127.0.0.1",
                     "-mp", str(media_port), *sipp_files("edge_uas")])
        wait_udp(uas_port)
        target = f"127.0.0.1:{edge_port}"
        reg = subprocess.run(["taskset", "-c", "1", "sipp", target, "-sf",
                              str(SCENARIOS / "edge_register_many.xml"), "-inf", str(callees),
                              "-i", "127.0.0.1", "-p", str(reg_port), "-set", "cport",
                              str(uas_port), "-m", str(UACS), "-timeout", "30s",
                              "-timeout_error", *sipp_files("edge_reg")],
                             timeout=60, capture_output=True, text=True)
        st = sipp_stats(WORK / "edge_reg.csv")
        if reg.returncode != 0 or stat(st, "SuccessfulCall(C)") != UACS:
            raise RuntimeError(f"registration failed: rc={reg.returncode} {st}\n"
                               f"{(WORK / 'edge_reg_err.log').read_text(errors='replace')[-2000:]}")
        for rate in rates:
            time.sleep(1.0)  # the previous rate's calls and transactions have drained
            uas0 = stat(sipp_stats(WORK / "edge_uas.csv"), "Retransmissions(C)")
            per = int(rate * secs) // UACS
            names = [f"edge_uac_{rate}_{k}" for k in range(UACS)]
            drops0 = udp_rcvbuf_errors()
            w0 = runq_wait_s(edge.pid)
            c0, t0 = cpu_ticks(edge.pid), time.perf_counter()
            # -r RATE -rp UACS*1000: each instance places RATE/UACS calls per second
            uacs = [start(["taskset", "-c", "1", "sipp", target, "-sf",
                           str(SCENARIOS / "edge_uac_many.xml"), "-inf", str(callers[k]),
                           "-auth_uri", f"{4000 + k}@{target}", "-i", "127.0.0.1",
                           "-p", str(uac_ports[k]), "-r", str(rate), "-rp", str(1000 * UACS),
                           "-m", str(per), "-timeout", f"{secs + 10:.0f}s", *sipp_files(names[k])])
                    for k in range(UACS)]
            # CPU over the offered-load window only (the last calls still end ~0.2 s later):
            # calls that hang until sipp's timeouts must not dilute it
            time.sleep(max(0.0, t0 + secs + 0.3 - time.perf_counter()))
            c1, t1 = cpu_ticks(edge.pid), time.perf_counter()
            w1 = runq_wait_s(edge.pid)
            for u in uacs:
                try:
                    u.wait(secs + 40)
                except subprocess.TimeoutExpired:
                    pass
                stop(u, signal.SIGUSR1)  # sipp's soft exit still writes its statistics
            time.sleep(1.1)  # the UAS writes its statistics once a second
            uas1 = stat(sipp_stats(WORK / "edge_uas.csv"), "Retransmissions(C)")
            total: dict[str, str] = {}
            for name in names:
                for key, v in sipp_stats(WORK / f"{name}.csv").items():
                    if key.endswith("(C)") and v.isdigit():
                        total[key] = str(stat(total, key) + int(v))
            row = rate_row(f"edge/{durability}{EDGE_LABEL}", rate, total, uas1 - uas0, 3,
                           100.0 * (c1 - c0) / TCK / (t1 - t0), per * UACS)
            row["rcvbuf_drops"] = udp_rcvbuf_errors() - drops0
            row["wait_pct"] = 100.0 * (w1 - w0) / (t1 - t0)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            if not row["clean"]:
                break
    finally:
        if uas is not None:
            stop(uas, signal.SIGUSR1)
        stop(edge)
        if spy is not None:
            spy.wait(15)  # py-spy writes its file when the edge has gone
            _procs.remove(spy)
    if not direct_rates:
        return rows
    # the reference: sipp's built-in scenarios back to back, the UAS where the edge was
    uas_port2, uac_port2 = free_ports(2)
    uas = start(["taskset", "-c", "0", "sipp", "-sn", "uas", "-i", "127.0.0.1", "-p",
                 str(uas_port2), *sipp_files("direct_uas")])
    try:
        wait_udp(uas_port2)
        for rate in direct_rates:
            time.sleep(1.0)
            uas0 = stat(sipp_stats(WORK / "direct_uas.csv"), "Retransmissions(C)")
            asked = int(rate * secs)
            name = f"direct_uac_{rate}"
            drops0 = udp_rcvbuf_errors()
            w0 = runq_wait_s(uas.pid)
            c0, t0 = cpu_ticks(uas.pid), time.perf_counter()
            uac = start(["taskset", "-c", "1", "sipp", "-sn", "uac", f"127.0.0.1:{uas_port2}",
                         "-i", "127.0.0.1", "-p", str(uac_port2), "-r", str(rate),
                         "-m", str(asked), "-d", "100", "-timeout", f"{secs + 10:.0f}s",
                         *sipp_files(name)])
            time.sleep(max(0.0, t0 + secs + 0.3 - time.perf_counter()))
            c1, t1 = cpu_ticks(uas.pid), time.perf_counter()
            w1 = runq_wait_s(uas.pid)
            try:
                uac.wait(secs + 40)
            except subprocess.TimeoutExpired:
                pass
            stop(uac, signal.SIGUSR1)
            time.sleep(1.1)
            uas1 = stat(sipp_stats(WORK / "direct_uas.csv"), "Retransmissions(C)")
            row = rate_row("direct", rate, sipp_stats(WORK / f"{name}.csv"), uas1 - uas0, 2,
                           100.0 * (c1 - c0) / TCK / (t1 - t0), asked)
            row["rcvbuf_drops"] = udp_rcvbuf_errors() - drops0
            row["wait_pct"] = 100.0 * (w1 - w0) / (t1 - t0)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            if not row["clean"]:
                break
    finally:
        stop(uas, signal.SIGUSR1)
    return rows


def print_profile(path: Path, top: int = 10) -> None:
    """Top frames by samples from py-spy's raw (collapsed) output: own time and inclusive."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [re.sub(r" \(/.*/(softphone|site-packages|lib/python3\.11)/", r" (\1/", f)
                  for f in stack.split(";")]
        leaf = re.sub(r":\d+\)$", ")", frames[-1])  # one row per function, not per line
        own[leaf] = own.get(leaf, 0) + n
        for f in {re.sub(r":\d+\)$", ")", f) for f in frames}:
            incl[f] = incl.get(f, 0) + n
    print(f"\nEdge profile (py-spy, on-CPU samples only, {total}): top {top} "
          "by own time")
    for f, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {100.0 * n / total:5.1f} %  {f}")
    print(f"top {top} by inclusive time, below the datagram dispatch (frames on > 50 % of "
          "samples are the event loop and transport plumbing)")
    rows = [(f, n) for f, n in incl.items() if n < 0.5 * total]
    for f, n in sorted(rows, key=lambda kv: -kv[1])[:top]:
        print(f"  {100.0 * n / total:5.1f} %  {f}")


def print_signalling(rows: list[dict[str, Any]], secs: float) -> None:
    print(f"\nSignalling: sipp uac -> edge -> sipp uas (edge on CPU 0) vs sipp uac -> sipp uas "
          f"(uas on CPU 0), {secs:.0f} s per rate")
    print(f"{'path':<12} {'rate':>5} {'calls':>6} {'failed':>6} {'retrans %':>9} "
          f"{'uac/uas':>9} {'SUT CPU %':>9} {'runq %':>6} {'UDP drops':>9}  verdict")
    for r in rows:
        rr = f"{r['uac_retrans']}/{r['uas_retrans']}"
        print(f"{r['kind']:<12} {r['rate']:>5} {r['calls']:>6} {r['failed']:>6} "
              f"{r['retrans_pct']:>9.3f} {rr:>9} {r['cpu_pct']:>9.1f} {r['wait_pct']:>6.1f} "
              f"{r['rcvbuf_drops']:>9}  "
              f"{'clean' if r['clean'] else 'FAIL'}")
    best: dict[str, int] = {}
    top: dict[str, bool] = {}
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    for kind in {*kinds, "direct"}:
        mine = [r for r in rows if r["kind"] == kind]
        clean = [r["rate"] for r in mine if r["clean"]]
        best[kind] = max(clean, default=0)
        top[kind] = bool(mine) and mine[-1]["clean"]
    direct_s = f"{best['direct']}{'+' if top['direct'] else ''}"
    for kind in (k for k in kinds if k != "direct"):  # one line per durability setting
        edge_s = f"{best[kind]}{'+' if top[kind] else ''}"
        ratio = best[kind] / best["direct"] if best["direct"] else float("nan")
        print(f"highest clean rate: {kind} {edge_s} cps, sipp<->sipp {direct_s} cps; "
              f"edge / direct = {ratio:.2f}"
              f"{' (at least: direct did not fail)' if top['direct'] else ''}"
              f"  (target >= 500 cps; S2 >= 0.10)")


# ---------------------------------------------------------------------------- media: server

async def serve(mode: str, ncalls: int, first: int, last: int, secs: float,
                portfile: str, caller_base: int, callee_base: int) -> None:
    """Build ``ncalls`` calls of ``mode`` from the product's classes, write their ports, wait."""
    from softphone.codecs.offer_answer import answer_offer, build_offer
    from softphone.codecs.registry import OPUS, PCMA, Codec

    try:
        from softphone.edge.room import MediaSettings
    except ImportError:  # an install from before the edge's split (--edge-python before=...)
        from softphone.edge.b2bua import MediaSettings  # type: ignore[attr-defined,no-redef]
    from softphone.media.bridge import TickScheduler
    from softphone.media.call import CallMedia
    from softphone.media.ports import PortAllocator

    loop = asyncio.get_running_loop()
    alloc = PortAllocator(first, last, "127.0.0.1")
    ports: list[tuple[int, int]] = []
    keep: list[Any] = []
    calls: list[CallMedia] = []
    sched = TickScheduler()
    recorded = [0]

    def recorder(frame: bytes) -> None:
        recorded[0] += 1

    if mode == "bare":
        class Forward(asyncio.DatagramProtocol):
            """What udp_relay.py does, on sockets from the edge's allocator."""

            def __init__(self) -> None:
                self.out: Any = None
                self.dest = ("127.0.0.1", 0)

            def datagram_received(self, data: bytes, addr: Any) -> None:
                self.out.sendto(data, self.dest)

        for i in range(ncalls):
            pa, pb = alloc.allocate(f"bare-{i}/a"), alloc.allocate(f"bare-{i}/b")
            ta, fa = await loop.create_datagram_endpoint(Forward, sock=pa.rtp_sock)
            tb, fb = await loop.create_datagram_endpoint(Forward, sock=pb.rtp_sock)
            fa.out, fa.dest = tb, ("127.0.0.1", callee_base + 2 * i)
            fb.out, fb.dest = ta, ("127.0.0.1", caller_base + 2 * i)
            keep += [ta, tb, pa, pb]
            ports.append((pa.rtp, pb.rtp))
    else:
        ms = MediaSettings()  # what the edge uses: 16 kHz bridge, jitter 20-200 ms
        codec_a: Codec = OPUS if mode == "opus" else PCMA
        for i in range(ncalls):
            call = CallMedia(f"bench-{i}", alloc, sched, bridge_rate=ms.bridge_rate,
                             jitter_min_ms=ms.jitter_min_ms, jitter_max_ms=ms.jitter_max_ms,
                             rtp_timeout=ms.rtp_timeout)
            for leg, phone, codec in (("a", caller_base + 2 * i, codec_a),
                                      ("b", callee_base + 2 * i, PCMA)):
                pair = call.reserve(leg)
                offer = build_offer(address="127.0.0.1", port=phone, order=[codec])
                await call.attach(leg, answer_offer(offer, address="127.0.0.1", port=pair.rtp,
                                                    order=[codec]))
            if mode == "bridge":
                call.set_recorder(recorder)  # forces the bridge with the same codec on both legs
            call.connect()
            if (mode == "relay") != call.relaying:
                raise RuntimeError(f"{mode}: call {i} relaying={call.relaying}")
            calls.append(call)
            ports.append((call.pairs["a"].rtp, call.pairs["b"].rtp))
    Path(portfile).write_text("".join(f"{a} {b}\n" for a, b in ports))
    print("READY", file=sys.stderr, flush=True)
    await asyncio.sleep(secs)
    stats: dict[str, Any] = {"loop": type(loop).__module__}
    if calls:
        sessions = [s for c in calls for s in c.sessions.values()]
        stats.update(ticks=sched.ticks, late=sched.late, skipped=sched.skipped,
                     tick_errors=sched.errors, recorded=recorded[0])
        for name in ("packets_received", "packets_sent", "errors", "malformed", "relayed",
                     "foreign_source"):
            stats[name] = sum(int(getattr(s, name, 0)) for s in sessions)
    for c in calls:
        c.close()
    alloc.close()
    print(json.dumps(stats), flush=True)


def serve_main(argv: list[str]) -> None:
    mode, loop_kind, n, first, last, secs, portfile, cb, eb = argv
    coro = serve(mode, int(n), int(first), int(last), float(secs), portfile, int(cb), int(eb))
    if loop_kind == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


# ---------------------------------------------------------------------------- media: driver

def build_loadgen() -> Path:
    LOADGEN.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-O2", "-o", str(LOADGEN), str(LOADGEN_SRC)], check=True)
    return LOADGEN


def opus_frames() -> Path:
    """One second of Opus (48 kHz mono, complexity 5, speech-like: harmonics under a syllable
    envelope) as the load generator's frame file."""
    from softphone.codecs.opus import OpusEncoder

    path = WORK / "opus.frames"
    if path.exists():
        return path
    enc = OpusEncoder(48000, 1, "voip", complexity=5)
    out = bytearray()
    for k in range(50):
        samples = []
        for n in range(960):
            t = (k * 960 + n) / 48000.0
            env = max(0.0, math.sin(2 * math.pi * 3.0 * t))
            f0 = 140.0 + 20.0 * math.sin(2 * math.pi * 0.7 * t)
            v = sum(math.sin(2 * math.pi * f0 * h * t) / h for h in range(1, 8))
            samples.append(int(6000 * env * v))
        pcm = b"".join(max(-32768, min(32767, s)).to_bytes(2, "little", signed=True)
                       for s in samples)
        frame = enc.encode(pcm)
        out += len(frame).to_bytes(2, "little") + frame
    path.write_bytes(bytes(out))
    return path


def layout(ports: list[tuple[int, int]]) -> str | None:
    """The loadgen's command-line layout when the allocator handed out consecutive pairs
    (a, b, a, b...), else None (then the port file is passed)."""
    first = ports[0][0]
    if all(a == first + 4 * i and b == a + 2 for i, (a, b) in enumerate(ports)):
        return f"{first}:{len(ports)}:4"
    return None


def run_media(mode: str, loop_kind: str, ncalls: int, secs: float, first: int,
              last: int) -> dict[str, Any]:
    portfile = WORK / f"ports-{mode}-{loop_kind}-{ncalls}.txt"
    server_out = WORK / f"serve-{mode}-{loop_kind}-{ncalls}.out"
    caller_base, callee_base = phone_bases(ncalls)
    with server_out.open("w") as out:
        server = subprocess.Popen(
            ["taskset", "-c", "0", EDGE_PYTHON, __file__, "serve", mode, loop_kind,
             str(ncalls), str(first), str(last), str(secs + 2), str(portfile),
             str(caller_base), str(callee_base)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, text=True)
    _procs.append(server)
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"media server did not start: {line}{server.stderr.read()[-3000:]}")
        ports = [(int(a), int(b)) for a, b in
                 (ln.split() for ln in portfile.read_text().splitlines() if ln.strip())]
        where = layout(ports) or str(portfile)
        specs: list[str] = []
        if mode == "opus":
            specs = ["172", f"96:960:{opus_frames()}", "8:160"]
        time.sleep(0.5)
        w0 = runq_wait_s(server.pid)
        c0, t0 = cpu_ticks(server.pid), time.perf_counter()
        lg = subprocess.run(["taskset", "-c", "1", str(LOADGEN), "-p",
                             f"{caller_base}:{callee_base}:2", str(100 * ncalls), str(secs),
                             where, *specs], capture_output=True, text=True, timeout=secs + 30)
        c1, t1 = cpu_ticks(server.pid), time.perf_counter()
        w1 = runq_wait_s(server.pid)
        server.wait(secs + 30)
        _procs.remove(server)
    finally:
        if server in _procs:
            stop(server)
    if lg.returncode != 0:
        raise RuntimeError(f"loadgen failed: {lg.stderr}")
    res: dict[str, Any] = json.loads(lg.stdout)
    text = server_out.read_text().strip().splitlines()
    res["server"] = json.loads(text[-1]) if text else {}
    cpu_s = (c1 - c0) / TCK
    res.update(mode=mode, loop=loop_kind, layout=where, cpu_pct=100.0 * cpu_s / (t1 - t0),
               wait_pct=100.0 * (w1 - w0) / (t1 - t0),
               us_per_pkt=1e6 * cpu_s / res["recvd"] if res["recvd"] else float("nan"))
    # a packet through a relay carries its send time; through the bridge the loud marker frames
    # are timed instead
    if res["timed"]:
        res["p50_ms"], res["p99_ms"] = res["lat_us_p50"] / 1000, res["lat_us_p99"] / 1000
    elif res["marks"]:
        res["p50_ms"], res["p99_ms"] = res["mark_us_p50"] / 1000, res["mark_us_p99"] / 1000
    else:
        res["p50_ms"] = res["p99_ms"] = float("nan")
    lost_marks = res["marks_sent"] - res["marks"] if mode == "bridge" else 0
    res["marks_lost"] = lost_marks
    return res


MEDIA_SERIES = [  # (label, mode, loop)
    ("bare asyncio", "bare", "asyncio"),
    ("bare uvloop", "bare", "uvloop"),
    ("relay asyncio", "relay", "asyncio"),
    ("relay uvloop", "relay", "uvloop"),
    ("bridge asyncio", "bridge", "asyncio"),
    ("bridge uvloop", "bridge", "uvloop"),
]


def verdict(r: dict[str, Any], base_p50: float | None) -> tuple[bool, str]:
    """R2: 0.00 % loss, CPU <= 85 %, median delay <= 1 ms beyond what the path adds unloaded
    (relay: nothing, so p50 <= 1 ms; bridge: jitter-buffer target + tick alignment, taken as the
    series' p50 at its lowest N)."""
    why = []
    # a bridge sends its frames on its own clock (recvd may exceed sent); a relay echoes
    if r["recvd"] < r["sent"] or r["send_fail"] or r["marks_lost"]:
        why.append("loss")
    if r["cpu_pct"] > CPU_LIMIT:
        why.append("cpu")
    limit = 1.0 if base_p50 is None else base_p50 + 1.0
    if not r["p50_ms"] <= limit:
        why.append("delay")
    return not why, ",".join(why) or "ok"


def media(grid: dict[str, Sequence[int]], series: Sequence[tuple[str, str, str]], secs: float,
          first: int, last: int) -> list[dict[str, Any]]:
    """Each series climbs its mode's grid of N and stops at the first row that fails."""
    rows: list[dict[str, Any]] = []
    for label, mode, loop_kind in series:
        base_p50: float | None = None
        for n in grid[mode]:
            r = run_media(mode, loop_kind, n, secs, first, last)
            if mode in ("bridge", "opus") and base_p50 is None:
                base_p50 = r["p50_ms"] if not math.isnan(r["p50_ms"]) else None
            r["label"] = label
            r["ok"], r["why"] = verdict(r, base_p50 if mode == "bridge" else None)
            if mode == "opus":
                r["ok"], r["why"] = verdict(dict(r, p50_ms=0.0), None)
            rows.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            if not r["ok"]:
                break
    return rows


def knee(rows: list[dict[str, Any]], label: str) -> tuple[int, bool]:
    mine = [r for r in rows if r["label"] == label]
    good = [r["ncalls"] for r in mine if r["ok"]]
    return max(good, default=0), bool(mine) and mine[-1]["ok"]


def print_media(rows: list[dict[str, Any]], secs: float) -> None:
    print(f"\nMedia: N G.711 calls x 100 pps into the relay process (CPU 0), C load generator "
          f"on CPU 1, {secs:.0f} s per row")
    print(f"{'path':<15} {'N':>5} {'offered':>7} {'delivered':>9} {'loss %':>6} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'CPU %':>6} {'runq %':>6} {'us/pkt':>6} {'LG CPU %':>8}  verdict")
    for r in rows:
        print(f"{r['label']:<15} {r['ncalls']:>5} {r['offered_pps']:>7.0f} "
              f"{r['delivered_pps']:>9.0f} {r['loss_pct']:>6.2f} {r['p50_ms']:>7.2f} "
              f"{r['p99_ms']:>7.2f} {r['cpu_pct']:>6.1f} {r['wait_pct']:>6.1f} "
              f"{r['us_per_pkt']:>6.2f} {r['loadgen_cpu_pct']:>8.1f}  {r['why']}")
    labels = list(dict.fromkeys(r["label"] for r in rows))
    print("knee (largest N with 0.00 % loss, CPU <= 85 %, p50 within 1 ms), '+' = did not fail "
          "in the range tried:")
    for label in labels:
        ref = "bare uvloop" + label[label.index("@"):] if "@" in label else "bare uvloop"
        ref_n, _ = knee(rows, ref)  # the bare relay of the same install (--edge-python)
        ref_us = {r["ncalls"]: r["us_per_pkt"] for r in rows if r["label"] == ref and r["ok"]}
        n, top = knee(rows, label)
        ratio = f"{n / ref_n:.2f}" if ref_n else "n/a"
        # CPU per packet only where both rows were healthy (a saturated row measures queueing)
        same = [r for r in rows if r["label"] == label and r["ncalls"] in ref_us and r["ok"]]
        cost = (f"; us/pkt vs bare uvloop at N={same[-1]['ncalls']}: "
                f"{same[-1]['us_per_pkt'] / ref_us[same[-1]['ncalls']]:.2f}x") if same else ""
        print(f"  {label:<15} {n:>5}{'+' if top else ' '} calls  ({ratio} x bare uvloop){cost}")


def print_transcode(rows: list[dict[str, Any]], secs: float) -> None:
    print(f"\nTranscoding: N calls Opus (48 kHz, complexity 5) <-> PCMA through the 16 kHz bridge, "
          f"{secs:.0f} s per row")
    print(f"{'path':<20} {'N':>4} {'delivered':>9} {'loss %':>6} {'CPU %':>6} {'runq %':>6} "
          f"{'CPU % / call':>12} {'calls/core @85 %':>16}  verdict")
    for r in rows:
        per = r["cpu_pct"] / r["ncalls"]
        print(f"{r['label']:<20} {r['ncalls']:>4} {r['delivered_pps']:>9.0f} {r['loss_pct']:>6.2f} "
              f"{r['cpu_pct']:>6.1f} {r['wait_pct']:>6.1f} {per:>12.3f} {CPU_LIMIT / per:>16.0f}"
              f"  {r['why']}")
    for label in dict.fromkeys(r["label"] for r in rows):
        n, top = knee(rows, label)
        print(f"  {label}: largest clean N {n}{'+' if top else ''} (target >= 100 per core)")


# ---------------------------------------------------------------------------- main

def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about 2 minutes instead of 10")
    ap.add_argument("--only", default="signalling,media,transcode")
    ap.add_argument("--profile", action="store_true",
                    help="one more edge run, sampled with py-spy: top 10 hot spots")
    ap.add_argument("--profile-rate", type=int, default=100, help="calls per second for it")
    ap.add_argument("--rates", help="signalling rates, e.g. 100,300 (overrides the default)")
    ap.add_argument("--durability", default="full",
                    help="the edge's [data] durability for the signalling part, comma "
                         "separated to run each in turn (full,relaxed: the fsync cost)")
    ap.add_argument("--edge-python", default="",
                    help="label=python,... : measure each interpreter's installed softphone "
                         "in turn, in this one run (e.g. before=../old/.venv/bin/python,after="
                         ".venv/bin/python)")
    ap.add_argument("--rtp-ports", default="20000-29999",
                    help="media driver's range (20000-22000 holds only 500 calls)")
    args = ap.parse_args()
    pythons = [("@" + lab, py) for lab, _, py in
               (x.partition("=") for x in args.edge_python.split(",") if x)] or [("", EDGE_PYTHON)]
    parts = set(args.only.split(","))
    first, last = (int(x) for x in args.rtp_ports.split("-"))
    WORK.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if args.quick:
        sig_secs, rates, direct_rates = 4.0, [100, 150, 200, 300, 500], [100, 300, 500, 1000]
        m_secs = 3.0
        grid: dict[str, Sequence[int]] = {
            "bare": [250, 500, 1000], "relay": [250, 500, 1000], "bridge": [50, 100, 200],
            "opus": [10, 25, 50]}
        series = [MEDIA_SERIES[i] for i in (0, 1, 2, 3, 5)]
    else:
        sig_secs = 8.0
        rates = [50, 100, 150, 200, 300, 400, 500, 700]
        direct_rates = [100, 300, 500, 700, 1000, 1500, 2000, 3000]
        m_secs = 5.0
        grid = {"bare": [250, 500, 750, 1000, 1250, 1500, 1750, 2000],
                "relay": [250, 500, 750, 1000, 1250, 1500, 1750, 2000],
                "bridge": [50, 100, 200, 300, 400, 500, 750, 1000],
                "opus": [10, 25, 50, 75, 100, 125, 150]}
        series = MEDIA_SERIES
    t_start = time.monotonic()
    try:
        print(f"# bench/edge.py{' --quick' if args.quick else ''} on {os.cpu_count()} CPUs, "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')} UTC, load average before the run "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        print("(runq % = share of the window the measured process was runnable but waiting for "
              "its CPU: other work on the host; high values make every figure pessimistic)")
        if "signalling" in parts:
            if args.rates:
                rates = [int(x) for x in args.rates.split(",")]
                direct_rates = rates
            sig_rows: list[dict[str, Any]] = []
            k = 0
            for label, python in pythons:
                use_edge(label, python)
                for durability in args.durability.split(","):
                    sig_rows += signalling(rates, direct_rates if k == 0 else [], sig_secs,
                                           durability=durability)
                    k += 1
            print_signalling(sig_rows, sig_secs)
        if args.profile:
            # a pass of its own: a sampler attached to the edge must not touch the tables
            prof = signalling([args.profile_rate], [], sig_secs, profile=True)
            print(f"\nprofiled pass at {args.profile_rate} cps: {prof[0]['calls']} calls, "
                  f"{prof[0]['failed']} failed, edge CPU {prof[0]['cpu_pct']:.1f} %")
            print_profile(WORK / "edge-profile.txt")
        if parts & {"media", "transcode"}:
            build_loadgen()
        if "media" in parts:
            m_rows: list[dict[str, Any]] = []
            for label, python in pythons:
                use_edge(label, python)
                m_rows += media(grid, [(f"{lab}{label}", mode, lk)
                                       for lab, mode, lk in series], m_secs, first, last)
            print_media(m_rows, m_secs)
        if "transcode" in parts:
            t_rows: list[dict[str, Any]] = []
            for label, python in pythons:
                use_edge(label, python)
                t_rows += media(grid, [(f"opus asyncio{label}", "opus", "asyncio"),
                                       (f"opus uvloop{label}", "opus", "uvloop")], m_secs,
                                first, last)
            print_transcode(t_rows, m_secs)
        print(f"\n(total {time.monotonic() - t_start:.0f} s; raw rows as JSON on stderr, files in "
              f"{WORK})")
    finally:
        stop_all()


if __name__ == "__main__":
    main()
