"""The window starts with nothing set up (no account, no server, no sound card) and says what
is missing; the emergency banner and the R-EMERG-5 acknowledgement are there from the start."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from softphone.agent.audio import AudioSpec
from softphone.apps.desktop import sound_status
from softphone.desktop.phone import EMERGENCY_UNAVAILABLE, DesktopPhone
from softphone.desktop.store import AccountSettings, DesktopStore, Secrets
from softphone.desktop.window import MainWindow


def test_first_start_without_account_server_or_sound_card_says_what_is_missing(
        qloop: asyncio.AbstractEventLoop, qtbot: Any, tmp_path: Path) -> None:
    store = DesktopStore(tmp_path)
    secrets = Secrets(tmp_path, use_keyring=False)
    phone = DesktopPhone(store, store.account(), "", audio=AudioSpec("null"))
    window = MainWindow(phone, secrets, sound=sound_status())
    qtbot.addWidget(window)
    window.show()
    window.ask_emergency_ack()
    qloop.run_until_complete(phone.start())
    window.refresh()
    missing = window.missing.text()
    assert "no account" in window.reg_label.text()
    assert "sound" in missing.lower() and "0600" in missing and "No server" in missing
    assert EMERGENCY_UNAVAILABLE in window.banner.text().lower()
    # R-EMERG-5: asked once, stored with its date, not asked again
    assert window.ack_dialog is not None and window.ack_dialog.isVisible()
    assert "not yet acknowledged" in window.ack_label.text()
    QTest.mouseClick(window.ack_dialog.ok, Qt.MouseButton.LeftButton)
    date = store.emergency_ack()
    assert date is not None and date in window.ack_label.text()
    window.ask_emergency_ack()
    assert window.ack_dialog is None
    # a call without an account is refused in words, nothing is placed
    window.number.setText("600")
    qloop.run_until_complete(phone.dial("600"))
    assert window.refusal.text().startswith("Not connected")
    qloop.run_until_complete(phone.stop())


def test_with_the_service_and_a_location_the_banner_says_so(tmp_path: Path) -> None:
    store = DesktopStore(tmp_path)
    account = AccountSettings(server="127.0.0.1", user="1001", emergency=True,
                              location="1 Rue de Rivoli, 75001 Paris")
    phone = DesktopPhone(store, account, "", audio=AudioSpec("null"))
    assert phone.emergency_banner() == (
        True, "Emergency calls available. Recorded location: 1 Rue de Rivoli, 75001 Paris")
    without = DesktopPhone(store, AccountSettings(server="h", user="1", emergency=True), "",
                           audio=AudioSpec("null"))
    assert without.emergency_banner()[0] is False


def test_bad_audio_setting_is_a_clear_error_before_any_window(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "softphone", "desktop", "--data-dir",
                          str(tmp_path), "--audio", "speakers"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "must be null or file:in.wav,out.wav" in out.stderr
    assert not (tmp_path / "desktop.db").exists()
