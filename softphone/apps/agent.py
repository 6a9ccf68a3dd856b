"""``softphone agent``: the headless phone driven over MQTT.

``softphone agent --config agent.toml [--audio null | file:in.wav,out.wav | device:NAME]`` registers
every account of the file (refreshed before expiry, retried after a failure), places and
takes calls as the commands on ``softphone/<id>/cmd`` say, and publishes its events, state and
status (docs/MQTT.md). Without ``[mqtt]`` in the file it runs as a phone alone and says that
control is off; its events are then only logged. SIGINT/SIGTERM: calls hung up, bindings
removed, ``offline`` published, exit 0. A bad configuration or ``--audio`` exits 2 before
anything binds, naming the key and line (or the option). ``--audio device:NAME`` on a machine
without a sound card (or without PortAudio) says so and runs with null audio; a NAME that is
not among the devices exits 2 naming those there are. ``softphone agent --list-devices``
prints the devices PortAudio sees, one a line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from softphone.agent.audio import AudioSpec, AudioSpecError
from softphone.agent.config import ConfigError, load
from softphone.agent.device import DeviceError, find_device, list_devices
from softphone.policy.tomlkeys import KeyedError
from softphone.sip.errors import SipError

log = logging.getLogger("softphone.agent")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="the agent's TOML file (accounts, broker); required "
                                    "unless --list-devices")
    p.add_argument("--audio", default="null",
                   help="null (silence out, nothing kept), file:in.wav,out.wav (in.wav "
                        "played into each call, what is heard written to out.wav) or "
                        "device:NAME (a sound device's microphone and speaker)")
    p.add_argument("--list-devices", action="store_true",
                   help="print the sound devices (PortAudio) and exit")
    p.add_argument("--log-level", default="INFO",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"))


async def run(args: argparse.Namespace) -> int:
    from softphone.agent.runtime import Agent

    config = load(args.config)
    audio = AudioSpec.parse(args.audio)
    device, note = None, ""
    if audio.kind == "device":
        try:
            device = find_device(audio.device)
        except DeviceError as exc:
            note = f"{exc}: audio is null"
            print(f"softphone agent: --audio {audio.describe()}: {note}", file=sys.stderr,
                  flush=True)
            audio = AudioSpec("null")
        except LookupError as exc:
            raise AudioSpecError(str(exc.args[0])) from None
    agent = Agent(config, audio, device=device, audio_note=note)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    link_task = None
    if config.mqtt is not None:
        from softphone.agent.mqtt import MqttLink

        agent.link = MqttLink(config.mqtt, config.agent_id, on_command=agent.on_command,
                              on_connected=agent.on_reconnected)
        link_task = asyncio.create_task(agent.link.run(), name="mqtt")
    await agent.start()
    where = " ".join(f"{a.transport}:{a.host}:{a.port}" for a in agent.ua.local.values())
    control = (f"control over MQTT at {config.mqtt.host}:{config.mqtt.port} on "
               f"softphone/{config.agent_id}/cmd" if config.mqtt is not None else
               "control is off (no [mqtt] in the configuration): running as a phone alone")
    sound = f" ({note})" if note else ""
    print(f"softphone agent {config.agent_id} on {where}; audio {audio.describe()}{sound}; "
          f"{control}", flush=True)
    await stop.wait()
    await agent.stop()
    if agent.link is not None and link_task is not None:
        await agent.link.stop()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(5.0):
                await link_task
        link_task.cancel()
    return 0


def print_devices() -> int:
    """``--list-devices``: index, name, host API, input/output channels, default rate; the
    reason when there are none (exit 0 either way: an empty list is an answer)."""
    try:
        devices = list_devices()
    except DeviceError as exc:
        print(f"no sound devices: {exc}")
        return 0
    if not devices:
        print("no sound devices: PortAudio found none (no sound card)")
        return 0
    for d in devices:
        print(f"{d.index:3d}  {d.name}  ({d.host_api}, {d.inputs} in, {d.outputs} out, "
              f"{d.default_rate:.0f} Hz)")
    return 0


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.list_devices:
        return print_devices()
    if args.config is None:
        print("error: --config is required (or --list-devices)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args))
    except (ConfigError, KeyedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AudioSpecError as exc:
        print(f"error: --audio {exc}", file=sys.stderr)
        return 2
    except (SipError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
