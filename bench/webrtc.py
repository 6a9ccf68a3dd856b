"""Browser legs through the edge: CPU per leg and audio gaps, beside SIP-to-SIP transcoded calls.

N browser-style phones (aiortc: ICE, DTLS-SRTP, Opus; SIP over the edge's WebSocket at ``/ws``)
each register as their own user and call their own G.711 callee through ``softphone edge`` (as
shipped, its own process, pinned to CPU 0). The callees are users registered by one sipp UAS
(pinned to CPU 1) that answers PCMA and echoes every RTP packet to its sender (``-rtp_echo``),
so each phone sends a tone and hears it back: phone -> aiortc in the edge -> 16 kHz bridge ->
PCMA -> sipp -> PCMA -> bridge -> aiortc -> phone. The phones live in another process (``python
bench/webrtc.py clients ...``, pinned to CPU 1 with the sipp UAS).

Beside each row, in the same run and against the same edge and callees, the same number of
SIP-to-SIP transcoded calls: plain SIP phones over UDP (the project's ``UserAgent``) offering
only Opus, sending a tone encoded in Opus, to the same PCMA echo callees (Opus <->
PCMA through the same bridge): what a browser leg costs beyond a transcoded SIP leg.

Measured over a steady window (after every call of the row is answered and a warm-up):
- the edge's CPU (utime + stime from /proc/PID/stat) divided by the number of calls;
- gaps: the 20-ms frames each phone should have heard back in the window and did not: lost
  (RTP sequence or timestamp skipped), short (fewer frames arrived than the window's length
  holds: the sender fell behind real time) or silent (RMS below a tenth of that phone's median
  frame), summed over the phones; a row passes with 0 gap frames and every call answered,
  and every phone hearing its own tone (each phone sends its own frequency).

Everything is on 127.0.0.1, every process is started and stopped by its PID, every wait is
bounded. Edge RTP (and its browser legs' ICE ports) in 23000-23999, the phones' ports in
24000-24999.

usage: python bench/webrtc.py [--quick] [--ns 1,2,5,10,20] [--secs S] [--only browser|sip]
       python bench/webrtc.py clients KIND N SIP_PORT HTTP_PORT WARM SECS OUT_JSON
       (internal: the phones of one row; KIND browser or sip)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import edge as bench_edge  # noqa: E402  (the edge benchmark's process and sipp helpers)

WORK = Path(tempfile.gettempdir()) / f"softphone-bench-webrtc-{os.getpid()}"
bench_edge.WORK = WORK  # its helpers start processes from, and write sipp files to, our folder
EDGE_RTP = (23000, 23999)
PHONE_PORTS = (24000, 24999)  # browsers' ICE ports 24000-24499, SIP phones' RTP 24500-24999
MAX_N = 20
BROWSERS, CALLEES, SIP_CALLERS = 5000, 6000, 7000  # users: 5000+i and 7000+i call 6000+i
FRAME_S = 0.02
RATE = 48000
CPU_LIMIT = 85.0  # a process above this share of its core is saturated
SILENT = 0.1  # a frame below this share of the phone's median frame RMS is a gap


def tone_hz(i: int) -> float:
    """Phone i's tone: a multiple of 50 Hz (a whole number of periods in 20 ms, so one frame
    repeats), each phone its own, all inside PCMA's band."""
    return 400.0 + 50.0 * (i % 40)


# ---------------------------------------------------------------------------- the phones

def frame_of(hz: float, amplitude: int = 8000) -> bytes:
    n = int(RATE * FRAME_S)
    t = np.arange(n) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def tone_share(pcm: np.ndarray, hz: float, rate: int = RATE) -> float:
    """The median over 100-ms windows of the share of the energy at ``hz`` (Goertzel-like)."""
    step = rate // 10
    shares = []
    for k in range(0, len(pcm) - step + 1, step):
        x = pcm[k:k + step].astype(np.float64)
        energy = float(np.dot(x, x))
        if energy == 0.0:
            shares.append(0.0)
            continue
        w = np.exp(-2j * np.pi * hz * np.arange(step) / rate)
        shares.append(float(abs(np.dot(x, w)) ** 2 * 2 / step / energy))
    return float(np.median(shares)) if shares else 0.0


