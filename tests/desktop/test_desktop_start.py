"""The window starts with nothing set up (no account, no server, no sound card) and says what
is missing; the emergency banner and the R-EMERG-5 acknowledgement are there from the start."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from softphone.agent.audio import AudioSpec
from softphone.apps.desktop import sound_status
from softphone.desktop.phone import EMERGENCY_UNAVAILABLE, DesktopPhone
from softphone.desktop.store import AccountSettings, DesktopStore, Secrets
from softphone.desktop.window import AccountDialog, MainWindow


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
    assert "must be null, file:in.wav,out.wav or device:NAME" in out.stderr
    assert not (tmp_path / "desktop.db").exists()


def test_paste_shortcuts_and_the_account_dialog_with_a_server_that_is_not_there(
        qloop: asyncio.AbstractEventLoop, qtbot: Any, tmp_path: Path) -> None:
    from lab.netutil import free_udp_tcp
    from PySide6.QtWidgets import QApplication

    store = DesktopStore(tmp_path)
    store.acknowledge_emergency()
    secrets = Secrets(tmp_path, use_keyring=False)
    phone = DesktopPhone(store, store.account(), "", audio=AudioSpec("null"))
    window = MainWindow(phone, secrets, sound="")
    qtbot.addWidget(window)
    window.show()
    # a pasted number is cleaned up at once (Ctrl+V in the number field)
    QApplication.clipboard().setText("+33 (0)1 23-45.67 89")
    window.number.setFocus()
    QTest.keyClick(window.number, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert window.number.text() == "+33123456789"
    # Ctrl+Return dials from anywhere in the window: without an account, refused in words
    window.activateWindow()
    assert QTest.qWaitForWindowActive(window, 2000)  # window shortcuts need it active
    window.search.setFocus()
    QTest.keyClick(window.search, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qloop.run_until_complete(asyncio.sleep(0.2))
    assert window.refusal.text().startswith("Not connected")
    # the account dialog: a bad user is named and nothing is saved
    window.edit_account()
    dlg = window.findChild(AccountDialog)
    assert dlg is not None and dlg.isVisible()
    port = next(p for p in range(15990, 15900, -1) if free_udp_tcp(p))  # nothing listens
    dlg.server.setText(f"127.0.0.1:{port}")
    dlg.user.setText("10 01")
    dlg.password.setText("demo-1001")
    dlg.transport.setCurrentText("tcp")  # a refused connection: told at once
    dlg._check()
    assert "user" in dlg.error.text() and store.get("account") is None
    dlg.user.setText("1001")
    dlg._check()
    assert not dlg.isVisible()
    assert store.account().server == f"127.0.0.1:{port}"
    assert Secrets(tmp_path, use_keyring=False).get("1001") == "demo-1001"

    async def wait_failed() -> None:
        end = time.monotonic() + 15
        while "not registered:" not in window.reg_label.text():
            assert time.monotonic() < end, window.reg_label.text()
            await asyncio.sleep(0.1)

    qloop.run_until_complete(wait_failed())
    text = window.reg_label.text()
    print(text)
    assert "the server cannot be reached" in text, text
    qloop.run_until_complete(phone.stop())
