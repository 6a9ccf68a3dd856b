"""Soak: ``softphone edge`` under a steady call rate for a long time; nothing may grow.

sipp UACs -> ``softphone edge`` (its own process, as shipped) -> one sipp UAS, at ``--rate``
calls per second (50 by default) for ``--minutes`` (60 by default). The calls are the ones of
``bench/edge.py``'s signalling part (407 challenge, digest, policy admission, B2BUA with two RTP
port pairs, 180/200/ACK, 0.1 s, BYE), spread over 300 callers and 4 callees the same way, with
the same bench configuration and policy (only the automated-dialing heuristics and the daily
short-call average raised).

Every minute it prints one row: the edge's resident memory (VmRSS), its open file descriptors
(/proc/PID/fd) with the sockets among them, live calls, live media objects, SIP transactions
(from the edge's ``status.json``), calls completed and failed so far (sipp's statistics) and the
"media task failed" tracebacks in the edge's log. Meanwhile it scrapes the edge's ``/metrics``
every 10 s, as Prometheus would (the scrape path must not grow anything either). After warm-up (a minute or two: the SQLite
page cache, the interpreter's free lists), RSS, descriptors, calls and transactions must stay
flat; the last lines say by how much each grew from the end of the first minute.

usage: python bench/soak.py [--rate 50] [--minutes 60] [--every 60]

Needs sipp. Everything runs on 127.0.0.1; every process is started and stopped by its PID;
every wait is bounded. Work files go to /tmp/softphone-bench-edge-<pid>/ (as bench/edge.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import edge as bench  # noqa: E402  (bench/edge.py: configs, sipp helpers, process control)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid: int) -> tuple[int, int]:
    """Open descriptors of ``pid`` and how many of them are sockets."""
    total = sockets = 0
    base = f"/proc/{pid}/fd"
    for name in os.listdir(base):
        total += 1
        try:
            if os.readlink(f"{base}/{name}").startswith("socket:"):
                sockets += 1
        except OSError:  # closed meanwhile
            pass
    return total, sockets


def edge_status(data_dir: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads((data_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return loaded


def sample(pid: int, data_dir: Path, log: Path, names: list[str], t0: float) -> dict[str, Any]:
    st = edge_status(data_dir)
    total: dict[str, int] = {}
    for name in names:
        stats = bench.sipp_stats(bench.WORK / f"{name}.csv")
        for key in ("SuccessfulCall(C)", "FailedCall(C)"):
            total[key] = total.get(key, 0) + bench.stat(stats, key)
    fd_total, fd_sockets = fds(pid)
    text = log.read_text(errors="replace") if log.exists() else ""
    return {"min": (time.monotonic() - t0) / 60.0, "rss_mb": rss_kb(pid) / 1024.0,
            "fds": fd_total, "sockets": fd_sockets, "live_calls": st.get("live_calls", -1),
            "media": st.get("media_objects", -1), "ports": st.get("ports_in_use", -1),
            "transactions": st.get("transactions", -1),
            "ok": total.get("SuccessfulCall(C)", 0), "failed": total.get("FailedCall(C)", 0),
            "tracebacks": text.count("Traceback"),
            "media_task_failed": text.count("media task failed")}


def scrape(port: int) -> int:
    """One GET of the edge's /metrics, as Prometheus does; 1 when it answered 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            resp.read()
            return 1 if resp.status == 200 else 0
    except OSError:
        return 0


def print_row(r: dict[str, Any]) -> None:
    print(f"{r['min']:5.1f} {r['rss_mb']:8.1f} {r['fds']:5d} {r['sockets']:7d} "
          f"{r['live_calls']:5d} {r['media']:5d} {r['ports']:5d} {r['transactions']:6d} "
          f"{r['ok']:8d} {r['failed']:6d} {r['tracebacks']:5d} {r['media_task_failed']:6d}",
          flush=True)