def judge(frames: list[tuple[float, int, np.ndarray]], start: float, end: float,
          step: int, hz: float, rate: int) -> dict[str, Any]:
    """Gaps in what one phone heard: ``frames`` are (arrival, RTP position, mono PCM), the
    position in units of ``step`` per 20-ms frame (RTP sequence: 1, timestamp: samples)."""
    win = [f for f in frames if start <= f[0] <= end]
    expected = round((end - start) / FRAME_S)
    lost = events = 0
    for (_, a, _), (_, b, _) in zip(win, win[1:], strict=False):
        skipped = (b - a) // step - 1
        if skipped > 0:
            lost += skipped
            events += 1
    rms = [float(np.sqrt(np.mean(p.astype(np.float64) ** 2))) if len(p) else 0.0
           for _, _, p in win]
    median = float(np.median(rms)) if rms else 0.0
    quiet = [k for k, r in enumerate(rms) if r < SILENT * median or r < 50.0]
    silent = len(quiet)
    events += sum(1 for j, k in enumerate(quiet) if j == 0 or quiet[j - 1] != k - 1)
    short = max(0, expected - len(win) - lost - 2)  # 2: where the window's edges fall
    pcm = np.concatenate([p for _, _, p in win]) if win else np.zeros(0, np.int16)
    events += 1 if short else 0
    return {"expected": expected, "frames": len(win), "lost": lost, "short": short,
            "silent": silent, "gaps": lost + short + silent, "events": events,
            "median_rms": round(median),
            "tone": round(tone_share(pcm, hz, rate), 3),
            "rms_all": [round(r) for r in rms],  # in the work folder, for a look at a gap
            "silent_at_s": [round(win[k][0] - start, 2) for k in quiet[:20]],
            "rms_near": [round(rms[j]) for k in quiet[:3] for j in range(max(0, k - 2), k + 3)
                         if j < len(rms)]}


async def browsers(n: int, sip_port: int, http_port: int, warm: float,
                   secs: float) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    import av
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError
    from lab.webrtc_phone import WebRtcPhone

    del sip_port

    class Phone(WebRtcPhone):
        """Keeps each decoded frame with its arrival time and RTP timestamp (pts)."""

        frames: list[tuple[float, int, np.ndarray]]
        step, rate = 960, RATE  # positions are RTP timestamps (48 kHz), 960 per frame

        def finish(self) -> None:
            return None

        async def _listen(self, track: MediaStreamTrack) -> None:
            self.frames = []
            loop = asyncio.get_running_loop()
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                if isinstance(frame, av.AudioFrame) and frame.pts is not None:
                    pcm = frame.to_ndarray().reshape(-1)[::len(frame.layout.channels)]
                    self.frames.append((loop.time(), int(frame.pts), pcm.copy()))

    url = f"ws://127.0.0.1:{http_port}/ws"
    lo = PHONE_PORTS[0]
    phones = [Phone(url, str(BROWSERS + i), f"bench-{BROWSERS + i}",
                    rtp=(lo + 10 * i, lo + 10 * i + 9), tone_hz=tone_hz(i)) for i in range(n)]
    for p in phones:
        p.frames = []
    out: dict[str, Any] = {"kind": "browser", "n": n}
    try:
        async with asyncio.timeout(30):
            for p in phones:
                await p.__aenter__()
            regs = await asyncio.gather(*(p.register() for p in phones))
        out["registered"] = sum(1 for r in regs if r.status == 200)
        async with asyncio.timeout(30):
            calls = await asyncio.gather(*(p.call(str(CALLEES + i))
                                           for i, p in enumerate(phones)))
        out["answered"] = sum(1 for resp, _ in calls if resp.status == 200)
        out["statuses"] = [resp.status for resp, _ in calls]

        async def hang_up() -> list[bool]:
            byes = [await p.hang_up(invite, resp)
                    for p, (resp, invite) in zip(phones, calls, strict=True)
                    if resp.status == 200]
            return [b.status == 200 for b in byes]

        return await window(out, phones, lambda p: len(p.frames), hang_up, warm, secs)
    finally:
        for p in phones:
            try:
                async with asyncio.timeout(5):
                    await p.close()
            except Exception as exc:  # a phone that cannot close must not hide the others'
                print(f"close {p.user}: {exc!r}", file=sys.stderr)


