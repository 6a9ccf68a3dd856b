"""Jitter-buffer quality: our buffer vs speexdsp's vs a hindsight oracle on synthetic traces.

Each trace from bench/traces.py is replayed in receiver time: every packet is put() at its
arrival time, and every 20 ms (a fixed tick phase) the playout side asks for one frame.
For every buffer we measure, over the packets that arrived:

* late %: packets that arrived but were never played (discarded late, or dropped to cut
  delay), in percent of arrived packets;
* added delay: for each played frame, play time - (send time + the trace's minimum network
  delay), i.e. the delay the buffer adds above the fastest possible path; mean and P95.

Buffers:

* ours: softphone.native.jitter.JitterBuffer(min_delay_ms=20, max_delay_ms=500).
* speexdsp: libspeexdsp's jitter_buffer_* (Debian libspeexdsp1, through cffi ABI mode, in
  this benchmark only), step 160, default settings (its own late/delay trade-off), driven as
  its documentation says: put on arrival, get + tick once per frame.
* speexdsp@2%: the same with JITTER_BUFFER_SET_MAX_LATE_RATE = 2 (percent), which puts it
  at about our late rate, so the delays compare like for like.
* oracle: the best fixed playout delay in hindsight: the smallest D such that at most 1 %
  of arrived packets have relative arrival delay > D; it plays every frame at exactly
  send + min delay + D (no tick quantization, so it is a lower bound, not a real buffer).

Every model is replayed at four tick phases (0, 5, 10, 15 ms against the sender's frame
grid) and the three numbers are averaged: playout moves on a 20 ms grid, so a single phase
can flatter or punish any buffer by up to a frame.

Targets (from the work order): ours adds no more mean delay than speexdsp, mean added
delay <= 1.3 x the trace's P95 relative arrival delay, late discards <= 1 %.

Run: .venv/bin/python bench/jitter_quality.py [--seed N] [--models a,b] [--phases 0,5,10,15]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cffi import FFI

sys.path.insert(0, str(Path(__file__).resolve().parent))

from softphone.native.jitter import GetResult, JitterBuffer  # noqa: E402
from traces import FRAME, FRAME_MS, MODELS, Trace, percentile  # noqa: E402

SPEEX_CDEF = """
typedef struct JitterBuffer_ JitterBuffer;
typedef struct {
   char *data; uint32_t len; uint32_t timestamp; uint32_t span; uint16_t sequence;
   uint32_t user_data;
} JitterBufferPacket;
JitterBuffer *jitter_buffer_init(int step_size);
void jitter_buffer_destroy(JitterBuffer *jitter);
void jitter_buffer_put(JitterBuffer *jitter, const JitterBufferPacket *packet);
int jitter_buffer_get(JitterBuffer *jitter, JitterBufferPacket *packet, int32_t desired_span,
                      int32_t *start_offset);