def soak(rate: int, minutes: float, every: float) -> list[dict[str, Any]]:
    bench.WORK.mkdir(parents=True, exist_ok=True)
    cfg, pol, callers, callees = bench.bench_configs()
    edge_port, uas_port, reg_port, http_port, *uac_ports = bench.free_ports(4 + bench.UACS)
    media_port = bench.free_block(4)
    data_dir = bench.WORK / "soak-data"
    edge_log = bench.WORK / "soak-edge.log"
    with edge_log.open("w") as out:
        edge = bench.start([sys.executable, "-m", "softphone", "edge", "--config", str(cfg),
                            "--policy", str(pol), "--sip-port", str(edge_port),
                            "--tls-port", "0", "--rtp-ports", "20000-22000",
                            "--http-port", str(http_port), "--data-dir", str(data_dir)], out=out)
    rows: list[dict[str, Any]] = []
    try:
        bench.wait_for(edge_log, "softphone edge listening", edge, 30)
        bench.start(["sipp", "-sf", str(bench.LAB_SCENARIOS / "edge_uas_answer.xml"),
                     "-i", "127.0.0.1", "-p", str(uas_port), "-mi", "127.0.0.1",
                     "-mp", str(media_port), *bench.sipp_files("soak_uas")])
        bench.wait_udp(uas_port)
        target = f"127.0.0.1:{edge_port}"
        reg = subprocess.run(["sipp", target, "-sf",
                              str(bench.SCENARIOS / "edge_register_many.xml"), "-inf",
                              str(callees), "-i", "127.0.0.1", "-p", str(reg_port),
                              "-set", "cport", str(uas_port), "-m", str(bench.UACS),
                              "-timeout", "30s", "-timeout_error",
                              *bench.sipp_files("soak_reg")],
                             timeout=60, capture_output=True, text=True)
        if reg.returncode != 0:
            raise RuntimeError(f"registration failed: rc={reg.returncode}")
        per = int(rate * minutes * 60) // bench.UACS
        names = [f"soak_uac_{k}" for k in range(bench.UACS)]
        t0 = time.monotonic()
        uacs = [bench.start(["sipp", target, "-sf", str(bench.SCENARIOS / "edge_uac_many.xml"),
                             "-inf", str(callers[k]), "-auth_uri", f"{4000 + k}@{target}",
                             "-i", "127.0.0.1", "-p", str(uac_ports[k]), "-r", str(rate),
                             "-rp", str(1000 * bench.UACS), "-m", str(per),
                             "-timeout", f"{minutes * 60 + 60:.0f}s", *bench.sipp_files(names[k])])
                for k in range(bench.UACS)]
        print(f"# bench/soak.py --rate {rate} --minutes {minutes:g}: edge pid {edge.pid}, "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')} UTC, load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        print("  min   RSS MB   fds sockets calls media ports  trans  calls ok failed  "
              "tracebacks media-task-failed")
        first = sample(edge.pid, data_dir, edge_log, names, t0)
        rows.append(first)
        print_row(first)
        end = t0 + minutes * 60
        next_at = t0 + every
        scrapes = 0
        while time.monotonic() < end + 30 and any(u.poll() is None for u in uacs):
            time.sleep(max(0.0, min(next_at, end, time.monotonic() + 10) - time.monotonic()))
            scrapes += scrape(http_port)
            if time.monotonic() >= next_at or time.monotonic() >= end:
                rows.append(sample(edge.pid, data_dir, edge_log, names, t0))
                print_row(rows[-1])
                next_at += every
            if time.monotonic() >= end:
                break
        for u in uacs:
            try:
                u.wait(60)
            except subprocess.TimeoutExpired:
                pass
            bench.stop(u, signal.SIGUSR1)
        time.sleep(3.0)  # the last calls end; idle again
        rows.append(sample(edge.pid, data_dir, edge_log, names, t0))
        print_row(rows[-1])
        print(f"# /metrics scraped {scrapes} times")
    finally:
        bench.stop_all()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=50, help="calls per second (default 50)")
    ap.add_argument("--minutes", type=float, default=60.0, help="how long (default 60)")
    ap.add_argument("--every", type=float, default=60.0, help="seconds between rows")
    args = ap.parse_args()
    if args.rate < 1 or args.minutes <= 0 or args.every <= 0:
        ap.error("--rate, --minutes and --every must be positive")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rows = soak(args.rate, args.minutes, args.every)
    if len(rows) >= 3:
        base, last = rows[1], rows[-1]  # from the end of the first minute (warm-up) on
        print(f"after warm-up: RSS {base['rss_mb']:.1f} -> {last['rss_mb']:.1f} MB "
              f"({1024 * (last['rss_mb'] - base['rss_mb']) / max(1, last['ok'] - base['ok']):.3f}"
              f" kB per call), fds {base['fds']} -> {last['fds']}, "
              f"calls {last['ok']} ok, {last['failed']} failed, "
              f"{last['media_task_failed']} 'media task failed' in the edge's log")


if __name__ == "__main__":
    main()