async def window(out: dict[str, Any], phones: list[Any], heard: Callable[[Any], int],
                 hang_up: Callable[[], Awaitable[list[bool]]], warm: float,
                 secs: float) -> dict[str, Any]:
    """Warm-up once every phone hears something, the steady window between START and END
    (stdout lines the bench reads to take the edge's CPU), hang-up, then every phone's frames
    judged (``phone.frames``, ``step``, ``rate``, ``tone_hz``; ``finish()`` first)."""
    loop = asyncio.get_running_loop()
    t_end = loop.time() + 15
    while loop.time() < t_end and not all(heard(p) > 10 for p in phones):
        await asyncio.sleep(0.1)  # media flows both ways on every call
    await asyncio.sleep(warm)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    start = loop.time()
    print("START", flush=True)
    await asyncio.sleep(secs)
    end = loop.time()
    print("END", flush=True)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out["window_s"] = end - start
    out["client_cpu_pct"] = 100.0 * ((r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)) \
        / (end - start)
    async with asyncio.timeout(30):
        out["bye_ok"] = sum(1 for ok in await hang_up() if ok)
    per = []
    for p in phones:
        p.finish()
        per.append(judge(p.frames, start, end, p.step, p.tone_hz, p.rate))
    out["phones"] = per
    out["gaps"] = sum(x["gaps"] for x in per)
    out["gap_events"] = sum(x["events"] for x in per)
    out["expected"] = sum(x["expected"] for x in per)
    out["tone_ok"] = sum(1 for x in per if x["tone"] >= 0.5)
    return out