void jitter_buffer_tick(JitterBuffer *jitter);
int jitter_buffer_ctl(JitterBuffer *jitter, int request, void *ptr);
"""
SPEEX_OK = 0
SPEEX_SET_MAX_LATE_RATE = 10


@dataclass(frozen=True)
class Outcome:
    late_pct: float
    mean_ms: float
    p95_ms: float
    note: str = ""


Player = Callable[[Trace, float], tuple[dict[int, float], str]]


def _events(trace: Trace, phase: float) -> list[tuple[float, int, int]]:
    """(time, kind, packet position) sorted; kind 0 = arrival, 1 = tick."""
    ev = [(p.arrival_ms, 0, i) for i, p in enumerate(trace.packets) if not p.lost]
    end = max(p.arrival_ms for p in trace.packets) + 1000
    t = 1000.0 + phase
    while t < end:
        ev.append((t, 1, -1))
        t += FRAME_MS
    ev.sort()
    return ev


def play_ours(trace: Trace, phase: float) -> tuple[dict[int, float], str]:
    jb = JitterBuffer(min_delay_ms=20, max_delay_ms=500, capacity=64)
    out = bytearray(jb.max_payload)
    played: dict[int, float] = {}
    for t, kind, i in _events(trace, phase):
        if kind == 0:
            p = trace.packets[i]
            jb.put(p.seq, p.ts, 0x1234, p.marker, p.index.to_bytes(4, "big"), t)
        else:
            res, n = jb.get_into(t, out)
            if res is GetResult.FRAME:
                played[int.from_bytes(out[:4], "big")] = t
    s = jb.stats
    return played, f"drop {s.frames_dropped} hold {s.frames_held}"


def _speex() -> tuple[Any, Any]:
    ffi = FFI()
    ffi.cdef(SPEEX_CDEF)
    return ffi, ffi.dlopen("libspeexdsp.so.1")


def play_speex(trace: Trace, phase: float,
               max_late_rate: int | None = None) -> tuple[dict[int, float], str]:
    ffi, sx = _speex()
    jb = ffi.gc(sx.jitter_buffer_init(FRAME), sx.jitter_buffer_destroy)
    if max_late_rate is not None:
        sx.jitter_buffer_ctl(jb, SPEEX_SET_MAX_LATE_RATE, ffi.new("int32_t *", max_late_rate))
    pkt = ffi.new("JitterBufferPacket *")
    data = ffi.new("char[]", 4)
    outbuf = ffi.new("char[]", 64)
    played: dict[int, float] = {}
    ts0 = trace.packets[0].ts
    for t, kind, i in _events(trace, phase):
        if kind == 0:
            p = trace.packets[i]
            ffi.memmove(data, p.index.to_bytes(4, "big"), 4)
            pkt.data, pkt.len = data, 4
            pkt.timestamp = (p.ts - ts0) & 0xFFFFFFFF  # speex wants a small start
            pkt.span, pkt.sequence, pkt.user_data = FRAME, p.seq, 0
            sx.jitter_buffer_put(jb, pkt)
        else:
            pkt.data, pkt.len = outbuf, 64
            if sx.jitter_buffer_get(jb, pkt, FRAME, ffi.NULL) == SPEEX_OK and pkt.len == 4:
                played[int.from_bytes(ffi.buffer(outbuf, 4)[:], "big")] = t
            sx.jitter_buffer_tick(jb)
    return played, ""


def measure(trace: Trace, played: dict[int, float], note: str) -> Outcome:
    base = trace.min_delay_ms
    by_index = {p.index: p for p in trace.arrived}
    added = [t - (by_index[i].send_ms + base) for i, t in played.items() if i in by_index]
    arrived = len(by_index)
    late = 100.0 * (arrived - len(added)) / arrived
    return Outcome(late, sum(added) / len(added), percentile(added, 95), note)


def oracle(trace: Trace) -> Outcome:
    rel = trace.relative_delays()
    d = percentile(rel, 99)
    late = 100.0 * sum(1 for r in rel if r > d) / len(rel)
    return Outcome(late, d, d)


def averaged(trace: Trace, player: Player, phases: list[float]) -> Outcome:
    runs = [measure(trace, *player(trace, ph)) for ph in phases]
    n = len(runs)
    return Outcome(sum(o.late_pct for o in runs) / n, sum(o.mean_ms for o in runs) / n,
                   sum(o.p95_ms for o in runs) / n, runs[0].note)


def fmt(o: Outcome) -> str:
    return f"{o.late_pct:5.2f} {o.mean_ms:6.1f} {o.p95_ms:6.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--phases", default="0,5,10,15", help="tick phases, ms")
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args(argv)
    phases = [float(x) for x in args.phases.split(",")]
    print(f"seed {args.seed}, tick phases {phases} ms (averaged); each cell: late % / mean "
          "added ms / P95 added ms; ours' drop/hold counts are for the first phase")
    head = (f"{'model':<11}| {'ours':^19} | {'speexdsp':^19} | {'speexdsp@2%':^19} | "
            f"{'oracle':^19} | {'P95 arr':>7} | verdict")
    print(head)
    print("-" * len(head) + "-" * 20)
    failures = 0
    for name in args.models.split(","):
        trace = MODELS[name](args.seed)
        ours = averaged(trace, play_ours, phases)
        speex = averaged(trace, play_speex, phases)
        speex2 = averaged(trace, lambda t, ph: play_speex(t, ph, 2), phases)
        orc = oracle(trace)
        p95 = percentile(trace.relative_delays(), 95)
        checks = {
            "<=speex": ours.mean_ms <= speex.mean_ms,
            "<=1.3xP95": ours.mean_ms <= 1.3 * p95,
            "late<=1%": ours.late_pct <= 1.0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        failures += bool(bad)
        verdict = "ok" if not bad else "MISS " + ",".join(bad)
        print(f"{name:<11}| {fmt(ours)} | {fmt(speex)} | {fmt(speex2)} | {fmt(orc)} | "
              f"{p95:7.1f} | {verdict}"
              f"  ({ours.note})")
    print(f"\n{failures} model(s) missing a target" if failures else "\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
