"""The announcements the edge plays itself (``softphone.edge.room.Prompts``): notices spoken
by espeak-ng from the policy's texts, once, into ``<data dir>/prompts/`` (16 kHz WAV) and loaded
at start; without speech, the ITU-T E.180 special information tone for the emergency notice and
the recorder warning beeps for the others."""

from __future__ import annotations

import array
import logging
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from softphone.media.bridge import FrameSource
from softphone.media.echo import PcmSource
from softphone.media.tone import ToneError, ToneGenerator, read_wav, write_wav

log = logging.getLogger(__name__)

SIT_HZ = (950.0, 1400.0, 1800.0)   # ITU-T E.180 special information tone, 330 ms each
PLAYED_PROMPTS = ("emergency-unavailable", "recording-notice", "ai-disclosure")
BEEP_HZ = 1400.0                   # the recorder warning tone's pitch (two short beeps)
PROMPT_RATE = 16000                # prompts are kept at a rate the native resampler takes


class EdgePrompts:
    """The announcements the edge plays itself (``softphone.edge.room.Prompts``)."""

    def __init__(self, folder: Path, texts: Mapping[str, str]) -> None:
        self.folder = folder
        self.texts = texts
        self.spoken: dict[str, bytes] = {}   # PCM at PROMPT_RATE

    def prepare(self, ids: tuple[str, ...] = PLAYED_PROMPTS) -> None:
        """Speak each prompt into ``<id>.wav`` (16 kHz) unless it is there; load it."""
        espeak = shutil.which("espeak-ng")
        for aid in ids:
            path = self.folder / f"{aid}.wav"
            text = self.texts.get(aid, "")
            if not path.exists() and espeak is not None and text:
                self.folder.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.wav")
                try:
                    subprocess.run([espeak, "-v", "en", "-s", "150", "-w", str(tmp), text],
                                   check=True, capture_output=True, timeout=30)
                    pcm, rate = read_wav(tmp)
                    write_wav(path, linear_resample(pcm, rate, PROMPT_RATE), PROMPT_RATE)
                except (OSError, subprocess.SubprocessError, ToneError) as exc:
                    log.warning("prompt %s not spoken (espeak-ng failed: %s)", aid, exc)
                finally:
                    tmp.unlink(missing_ok=True)
            try:
                pcm, rate = read_wav(path)
                self.spoken[aid] = linear_resample(pcm, rate, PROMPT_RATE)
            except (OSError, ToneError) as exc:
                log.warning("prompt %s: no speech (%s); the special information tone plays "
                            "instead", aid, exc if path.exists() else
                            "espeak-ng failed" if espeak else "espeak-ng not installed")

    def __call__(self, aid: str, rate: int) -> tuple[FrameSource, float] | None:
        pcm = self.spoken.get(aid)
        if pcm is not None:
            try:
                if rate != PROMPT_RATE:
                    from softphone.native.resampler import Resampler

                    pcm = Resampler(PROMPT_RATE, rate).process(pcm)
                return PcmSource(pcm), len(pcm) / 2 / rate
            except Exception as exc:  # a notice that cannot play must not cost the refusal
                log.warning("prompt %s not playable at %d Hz (%s): tone instead", aid, rate, exc)
        if aid not in PLAYED_PROMPTS:
            return None
        return sit_tone(rate) if aid == "emergency-unavailable" else beeps(rate)


def linear_resample(pcm: bytes, rate: int, to: int) -> bytes:
    """16-bit mono PCM from ``rate`` to ``to`` by linear interpolation: once per prompt at
    start, for espeak-ng's 22050 Hz, which the native resampler does not take. A spoken
    notice has little above 5 kHz, so the missing anti-alias filter is not heard."""
    if rate == to or not pcm:
        return pcm
    src = array.array("h", pcm)
    n = len(src) * to // rate
    out = array.array("h", bytes(2 * n))
    step = rate / to
    last = len(src) - 1
    for i in range(n):
        x = i * step
        j = int(x)
        k = min(j + 1, last)
        out[i] = int(src[j] + (src[k] - src[j]) * (x - j))
    return out.tobytes()


def sit_tone(rate: int, repeats: int = 2) -> tuple[FrameSource, float]:
    """The E.180 special information tone (950, 1400, 1800 Hz, 330 ms each, then 1 s of
    silence), ``repeats`` times: what networks play for a call that cannot be completed."""
    seg = rate * 330 // 1000
    pcm = b"".join(ToneGenerator(f, rate, 8000).frame(seg) for f in SIT_HZ) + bytes(2 * rate)
    return PcmSource(pcm * repeats), repeats * len(pcm) / 2 / rate


def beeps(rate: int) -> tuple[FrameSource, float]:
    """Two 0.5-s beeps at 1400 Hz, 0.5 s apart: the recorder warning tone, played instead of
    a spoken notice when espeak-ng is missing."""
    half = rate // 2
    beep = ToneGenerator(BEEP_HZ, rate, 8000).frame(half)
    pcm = (beep + bytes(2 * half)) * 2
    return PcmSource(pcm), len(pcm) / 2 / rate