async def sip_phones(n: int, sip_port: int, http_port: int, warm: float,
                     secs: float) -> dict[str, Any]:
    """Plain SIP phones over UDP offering Opus only: the transcoded reference."""
    from softphone.codecs.frame import OpusFrameCodec
    from softphone.codecs.registry import OPUS

    from softphone.media.rtp import RtpError, build_header, parse_rtp
    from softphone.phone import UserAgent
    from softphone.sip.transport import ListenSpec

    del http_port
    loop = asyncio.get_running_loop()

    class Probe(asyncio.DatagramProtocol):
        """Sends the tone in Opus, keeps (arrival, sequence, payload) of what comes back."""

        def __init__(self, hz: float, pt: int, remote: tuple[str, int]) -> None:
            # encoded as it goes, as a phone does (a loop of pre-encoded packets clicks where
            # it wraps: the decoder's state does not match the packet that follows)
            self.codec = OpusFrameCodec(pt, internal_rate=RATE, complexity=5)
            self.pcm = frame_of(hz)
            self.pt, self.remote, self.tone_hz = pt, remote, hz
            self.received: list[tuple[float, int, bytes]] = []
            self.transport: asyncio.DatagramTransport | None = None
            self.seq = self.ts = self.sent = 0
            self.ssrc = 0x5EED0000 + int(hz)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def datagram_received(self, data: bytes, addr: Any) -> None:
            try:
                pkt = parse_rtp(data)
            except RtpError:
                return
            if pkt.payload_type == self.pt:
                self.received.append((loop.time(), pkt.sequence, pkt.payload))

        def send(self) -> None:
            if self.transport is None or self.transport.is_closing():
                return
            header = build_header(self.pt, self.seq, self.ts, self.ssrc, marker=self.sent == 0)
            self.transport.sendto(header + self.codec.encode(self.pcm), self.remote)
            self.seq = (self.seq + 1) & 0xFFFF
            self.ts = (self.ts + 960) & 0xFFFFFFFF
            self.sent += 1

    class Phone:
        """One UA and its probe, ``frames`` decoded after the call for ``judge``."""

        def __init__(self, i: int) -> None:
            ext = SIP_CALLERS + i
            lo = PHONE_PORTS[0] + 500 + 20 * i
            self.ua = UserAgent(listen=[ListenSpec("udp", "127.0.0.1", 0)], user=str(ext),
                                username=str(ext), password=f"bench-{ext}", codecs=(OPUS,),
                                rtp_ports=(lo, lo + 19))
            self.tone_hz = tone_hz(i)
            self.probe: Probe | None = None
            self.transport: asyncio.DatagramTransport | None = None
            self.step, self.rate = 1, RATE
            self.frames: list[tuple[float, int, np.ndarray]] = []

        def finish(self) -> None:
            """Decode what came back, in arrival order, positions by RTP sequence number."""
            if self.probe is None:
                return
            codec = OpusFrameCodec(self.probe.pt, internal_rate=RATE)
            got = sorted(self.probe.received, key=lambda r: r[0])
            base, last = 0, None
            for t, seq, payload in got:  # sequence numbers unwrapped, in arrival order
                if last is not None and seq < last and last - seq > 30000:
                    base += 65536
                last = seq
                pcm = np.frombuffer(codec.decode(payload), dtype="<i2")
                self.frames.append((t, base + seq, pcm))

    phones = [Phone(i) for i in range(n)]
    out: dict[str, Any] = {"kind": "sip", "n": n, "registered": n}
    sender: asyncio.Task[None] | None = None
    try:
        for p in phones:
            await p.ua.start()
        target = "sip:{}@127.0.0.1:" + str(sip_port)
        async with asyncio.timeout(30):
            calls = [await p.ua.call(target.format(CALLEES + i)) for i, p in enumerate(phones)]
            answered = await asyncio.gather(*(c.wait_answered(25) for c in calls))
        out["answered"] = sum(1 for a in answered if a)
        out["statuses"] = [c.status for c in calls]
        for p, c, ok in zip(phones, calls, answered, strict=True):
            neg = c.negotiated
            if not ok or neg is None or c.port_pair is None:
                continue
            probe = Probe(p.tone_hz, neg.codec.payload_type,
                          (neg.remote_address, neg.remote_port))
            p.transport, _ = await loop.create_datagram_endpoint(lambda pr=probe: pr,
                                                                 sock=c.port_pair.rtp_sock)
            p.probe = probe

        async def send_all() -> None:
            t0, k = loop.time(), 0
            while True:  # one 20-ms schedule for every phone, absolute (no drift)
                for p in phones:
                    if p.probe is not None:
                        p.probe.send()
                k += 1
                await asyncio.sleep(max(0.0, t0 + k * FRAME_S - loop.time()))

        sender = asyncio.create_task(send_all())

        async def hang_up() -> list[bool]:
            assert sender is not None
            sender.cancel()
            for c in calls:
                if c.negotiated is not None and not c.ended:
                    await c.hangup_and_wait(10)
            return [c.bye_status == 200 for c in calls]

        return await window(out, phones,
                            lambda p: len(p.probe.received) if p.probe is not None else 0,
                            hang_up, warm, secs)
    finally:
        if sender is not None:
            sender.cancel()
        for p in phones:
            if p.transport is not None:
                p.transport.close()
            try:
                async with asyncio.timeout(5):
                    await p.ua.close()
            except Exception as exc:
                print(f"close {p.ua.user}: {exc!r}", file=sys.stderr)


