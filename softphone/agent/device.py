"""Sound devices through PortAudio (sounddevice): ``--audio device:NAME`` and ``--list-devices``.

The device is opened for a call only (input and output on the same device, mono 16-bit at
48 kHz, resampled to and from the codec's rate) in PortAudio's blocking mode, from a thread of
its own that moves one 20 ms block each way per tick: what the microphone gave goes into the
call, what the call received goes to the speaker (silence when nothing came). Not every device
paces itself (ALSA's ``null`` and ``file`` plugins return at once), so the thread keeps its own
absolute 20 ms schedule: it never spins, and a device that blocks simply makes the sleep zero.
The queues between the thread and the call hold at most 10 blocks (200 ms) each way; older
blocks are dropped, so a slow side cannot build up delay.

The input and the output may be two devices (``output``; the desktop app chooses them
apart). ``in_level`` and ``out_level`` are the RMS (0..1 of full scale) of the last block the
thread moved each way, computed in that thread, so that a meter only reads a number.

Without PortAudio or without any device the agent says so at start and runs with null audio
(``state`` says why); a NAME that matches no device, or more than one, is an error naming the
devices there are.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from softphone.media.tone import rms
from softphone.native.resampler import Resampler

log = logging.getLogger(__name__)

DEVICE_RATE = 48000
BLOCK_MS = 20
QUEUE_BLOCKS = 10


class DeviceError(Exception):
    """No usable PortAudio or device: the message says which and why."""


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    host_api: str
    inputs: int
    outputs: int
    default_rate: float


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # the module is there, the PortAudio library is not
        raise DeviceError(f"PortAudio is not available ({exc}); on Debian: apt-get install "
                          "libportaudio2") from None
    except ImportError as exc:
        raise DeviceError(f"the sounddevice module is not installed ({exc})") from None
    return sounddevice


def list_devices() -> list[DeviceInfo]:
    """Every device PortAudio sees; raises :class:`DeviceError` without PortAudio."""
    sd = _sounddevice()
    try:
        apis = sd.query_hostapis()
        devices = sd.query_devices()
    except sd.PortAudioError as exc:
        raise DeviceError(f"PortAudio cannot list devices: {exc}") from None
    out = []
    for i, d in enumerate(devices):
        out.append(DeviceInfo(i, str(d["name"]), str(apis[d["hostapi"]]["name"]),
                              int(d["max_input_channels"]), int(d["max_output_channels"]),
                              float(d["default_samplerate"])))
    return out


def find_device(name: str) -> DeviceInfo:
    """The one device with input and output called ``name`` (exactly, else the only one whose
    name contains it, case-insensitively). :class:`DeviceError` when there is no device at
    all; ``LookupError`` naming the devices when the name matches none or several."""
    devices = [d for d in list_devices() if d.inputs > 0 and d.outputs > 0]
    if not devices:
        raise DeviceError("no sound card: PortAudio found no device with input and output")
    exact = [d for d in devices if d.name == name]
    if len(exact) == 1:
        return exact[0]
    near = [d for d in devices if name.lower() in d.name.lower()]
    if len(near) == 1:
        return near[0]
    names = ", ".join(repr(d.name) for d in devices)
    if not near:
        raise LookupError(f"no device {name!r} with input and output; there are: {names}")
    raise LookupError(f"{name!r} matches {len(near)} devices: "
                      f"{', '.join(repr(d.name) for d in near)}")


class DeviceAudio:
    """One call's device stream (see the module docstring); ``rate`` is the codec's."""

    def __init__(self, device: DeviceInfo, rate: int, output: DeviceInfo | None = None) -> None:
        self.device = device
        self.output = device if output is None else output
        self.rate = rate
        self.block = DEVICE_RATE * BLOCK_MS // 1000
        self._up = None if rate == DEVICE_RATE else Resampler(DEVICE_RATE, rate)
        self._down = None if rate == DEVICE_RATE else Resampler(rate, DEVICE_RATE)
        self._captured: deque[bytes] = deque(maxlen=QUEUE_BLOCKS)
        self._playback: deque[bytes] = deque(maxlen=QUEUE_BLOCKS)
        self._pending = b""  # captured audio at the codec's rate not yet taken
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error = ""
        self.blocks = 0
        self.in_level = 0.0
        self.out_level = 0.0

    def start(self) -> None:
        sd = _sounddevice()
        try:
            stream = sd.RawStream(device=(self.device.index, self.output.index),
                                  samplerate=DEVICE_RATE, blocksize=self.block, channels=1,
                                  dtype="int16")
            stream.start()
        except sd.PortAudioError as exc:
            names = repr(self.device.name) if self.output is self.device else \
                f"{self.device.name!r} / {self.output.name!r}"
            raise DeviceError(f"cannot open {names}: {exc}") from None
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True,
                                        name=f"device {self.device.name}")
        self._thread.start()

    def _run(self, stream: Any) -> None:
        silence = bytes(2 * self.block)
        period = BLOCK_MS / 1000
        start = time.monotonic()
        n = 0
        try:
            while not self._stop.is_set():
                out = self._playback.popleft() if self._playback else silence
                stream.write(out)
                data, _overflow = stream.read(self.block)
                self._captured.append(bytes(data))
                self.out_level = rms(out) / 32768.0
                self.in_level = rms(data) / 32768.0
                self.blocks += 1
                n += 1
                late = time.monotonic() - (start + n * period)
                if late > 5 * period:  # a device slower than the clock: follow it
                    start, n = time.monotonic(), 0
                elif late < 0:
                    self._stop.wait(-late)
        except Exception as exc:  # the device went away: the call goes on in silence
            self.error = str(exc)
            log.error("sound device %s: %s", self.device.name, exc)
        finally:
            with contextlib.suppress(Exception):
                stream.stop()
            with contextlib.suppress(Exception):
                stream.close()
            self.in_level = self.out_level = 0.0

    def take(self, nbytes: int) -> bytes:
        """``nbytes`` of captured audio at the codec's rate (silence when none came)."""
        while len(self._pending) < nbytes and self._captured:
            pcm = self._captured.popleft()
            self._pending += pcm if self._up is None else self._up.process(pcm)
        if len(self._pending) < nbytes:
            return bytes(nbytes)
        out, self._pending = self._pending[:nbytes], self._pending[nbytes:]
        if len(self._pending) > QUEUE_BLOCKS * nbytes:
            self._pending = self._pending[-nbytes:]
        return out

    def give(self, pcm: bytes) -> None:
        """Received audio at the codec's rate, for the speaker."""
        self._playback.append(pcm if self._down is None else self._down.process(pcm))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
