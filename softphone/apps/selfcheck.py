"""``softphone selfcheck``: can this machine run what the edge will use, and if not, how to get it.

Checks, each on the real thing (no version sniffing): the native hot path (a G.711 round trip
through the cffi extension), every codec of the edge configuration's order (a 20 ms frame
through a fresh encoder and decoder, as a call would: the edge leaves out what fails), and the
prompt engine (espeak-ng speaking one word into a WAV; without it the notices are tones). Exit
status 0 when the edge can run everything it is configured for, 1 when a configured codec or
the native code cannot run; a missing prompt engine is reported but not fatal.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from softphone import __version__

HOW = {
    "opus": "pip install av (PyAV's wheels bundle libopus), or apt-get install libopus0",
    "native": "reinstall the package with a C compiler and the Python headers "
              "(apt-get install gcc python3-dev; pip install -e .)",
    "espeak-ng": "apt-get install espeak-ng (the notices are played as tones without it)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="the edge configuration whose codecs to check "
                                    "(default: the embedded one)")


def _native() -> tuple[bool, str]:
    try:
        from softphone.native import abi
        from softphone.native.g711 import alaw_decode, alaw_encode

        pcm = bytes(range(256)) * 2
        back = alaw_decode(alaw_encode(pcm))
        if len(back) != len(pcm):
            return False, "G.711 round trip lost samples"
        return True, f"ABI {abi()}, G.711 round trip"
    except Exception as exc:
        return False, str(exc)


def _espeak() -> tuple[bool, str]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return False, "not installed"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "check.wav"
        try:
            subprocess.run([exe, "-w", str(out), "check"], check=True, timeout=20,
                           capture_output=True)
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"{exe} failed: {exc}"
        if out.stat().st_size < 1000:
            return False, f"{exe} wrote no audio"
    return True, exe


def main(args: argparse.Namespace) -> int:
    from softphone.codecs import opus
    from softphone.codecs.frame import runnable
    from softphone.codecs.registry import codec_order_from_names
    from softphone.configfile import ConfigError
    from softphone.edge.config import load_edge_config

    try:
        cfg = load_edge_config(args.config)
    except (OSError, ConfigError) as exc:
        print(f"selfcheck: {exc}")
        return 2
    rows: list[tuple[str, bool, str, bool]] = []  # (what, ok, detail, required)
    ok, detail = _native()
    rows.append(("native hot path", ok, detail if ok else f"{detail}; {HOW['native']}", True))
    for codec in codec_order_from_names(cfg.codecs):
        why = runnable(codec)
        detail = "encode/decode of a 20 ms frame"
        if codec.name.lower() == "opus" and not why:
            detail = f"{opus.libopus_version()} from {opus.libopus_path()}"
        elif why and codec.name.lower() in HOW:
            why = f"{why}; {HOW[codec.name.lower()]}"
        rows.append((f"codec {codec.name}", not why, why or detail, True))
    ok, detail = _espeak()
    rows.append(("prompts (espeak-ng)", ok, detail if ok else f"{detail}; {HOW['espeak-ng']}",
                 False))
    print(f"softphone {__version__} selfcheck ({cfg.source})")
    width = max(len(r[0]) for r in rows)
    for what, ok, detail, required in rows:
        state = "ok" if ok else ("MISSING" if required else "degraded")
        print(f"  {what:<{width}}  {state:<8}  {detail}")
    failed = [r[0] for r in rows if r[3] and not r[1]]
    if failed:
        print(f"the edge cannot run: {', '.join(failed)}")
        return 1
    return 0
