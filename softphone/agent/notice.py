"""The recording notice (R-REC-2) the agent plays before it records a call.

When ``--audio file:in.wav,out.wav`` records what the other party says, the other party is
told first, with the right to object: the policy's ``recording-notice`` text (with the
objection key of ``[recording] objection_digit``) spoken by espeak-ng, or, without espeak-ng,
the recorder warning tone (two 0.5 s beeps at 1400 Hz). Recording starts once the notice has
been sent; the objection key received at any time stops it and deletes what was kept.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from softphone.media.prompts import linear_resample
from softphone.media.tone import ToneError, ToneGenerator, read_wav
from softphone.policy.config import PolicyConfig

log = logging.getLogger(__name__)

NOTICE_RATE = 16000
BEEP_HZ = 1400.0


def beeps(rate: int = NOTICE_RATE) -> bytes:
    half = rate // 2
    beep = ToneGenerator(BEEP_HZ, rate, 8000).frame(half)
    return (beep + bytes(2 * half)) * 2


def notice_text(policy: PolicyConfig) -> str:
    return policy.announcements.get("recording-notice", "").replace(
        "{digit}", policy.recording.objection_digit)


def speak(text: str) -> tuple[bytes, str]:
    """(16 kHz PCM of the notice, how it was made: "espeak-ng" or "beeps")."""
    espeak = shutil.which("espeak-ng")
    if espeak is not None and text:
        with tempfile.TemporaryDirectory(prefix="softphone-notice-") as tmp:
            path = Path(tmp) / "notice.wav"
            try:
                subprocess.run([espeak, "-v", "en", "-s", "160", "-w", str(path), text],
                               check=True, capture_output=True, timeout=30)
                pcm, rate = read_wav(path)
                return linear_resample(pcm, rate, NOTICE_RATE), "espeak-ng"
            except (OSError, subprocess.SubprocessError, ToneError) as exc:
                log.warning("recording notice not spoken (espeak-ng: %s): beeps instead", exc)
    return beeps(), "beeps"
