"""The desktop app's sound devices: what PortAudio offers for input and for output, the choice
remembered by name, and the level a meter shows.

The devices come from :func:`softphone.agent.device.list_devices` and a call's device stream is
the agent's :class:`~softphone.agent.device.DeviceAudio` (its own thread, its own 20 ms pacing);
nothing here opens a stream. Without PortAudio or without devices, :attr:`Devices.note` says
why in words and calls use the ``--audio`` setting (file or null audio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from softphone.agent.device import DeviceError, DeviceInfo, list_devices

NONE_CHOICE = "none: file/null audio"
METER_FLOOR_DB = -60.0  # an empty meter; a full one is 0 dBFS


@dataclass(frozen=True)
class Devices:
    inputs: list[DeviceInfo] = field(default_factory=list)
    outputs: list[DeviceInfo] = field(default_factory=list)
    note: str = ""  # why there are none ("" when there are)

    def find(self, name: str, *, output: bool) -> DeviceInfo | None:
        """The device called ``name`` among the inputs (or outputs); None when gone."""
        for d in self.outputs if output else self.inputs:
            if d.name == name:
                return d
        return None


def scan() -> Devices:
    """The devices PortAudio sees now, split by direction."""
    try:
        devices = list_devices()
    except DeviceError as exc:
        return Devices(note=f"No sound card: {exc}. Calls use the --audio setting "
                            "(file or null audio).")
    inputs = [d for d in devices if d.inputs > 0]
    outputs = [d for d in devices if d.outputs > 0]
    if not inputs or not outputs:
        missing = "output device" if inputs else "input device" if outputs else "device"
        return Devices(inputs, outputs, note=f"No sound card: PortAudio found no {missing}. "
                                             "Calls use the --audio setting (file or "
                                             "null audio).")
    return Devices(inputs, outputs)


def meter_percent(level: float) -> int:
    """A level (RMS, 0..1 of full scale) as 0..100 on a dB scale (-60 dBFS .. 0 dBFS)."""
    if level <= 0.0:
        return 0
    db = 20.0 * math.log10(min(level, 1.0))
    return max(0, min(100, round(100.0 * (db - METER_FLOOR_DB) / -METER_FLOOR_DB)))