def clients_main(argv: list[str]) -> None:
    usage = ("usage: webrtc.py clients browser|sip N SIP_PORT HTTP_PORT WARM SECS OUT_JSON "
             f"(N from 1 to {MAX_N})")
    try:
        kind, n, sip_port, http_port, warm, secs, out_path = argv
        if kind not in ("browser", "sip") or not 1 <= int(n) <= MAX_N:
            raise ValueError(kind)
        float(warm), float(secs), int(sip_port), int(http_port)
    except ValueError:
        sys.exit(f"{usage}; got: {' '.join(argv)}")
    run = browsers if kind == "browser" else sip_phones
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(60 + float(warm) + float(secs)):
            return await run(int(n), int(sip_port), int(http_port), float(warm), float(secs))

    res = asyncio.run(bounded())
    Path(out_path).write_text(json.dumps(res))
    print("DONE", flush=True)


# ---------------------------------------------------------------------------- the bench

def bench_configs() -> tuple[Path, Path, Path]:
    """Edge config (the shipped one, bench users instead of the demo ones: 20 browsers, 20 SIP
    callers, 20 callees, one channel each as the terms give), the bench policy (the shipped one
    with the automated-dialing heuristics off, as bench/edge.py), and sipp's callee list."""
    text = (ROOT / "configs" / "edge.toml").read_text()
    first_user = re.search(r"(?m)^\[\[users\]\]", text)
    if first_user is None:
        raise RuntimeError("configs/edge.toml has no [[users]] table: update bench/webrtc.py")
    text = text[:first_user.start()]
    for key in ("flood_rate_per_s", "flood_burst"):  # all from 127.0.0.1
        text = re.sub(rf"(?m)^{key} = \d+", f"{key} = 1000000", text)
    users = [f'[[users]]\next = "{ext}"\nname = "Bench {ext}"\npassword = "bench-{ext}"\n'
             for base in (BROWSERS, SIP_CALLERS, CALLEES) for ext in range(base, base + MAX_N)]
    cfg = WORK / "edge.toml"
    cfg.write_text(text + "\n".join(users))
    pol = bench_edge.bench_policy()  # in our WORK (bench_edge.WORK is ours)
    callees = WORK / "callees.csv"
    callees.write_text("SEQUENTIAL\n" + "".join(
        f"{ext};[authentication username={ext} password=bench-{ext}];\n"
        for ext in range(CALLEES, CALLEES + MAX_N)))
    return cfg, pol, callees


