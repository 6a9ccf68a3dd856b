"""Media path benchmark: N concurrent G.711 calls through the edge's media layer, beside a bare
uvloop UDP relay measured by the same harness in the same run (PERF-ANCHORS 2.1, goals R1/R2).

Modes (each runs in its own process pinned to CPU 0 on uvloop; the C load generator
bench/rtp_loadgen.c runs on CPU 1 and plays both phones of every call at 50 pps per leg):

  bare    reference: two sockets per call, forward A->callee and B->caller, no parsing
  relay   the edge's relay fast path: RtpSession latching, RFC 3550 statistics, header
          rewrite (SSRC/seq/ts/PT) per packet, RTCP on the side
  bridge  anchored calls: RtpSession -> native jitter buffer -> G.711 decode -> native mixer
          (one Bridge per call, one shared 20-ms TickScheduler) -> G.711 encode -> RTP

CPU is the server process' utime+stime over the load window (/proc/PID/stat). For ``bridge``
the packets coming back are newly encoded frames, so there is no per-packet latency: loss
there means the bridge did not send its 50 frames per second per leg.

usage: python bench/media_bridge.py [--calls 100,200] [--secs 5] [--modes bare,relay,bridge]
                                    [--range 20000-22000] [--cpus 0,1] [--micro]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LOADGEN_SRC = HERE / "rtp_loadgen.c"
LOADGEN = Path(tempfile.gettempdir()) / "softphone-bench" / "rtp_loadgen"
CALLER_BASE, CALLEE_BASE = 30000, 32000
TCK = os.sysconf("SC_CLK_TCK")


def build_loadgen() -> Path:
    LOADGEN.parent.mkdir(parents=True, exist_ok=True)
    if not LOADGEN.exists() or LOADGEN.stat().st_mtime < LOADGEN_SRC.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-o", str(LOADGEN), str(LOADGEN_SRC)], check=True)
    return LOADGEN


# ---------------------------------------------------------------------------- server side

class _Forward(asyncio.DatagramProtocol):
    """The bare reference relay: what udp_relay.py does, on our allocated sockets."""

    def __init__(self) -> None:
        self.out: Any = None
        self.dest: tuple[str, int] = ("127.0.0.1", 0)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.out.sendto(data, self.dest)


async def serve(mode: str, ncalls: int, portfile: str, secs: float, first: int,
                last: int) -> None:
    from softphone.media.ports import PortAllocator

    loop = asyncio.get_running_loop()
    alloc = PortAllocator(first, last, "127.0.0.1")
    pairs = []
    for i in range(2 * ncalls):
        pair = alloc.allocate(f"call-{i // 2}")
        for s in (pair.rtp_sock,):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        pairs.append(pair)
    keep: list[Any] = []
    if mode == "bare":
        for i in range(ncalls):
            pa, pb = pairs[2 * i], pairs[2 * i + 1]
            ta, fa = await loop.create_datagram_endpoint(_Forward, sock=pa.rtp_sock)
            tb, fb = await loop.create_datagram_endpoint(_Forward, sock=pb.rtp_sock)
            fa.out, fa.dest = tb, ("127.0.0.1", CALLEE_BASE + i)
            fb.out, fb.dest = ta, ("127.0.0.1", CALLER_BASE + i)
            keep += [ta, tb]
    else:
        from softphone.codecs.g711 import G711Codec

        from softphone.media.bridge import Bridge, TickScheduler
        from softphone.media.session import RtpSession

        sched = TickScheduler()
        for i in range(ncalls):
            bridged = mode == "bridge"
            a = RtpSession(pairs[2 * i], allocator=alloc, remote=("127.0.0.1", CALLER_BASE + i),
                           use_jitter=bridged, inactivity_timeout=None)
            b = RtpSession(pairs[2 * i + 1], allocator=alloc,
                           remote=("127.0.0.1", CALLEE_BASE + i), use_jitter=bridged,
                           inactivity_timeout=None)
            await a.start()
            await b.start()
            if bridged:
                bridge = Bridge(rate=8000, max_legs=2, name=f"call-{i}")
                bridge.add_leg(a, G711Codec("PCMA"))
                bridge.add_leg(b, G711Codec("PCMA"))
                sched.add(bridge)
                keep.append(bridge)
            else:
                a.relay_to(b)
                b.relay_to(a)
            keep += [a, b]
        sched.start()
    Path(portfile).write_text("".join(f"{pairs[2 * i].rtp} {pairs[2 * i + 1].rtp}\n"
                                      for i in range(ncalls)))
    print("READY", file=sys.stderr, flush=True)
    await asyncio.sleep(secs)
    stats: dict[str, Any] = {}
    if mode != "bare":
        stats = {"ticks": sched.ticks, "late": sched.late, "skipped": sched.skipped}
        sessions = [x for x in keep if isinstance(x, RtpSession)]
        for name in ("packets_received", "packets_sent", "errors", "malformed", "relayed",
                     "foreign_source"):
            stats[name] = sum(getattr(x, name) for x in sessions)
    print(json.dumps(stats), flush=True)
    alloc.close()


# ---------------------------------------------------------------------------- driver side

def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def run_one(mode: str, ncalls: int, secs: float, first: int, last: int,
            cpus: tuple[str, str] = ("0", "1")) -> dict[str, Any]:
    loadgen = build_loadgen()
    with tempfile.NamedTemporaryFile("r", suffix=".ports") as pf:
        server = subprocess.Popen(
            ["taskset", "-c", cpus[0], sys.executable, __file__, "serve", mode, str(ncalls), pf.name,
             str(secs + 2), str(first), str(last)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = server.stderr.readline() if server.stderr else ""
            if line.strip() != "READY":
                raise RuntimeError(f"server did not start: {line}{server.stderr.read()}")
            time.sleep(0.5)
            c0, t0 = cpu_ticks(server.pid), time.perf_counter()
            lg = subprocess.run(["taskset", "-c", cpus[1], str(loadgen), str(100 * ncalls), str(secs),
                                 pf.name], capture_output=True, text=True, timeout=secs + 30)
            c1, t1 = cpu_ticks(server.pid), time.perf_counter()
            out, err = server.communicate(timeout=30)
            server_stats = json.loads(out or "{}")
        finally:
            server.terminate()  # only the server this driver started
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
    res: dict[str, Any] = json.loads(lg.stdout)
    cpu_s = (c1 - c0) / TCK
    res["mode"] = mode
    res["server"] = server_stats
    res["cpu_pct"] = 100.0 * cpu_s / (t1 - t0)
    # per packet handled: each relayed (or bridged) packet is one in + one out
    res["us_per_pkt"] = 1e6 * cpu_s / res["recvd"] if res["recvd"] else float("nan")
    return res


def micro(calls: int = 50, frames: int = 200) -> None:
    """In-process CPU cost of one leg for one 20-ms frame, stage by stage (no sockets: a
    transport that drops what it is given), next to the whole tick. Process CPU time, so a
    busy shared box inflates it less than wall time would."""
    import timeit

    from softphone.codecs.g711 import G711Codec
    from softphone.native.jitter import JitterBuffer
    from softphone.native.mixer import Mixer

    from softphone.media.bridge import Bridge
    from softphone.media.ports import PortAllocator
    from softphone.media.rtp import build_header
    from softphone.media.session import RtpSession

    class Drop:
        def sendto(self, data: bytes, addr: Any) -> None:
            pass

    codec = G711Codec("PCMA")
    payload = b"\xd5" * 160
    pcm = codec.decode(payload)
    jb = JitterBuffer()
    mixer = Mixer(160, 2)
    stages = {
        "jitter get (native wrapper)": lambda: jb.get(1e6),
        "jitter put (native wrapper)": lambda: jb.put(1, 160, 5, False, payload, 0.0),
        "G.711 decode (codecs)": lambda: codec.decode(payload),
        "G.711 encode (codecs)": lambda: codec.encode(pcm),
        "mixer set_input": lambda: mixer.set_input(0, pcm),
        "mixer mix, 2 legs (per leg)": lambda: mixer.mix(2, record=False),
    }
    rows = []
    for name, fn in stages.items():
        n = 20000
        t = min(timeit.repeat(fn, number=n, repeat=3, timer=time.process_time)) / n
        rows.append((name, t * (0.5 if "per leg" in name else 1.0)))
    alloc = PortAllocator(20000, 22000)
    bridges, sessions = [], []
    try:
        for _ in range(calls):
            br = Bridge(rate=8000, max_legs=2)
            for _j in range(2):
                s = RtpSession(alloc.allocate("micro"), remote=("127.0.0.1", 9),
                               inactivity_timeout=None)
                s._rtp = Drop()  # type: ignore[assignment]
                br.add_leg(s, codec)
                sessions.append(s)
            bridges.append(br)
        addr = ("127.0.0.1", 9)
        t_rx = t_tick = 0.0
        for k in range(frames):
            pkt = build_header(8, k, 160 * k, 7) + payload
            t = time.process_time()
            for s in sessions:
                s._on_rtp(pkt, addr)
            t_rx += time.process_time() - t
            t = time.process_time()
            for br in bridges:
                br.tick(20.0 * k + 100.0)
            t_tick += time.process_time() - t
        rows.append(("session receive -> jitter put (whole)", t_rx / frames / len(sessions)))
        rows.append(("bridge tick, per leg (whole)", t_tick / frames / len(sessions)))
    finally:
        alloc.close()
    print(f"{'stage, one leg, one 20-ms frame':<40} {'us':>7}")
    for name, t in rows:
        print(f"{name:<40} {t * 1e6:>7.2f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        import uvloop

        mode, n, portfile, secs, first, last = sys.argv[2:8]
        uvloop.run(serve(mode, int(n), portfile, float(secs), int(first), int(last)))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", default="100,200")
    ap.add_argument("--secs", type=float, default=5.0)
    ap.add_argument("--modes", default="bare,relay,bridge")
    ap.add_argument("--range", default="20000-22000")
    ap.add_argument("--micro", action="store_true", help="per-stage cost of one leg, in process")
    ap.add_argument("--cpus", default="0,1", help="CPU of the media process, CPU of the load")
    args = ap.parse_args()
    if args.micro:
        micro()
        return
    first, last = (int(x) for x in args.range.split("-"))
    rows = []
    for n in (int(x) for x in args.calls.split(",")):
        base: dict[str, Any] | None = None
        for mode in args.modes.split(","):
            cpu_server, cpu_load = args.cpus.split(",")
            r = run_one(mode, n, args.secs, first, last, (cpu_server, cpu_load))
            if mode == "bare":
                base = r
            r["ratio"] = (r["us_per_pkt"] / base["us_per_pkt"]) if base else float("nan")
            rows.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    print(f"{'mode':<7} {'calls':>5} {'offered pps':>11} {'delivered':>9} {'loss %':>7} "
          f"{'CPU %':>6} {'us CPU/pkt':>10} {'x bare':>6} {'p50 ms':>7}")
    for r in rows:
        p50 = f"{r['lat_us_p50'] / 1000:.2f}" if r["timed"] else "n/a"
        print(f"{r['mode']:<7} {r['ncalls']:>5} {r['offered_pps']:>11.0f} "
              f"{r['delivered_pps']:>9.0f} {r['loss_pct']:>7.2f} {r['cpu_pct']:>6.1f} "
              f"{r['us_per_pkt']:>10.2f} {r['ratio']:>6.2f} {p50:>7}")


if __name__ == "__main__":
    main()
