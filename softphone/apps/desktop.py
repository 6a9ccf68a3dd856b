"""``softphone desktop``: the desktop softphone window.

Event loop: **qasync**. The phone is asyncio code (the user agent's sockets, the 20 ms audio
loop, registration timers), and qasync runs asyncio's selector loop inside Qt's event loop:
sockets are watched by ``QSocketNotifier``, timers are Qt timers, so a click and a packet are
handled by the same loop and nothing blocks waiting on the network. Qt's own QtAsyncio was the
other choice; it is still a technical preview and does not implement the socket and datagram
parts of the event loop the user agent needs (``create_datagram_endpoint``, ``sock_*``), so it
cannot run the phone. The only blocking work left on the UI thread is a SQLite insert per
call; the spoken recording notice is made in a worker thread.

``--audio null`` (the default) sends silence and drops what is received; ``--audio
file:in.wav,out.wav`` plays in.wav into the call and writes what is received to out.wav (the
agent's file audio, :mod:`softphone.agent.audio`); ``--audio device:NAME`` chooses the sound
device NAME (input and output, as ``softphone agent`` does; also remembered) for the calls, and
the window's Sound lists choose and remember others. A NAME that is no device exits 2 naming
those there are. Without a server or a sound card the window still opens and says what is
missing (with no sound card, calls use null audio).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
from pathlib import Path

from softphone.agent.audio import AudioSpec, AudioSpecError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=str(Path.home() / ".local" / "share" /
                                                 "softphone-desktop"),
                   help="where the account, the history and (without a keyring) the "
                        "password are kept")
    p.add_argument("--audio", default="null",
                   help="null (silence out, received audio dropped), file:in.wav,out.wav or "
                        "device:NAME (a sound device's microphone and speaker)")
    p.add_argument("--rtp-ports", default="20000-22000", help="RTP port range")
    p.add_argument("--scale", type=float, default=None,
                   help="UI scale factor, e.g. 1.25 (QT_SCALE_FACTOR)")
    p.add_argument("--no-keyring", action="store_true",
                   help="keep the password in a 0600 file even when a keyring exists")


def sound_status(note: str | None = None) -> str:
    """What the app can do with a sound card here, in words ("" when it has devices):
    ``note`` is :attr:`softphone.desktop.sound.Devices.note` when the devices were scanned."""
    if importlib.util.find_spec("sounddevice") is None:
        return ("No sound card support: the sounddevice package (PortAudio) is not installed. "
                "Calls use the --audio setting (null: silence).")
    if note is None:
        from softphone.desktop.sound import scan

        note = scan().note
    return note


def main(args: argparse.Namespace) -> int:
    try:
        audio = AudioSpec.parse(args.audio)
    except AudioSpecError as exc:
        print(f"softphone desktop: --audio {exc}", file=sys.stderr)
        return 2
    chosen, device_note = "", ""  # the device --audio names; why it cannot be used
    if audio.kind == "device":
        from softphone.agent.device import DeviceError, find_device

        try:
            device = find_device(audio.device)
        except DeviceError as exc:  # no sound card: the window says so, calls are silent
            device_note = f"--audio device:{audio.device}: {exc}; calls use null audio."
        except LookupError as exc:
            print(f"softphone desktop: --audio {exc}", file=sys.stderr)
            return 2
        else:
            chosen = device.name
        audio = AudioSpec("null")  # the device goes to the window's choice below
    first_s, _, last_s = args.rtp_ports.partition("-")
    if not (first_s.isdigit() and last_s.isdigit()):
        print(f"softphone desktop: --rtp-ports must look like 20000-22000, got "
              f"{args.rtp_ports!r}", file=sys.stderr)
        return 2
    if args.scale:
        os.environ["QT_SCALE_FACTOR"] = str(args.scale)
    try:
        import qasync
        from PySide6.QtWidgets import QApplication
    except ImportError as exc:
        print(f"softphone desktop needs the desktop extra (pip install 'softphone[desktop]'): "
              f"{exc}", file=sys.stderr)
        return 2
    from softphone.desktop.phone import DesktopPhone
    from softphone.desktop.sound import scan
    from softphone.desktop.store import DesktopStore, Secrets
    from softphone.desktop.window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    store = DesktopStore(Path(args.data_dir))
    secrets = Secrets(Path(args.data_dir), use_keyring=not args.no_keyring)
    account = store.account()
    phone = DesktopPhone(store, account, secrets.get(account.user) if account.user else "",
                         audio=audio, rtp_ports=(int(first_s), int(last_s)))
    devices = scan()
    if chosen:
        store.save_sound_devices(chosen, chosen)  # the next call uses it, as the lists say
    window = MainWindow(phone, secrets, sound=device_note or sound_status(devices.note),
                        devices=devices)
    window.resize(window.sizeHint())
    window.show()
    window.ask_emergency_ack()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    app.lastWindowClosed.connect(closed.set)  # type: ignore[attr-defined]

    async def run() -> None:
        await phone.start()
        window.refresh()
        await closed.wait()
        await phone.stop()

    with loop:
        loop.run_until_complete(run())
    store.close()
    return 0