def wait_idle(data: Path, timeout: float = 20.0) -> bool:
    """The edge's status.json (written every second) says no call, media or port is held."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            st = json.loads((data / "status.json").read_text())
        except (OSError, ValueError):
            st = {}
        if st and st.get("live_calls") == 0 and st.get("ports_in_use") == 0 \
                and st.get("media_objects") == 0:
            return True
        time.sleep(0.25)
    return False


def line_reader(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The driver's stdout lines, read by a thread (a buffered reader under a selector could
    hold a line the selector no longer sees)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put("")  # EOF

    threading.Thread(target=pump, daemon=True).start()
    return lines


def read_line(lines: queue.Queue[str], want: str, timeout: float) -> None:
    """Wait (bounded) for the line ``want`` from the driver."""
    end = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, end - time.monotonic()))
        except queue.Empty:
            break
        if line == want:
            return
        if line == "":
            raise RuntimeError(f"the phones' process ended before {want} (its stderr below)")
    raise RuntimeError(f"the phones did not say {want} within {timeout:.0f} s")


def run_row(kind: str, n: int, edge: subprocess.Popen[Any], sip_port: int, http_port: int,
            data: Path, warm: float, secs: float) -> dict[str, Any]:
    out = WORK / f"{kind}-{n}.json"
    err = (WORK / f"{kind}-{n}.err").open("w")
    proc = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, __file__, "clients", kind, str(n), str(sip_port),
         str(http_port), str(warm), str(secs), str(out)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
    bench_edge._procs.append(proc)
    lines = line_reader(proc)
    row: dict[str, Any] = {"kind": kind, "n": n}
    try:
        read_line(lines, "START", 60 + warm)
        w0 = bench_edge.runq_wait_s(edge.pid)
        c0, t0 = bench_edge.cpu_ticks(edge.pid), time.perf_counter()
        read_line(lines, "END", secs + 10)
        c1, t1 = bench_edge.cpu_ticks(edge.pid), time.perf_counter()
        w1 = bench_edge.runq_wait_s(edge.pid)
        read_line(lines, "DONE", 60)
        proc.wait(10)
        row.update(json.loads(out.read_text()))
        row["edge_cpu_pct"] = 100.0 * (c1 - c0) / bench_edge.TCK / (t1 - t0)
        row["edge_runq_pct"] = 100.0 * (w1 - w0) / (t1 - t0)
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        row["error"] = str(exc)
    finally:
        bench_edge.stop(proc)
        err.close()
    row["idle"] = wait_idle(data)
    row.update(edge_legs(data, kind, n))
    why = []
    if "error" in row or row.get("answered") != n or row.get("bye_ok") != n:
        why.append("calls")
    if row.get("gaps", 1) or row.get("tone_ok") != n:
        why.append("gaps")
    if row.get("edge_cpu_pct", 0.0) > CPU_LIMIT:
        why.append("edge-cpu")
    if row.get("client_cpu_pct", 0.0) > CPU_LIMIT:
        why.append("load-cpu")  # the phones themselves fell behind: the row says little
    if not row["idle"]:
        why.append("not-idle")  # calls or ports still held 20 s after the row: the next is off
    row["ok"] = not why
    row["why"] = ",".join(why) or "ok"
    if "error" in row:
        row["stderr"] = (WORK / f"{kind}-{n}.err").read_text(errors="replace")[-2000:]
    return row


def edge_legs(data: Path, kind: str, n: int) -> dict[str, Any]:
    """What the edge's call log says of the row's ``n`` calls (the last ``n`` lines): on the
    caller's leg, frames the bridge sent minus frames it got (ticks on which the caller's audio
    was not there, over the whole call); on the callee's (PCMA) leg, RTP lost."""
    try:
        lines = (data / "calls.jsonl").read_text().splitlines()[-n:]
        calls = [json.loads(ln) for ln in lines]
    except (OSError, ValueError):
        return {}
    callers = range(BROWSERS if kind == "browser" else SIP_CALLERS, MAX_N + (
        BROWSERS if kind == "browser" else SIP_CALLERS))
    deficit = lost = 0
    for call in calls:
        if int(call.get("caller") or 0) not in callers:
            return {}
        for leg in call.get("legs", []):
            if leg.get("role") == "caller":
                deficit += max(0, int(leg["packets_out"]) - int(leg["packets_in"]))
            else:
                lost += int(leg.get("lost") or 0)
    return {"edge_caller_deficit": deficit, "edge_callee_lost": lost}


def idle_cpu(edge: subprocess.Popen[Any], secs: float = 3.0) -> float:
    c0, t0 = bench_edge.cpu_ticks(edge.pid), time.perf_counter()
    time.sleep(secs)
    return 100.0 * (bench_edge.cpu_ticks(edge.pid) - c0) / bench_edge.TCK \
        / (time.perf_counter() - t0)


