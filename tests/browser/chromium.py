"""Debian's chromium, headless, driven by Playwright (never ``playwright install``): a fresh
profile in the test's tmp dir, a fake microphone that plays a WAV tone the test writes, fake
permission prompts (granted), autoplay allowed, loopback peer connections allowed.

``browser(tmp_path)`` is a context manager giving a ``Browser``: ``page()`` opens a tab that
keeps every console error and page exception; the browser is closed in a ``finally``. Every
wait of Playwright is bounded (``TIMEOUT_MS``). Skips, saying why, without /usr/bin/chromium,
Playwright or the JsSIP bundle (``make webphone``).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import struct
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from softphone.edge.webphone import bundle_path

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 10_000
TONE_HZ = 1000.0


def skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return "no /usr/bin/chromium (apt-get install chromium)"
    if not bundle_path().exists():
        return f"the web phone's JsSIP bundle is not built ({bundle_path()}): make webphone"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (the test extra: pip install -e '.[test]')"
    return None


def write_tone(path: Path, hz: float = TONE_HZ, seconds: float = 10.0, rate: int = 48000,
               amplitude: float = 0.3) -> Path:
    """A mono 16-bit WAV of a sine at ``hz``: chromium loops it as the microphone."""
    n = int(seconds * rate)
    frames = b"".join(struct.pack("<h", int(amplitude * 32767 * math.sin(2 * math.pi * hz * i
                                                                         / rate)))
                      for i in range(n))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


class Browser:
    def __init__(self, context: Any) -> None:
        self.context = context
        self.errors: list[str] = []

    def page(self, url: str) -> Any:
        page = self.context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda m: self.errors.append(f"console: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"exception: {e}"))
        page.goto(url, wait_until="load")
        page.wait_for_function("window.phone !== undefined")
        return page


@contextmanager
def browser(tmp_path: Path, *, tone_hz: float = TONE_HZ) -> Iterator[Browser]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    tone = write_tone(tmp_path / f"mic-{int(tone_hz)}hz.wav", tone_hz)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-quic",
            "--disable-default-apps", "--disable-extensions", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={tone}",
            "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required"]
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=args,
            timeout=30_000, viewport={"width": 420, "height": 900})
        try:
            context.set_default_timeout(TIMEOUT_MS)
            yield Browser(context)
        finally:
            try:
                context.close()  # stops the browser Playwright started
            finally:
                _kill_leftovers(profile)


def _kill_leftovers(profile: Path) -> None:
    """Any process still running on this test's own profile folder (a renderer or a
    utility process the browser left behind), by PID."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(profile).encode() in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
