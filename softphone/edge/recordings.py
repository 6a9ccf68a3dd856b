"""Call recordings on disk: one WAV file per recording, written from the media tick.

The policy guard decides (``RecordingCommand``: start after the notice, stop at the end,
stop-and-delete on an objection, delete when retention or the export window is over); this
module only carries those commands out under ``<data dir>/recordings/``:

- a recording is the call's full mix (what both parties said, prompts excluded) as 16-bit mono
  PCM at the bridge rate, in ``<name>.wav`` where ``<name>`` is derived from the recording id
  (a SIP Call-ID may hold characters a file name must not);
- files are created 0640 in a 0750 folder (R-REC-5: recordings are confidential);
- ``delete`` removes the file and stops a recording still being written; deleting a recording
  that has no file is not an error (the purge job is idempotent across restarts);
- a delete is durable before anyone is told: the file is unlinked, then the folder is fsync'd
  (the unlink is a change of the folder), and only then does the caller write the ledger. A
  delete that fails (``remove`` raises ``OSError``; ``delete`` keeps the id in ``failed`` and
  calls ``on_failure``) is retried by the purge job (``edge.retention``), audited each time.

The standard library's ``wave`` writes the files: each 20-ms frame goes to a buffered file, so
the cost per tick is a memory copy; the header is completed when the recording stops.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import wave
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class Recording:
    """One recording being written: ``write`` is the bridge's recorder callback."""

    def __init__(self, recording_id: str, path: Path, rate: int) -> None:
        self.recording_id = recording_id
        self.path = path
        self.rate = rate
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        self._file = os.fdopen(fd, "wb")
        self._wav: wave.Wave_write | None = wave.open(self._file, "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)
        self.frames = 0

    @property
    def open(self) -> bool:
        return self._wav is not None

    def write(self, pcm: bytes) -> None:
        if self._wav is not None:
            self._wav.writeframesraw(pcm)
            self.frames += len(pcm) // 2

    def close(self) -> None:
        if self._wav is None:
            return
        wav, self._wav = self._wav, None
        try:
            wav.close()  # patches the header's sizes
        finally:
            self._file.close()

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


class RecordingStore:
    """The recordings folder and the recordings being written."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.active: dict[str, Recording] = {}
        self.failed: dict[str, str] = {}  # recording id -> why its delete failed
        self.on_failure: Callable[[str, str], None] | None = None

    def path(self, recording_id: str) -> Path:
        """Where a recording lives: readable id, plus a hash so two ids never share a file."""
        digest = hashlib.sha256(recording_id.encode()).hexdigest()[:12]
        return self.folder / f"{_SAFE.sub('_', recording_id)[:80]}-{digest}.wav"

    def start(self, recording_id: str, rate: int) -> Recording:
        """Open a new file for ``recording_id`` (a second start returns the one running)."""
        rec = self.active.get(recording_id)
        if rec is not None:
            return rec
        self.folder.mkdir(mode=0o750, parents=True, exist_ok=True)
        rec = Recording(recording_id, self.path(recording_id), rate)
        self.active[recording_id] = rec
        log.info("recording %s started: %s", recording_id, rec.path)
        return rec

    def stop(self, recording_id: str) -> Path | None:
        """Finish the file (kept for the retention period); None when nothing was running."""
        rec = self.active.pop(recording_id, None)
        if rec is None:
            return None
        rec.close()
        log.info("recording %s stopped after %.1f s", recording_id, rec.seconds)
        return rec.path

    def remove(self, recording_id: str) -> bool:
        """Stop writing, unlink the file, fsync the folder; whether a file was removed.
        Raises ``OSError`` when the file is there and cannot be removed."""
        rec = self.active.pop(recording_id, None)
        if rec is not None:
            rec.close()
        path = self.path(recording_id)
        try:
            path.unlink()
        except FileNotFoundError:
            self.failed.pop(recording_id, None)
            return False
        self.sync_folder()
        self.failed.pop(recording_id, None)
        log.info("recording %s deleted", recording_id)
        return True

    def delete(self, recording_id: str) -> bool:
        """``remove``, for the call path (an objection): a failure is logged, kept in
        ``failed`` for the purge job to retry, and reported to ``on_failure``."""
        try:
            return self.remove(recording_id)
        except OSError as exc:
            self.failed[recording_id] = str(exc)
            log.error("recording %s: delete failed, retried by the purge job: %s",
                      recording_id, exc)
            if self.on_failure is not None:
                self.on_failure(recording_id, str(exc))
            return False

    def sync_folder(self) -> None:
        """fsync the folder: an unlink (or a new file) survives a power cut only then."""
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def files(self) -> list[Path]:
        """Every recording file in the folder (none if there is no folder yet)."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.suffix == ".wav")

    def close(self) -> None:
        """Finish every file still being written (the edge is stopping)."""
        for rid in list(self.active):
            self.stop(rid)