def fmt_row(n: int, b: dict[str, Any] | None, s: dict[str, Any] | None) -> str:
    def part(r: dict[str, Any] | None) -> tuple[str, str, str, str]:
        if r is None:
            return "-", "-", "-", "-"
        if "error" in r:
            return "error", "-", "-", "-"
        per = r["edge_cpu_pct"] / n
        calls = f"{r['answered']}/{n}"
        gaps = f"{r['gaps']}/{r['gap_events']}"
        return f"{per:.2f}", gaps, calls, f"{r['client_cpu_pct']:.0f}"
    bp, bg, bc, bcl = part(b)
    sp, sg, sc, scl = part(s)
    ratio = "-"
    if b is not None and s is not None and "error" not in b and "error" not in s \
            and s["edge_cpu_pct"] > 0:
        ratio = f"{b['edge_cpu_pct'] / s['edge_cpu_pct']:.2f}"
    runq = "/".join(f"{r['edge_runq_pct']:.0f}" for r in (b, s)
                    if r is not None and "edge_runq_pct" in r) or "-"
    verdict = " / ".join("-" if r is None else r["why"] for r in (b, s))
    return (f"{n:>3} {bp:>13} {bg:>9} {bc:>6} {bcl:>6} {sp:>14} {sg:>9} {sc:>6} {scl:>6} "
            f"{ratio:>6} {runq:>7}  {verdict}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "clients":
        clients_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N = 1, 5 (under 2 minutes)")
    ap.add_argument("--ns", help="N values, comma separated (default 1,2,5,10,20)")
    ap.add_argument("--secs", type=float, help="steady window per row (default 10, quick 5)")
    ap.add_argument("--only", choices=("browser", "sip"), help="one side of the table only")
    ap.add_argument("--warm", type=float, default=2.0, help="seconds after the last answer")
    args = ap.parse_args()
    ns = [1, 5] if args.quick else [1, 2, 5, 10, 20]
    if args.ns:
        try:
            ns = [int(x) for x in args.ns.split(",")]
        except ValueError:
            ap.error(f"--ns: comma-separated numbers, got {args.ns!r}")
    if not ns or min(ns) < 1 or max(ns) > MAX_N:
        ap.error(f"--ns: each N from 1 to {MAX_N}")
    secs = args.secs or (5.0 if args.quick else 10.0)
    WORK.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    cfg, pol, callees = bench_configs()
    sip_port, http_port, uas_port, reg_port = bench_edge.free_ports(4)
    media_port = bench_edge.free_block(4)
    data = WORK / "edge-data"
    t_start = time.monotonic()
    print(f"# bench/webrtc.py{' --quick' if args.quick else ''} on {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load average before the run "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows: list[tuple[int, dict[str, Any] | None, dict[str, Any] | None]] = []
    edge_log = WORK / "edge.log"
    try:
        with edge_log.open("w") as log:
            edge = bench_edge.start(
                ["taskset", "-c", "0", sys.executable, "-m", "softphone", "edge", "--config",
                 str(cfg), "--policy", str(pol), "--sip-port", str(sip_port), "--tls-port", "0",
                 "--rtp-ports", f"{EDGE_RTP[0]}-{EDGE_RTP[1]}", "--http-port", str(http_port),
                 "--drain-timeout", "0", "--data-dir", str(data)], out=log)
        bench_edge.wait_for(edge_log, "softphone edge listening", edge, 30)
        uas = bench_edge.start(["taskset", "-c", "1", "sipp", "-sf",
                                str(bench_edge.LAB_SCENARIOS / "edge_uas_answer.xml"),
                                "-i", "127.0.0.1", "-p", str(uas_port), "-mi", "127.0.0.1",
                                "-mp", str(media_port), "-rtp_echo",
                                *bench_edge.sipp_files("callee_uas")])
        bench_edge.wait_udp(uas_port)
        reg = subprocess.run(["taskset", "-c", "1", "sipp", f"127.0.0.1:{sip_port}", "-sf",
                              str(bench_edge.SCENARIOS / "edge_register_many.xml"), "-inf",
                              str(callees), "-i", "127.0.0.1", "-p", str(reg_port), "-set",
                              "cport", str(uas_port), "-m", str(MAX_N), "-timeout", "30s",
                              "-timeout_error", *bench_edge.sipp_files("callee_reg")],
                             timeout=60, capture_output=True, text=True, cwd=WORK)
        st = bench_edge.sipp_stats(WORK / "callee_reg.csv")
        if reg.returncode != 0 or bench_edge.stat(st, "SuccessfulCall(C)") != MAX_N:
            raise RuntimeError(f"callee registration failed: rc={reg.returncode} {st}")
        idle = idle_cpu(edge)
        print(f"edge idle CPU {idle:.2f} % (3 s, no call); {secs:.0f} s steady window per row, "
              f"after all calls answered + {args.warm:.0f} s", flush=True)
        for n in ns:
            got: dict[str, dict[str, Any] | None] = {"browser": None, "sip": None}
            for kind in ("browser", "sip"):
                if args.only in (None, kind):
                    r = run_row(kind, n, edge, sip_port, http_port, data, args.warm, secs)
                    print(json.dumps({k: v for k, v in r.items() if k != "phones"}),
                          file=sys.stderr, flush=True)
                    got[kind] = r
            rows.append((n, got["browser"], got["sip"]))
            # the browser side decides, when it runs: failed calls or a saturated edge end the
            # climb; gaps do not (on a shared host a stall of another tenant makes a few at
            # any N, and the CPU per leg at the next N is still worth having)
            lead = got["browser"] or got["sip"]
            if lead is not None and {"calls", "edge-cpu", "not-idle"} & set(lead["why"].split(",")):
                break
        bench_edge.stop(uas, signal.SIGUSR1)
    finally:
        bench_edge.stop_all()
    print_table(rows, secs, idle)
    for n, *pair in rows:
        for r in pair:
            if r is not None and "error" in r:
                tail = str(r.get("stderr", "")).strip().splitlines()[-1:]
                print(f"{r['kind']} N={n}: {r['error']}{': ' + tail[0] if tail else ''}")
    print(f"load average after the run {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\n(total {time.monotonic() - t_start:.0f} s; raw rows as JSON on stderr, files in "
          f"{WORK})")


def print_table(rows: list[tuple[int, dict[str, Any] | None, dict[str, Any] | None]],
                secs: float, idle: float) -> None:
    print(f"\nN browser legs (aiortc, Opus) -> edge (CPU 0) -> PCMA echo callees, beside N "
          f"SIP Opus -> PCMA transcoded calls; phones and sipp on CPU 1; {secs:.0f} s window")
    print(f"{'N':>3} {'browser %/leg':>13} {'gaps f/ev':>9} {'calls':>6} {'cli %':>6} "
          f"{'SIP-SIP %/call':>14} {'gaps f/ev':>9} {'calls':>6} {'cli %':>6} {'ratio':>6} "
          f"{'runq %':>7}  verdict")
    for n, b, s in rows:
        print(fmt_row(n, b, s))
    for k, label in ((1, "browser legs"), (2, "SIP-SIP transcoded calls")):
        ran = [(n, r[k]) for r in rows for n in (r[0],) if r[k] is not None]
        if not ran:
            continue
        clean = [n for n, r in ran if no_gaps(r)]
        dirty = [str(n) for n, r in ran if not no_gaps(r)]
        # '+': every row was clean, so the real limit is above the largest N tried
        print(f"largest N with no audio gaps, {label}: {max(clean, default=0)}"
              f"{'+' if not dirty else ''}"
              f"{'; gaps at N = ' + ', '.join(dirty) if dirty else ' (no row had a gap)'}")
    print(f"(edge idle {idle:.2f} %; %/leg = edge CPU (% of one core) / N; gaps f/ev = 20-ms "
          "frames missing or silent / runs of them, all phones; cli % = the phones' process on "
          "CPU 1; ratio = browser CPU / SIP-SIP CPU at the same N; runq % = share of the window "
          "the edge waited for its CPU, browser/SIP)")


def no_gaps(r: dict[str, Any] | None) -> bool:
    return r is not None and not {"calls", "gaps"} & set(str(r["why"]).split(","))


if __name__ == "__main__":
    main()
