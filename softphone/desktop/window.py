"""The desktop window (Qt widgets): account, registration, dial pad, the call, the guard's
state, history. The phone itself is :class:`~softphone.desktop.phone.DesktopPhone` on the
asyncio loop that qasync runs inside Qt's own (see :mod:`softphone.apps.desktop`); the window
only starts coroutines (``asyncio.ensure_future``) and redraws when the phone says something
changed, so no click waits on the network.

Sizes come from layouts and the font, never from pixels, so that the window stays readable at
125 % (``QT_SCALE_FACTOR=1.25`` or the desktop's own scaling). Shortcuts: Ctrl+Return call /
answer, Escape hang up / reject, Ctrl+M mute, Ctrl+H hold, Ctrl+T transfer (blind, to the number
in the field), Ctrl+F search the history, Ctrl+L the number field, Ctrl+, account; during a
call the dial pad sends DTMF.

Sound: an input and an output device (from PortAudio, :mod:`softphone.desktop.sound`), applied
to the next call and remembered in the settings; "none" (or no sound card, said with the
reason) means the ``--audio`` setting. Two level meters show the RMS of what the call's device
thread last moved each way; a 50 ms timer (20 times a second) only reads two numbers and sets
the bars.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from softphone.desktop.numbers import NumberError, dialable
from softphone.desktop.phone import CurrentCall, DesktopPhone
from softphone.desktop.sound import NONE_CHOICE, Devices, meter_percent, scan
from softphone.desktop.store import TRANSPORTS, AccountError, AccountSettings, Secrets
from softphone.phone import CallState

EMERGENCY_RISK = (
    "Emergency calls over the internet may not get through when the voice over IP service is "
    "interrupted (a network, power or provider outage), and they may reach the wrong "
    "emergency centre or send help to the wrong place, because the provider does not know "
    "where you really are. Keep a mobile phone or a landline at hand to call emergency "
    "services. Do not use this line as your only way to be reached.")

PAD = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#")


class AccountDialog(QDialog):
    """Server, user, password, transport; the line's emergency service and location."""

    def __init__(self, parent: QWidget | None, account: AccountSettings, password: str,
                 secrets_warning: str) -> None:
        super().__init__(parent)
        self.setWindowTitle("Account")
        form = QFormLayout(self)
        self.server = QLineEdit(account.server)
        self.server.setPlaceholderText("sip.example.com:5060")
        self.user = QLineEdit(account.user)
        self.password = QLineEdit(password)
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.transport = QComboBox()
        self.transport.addItems(list(TRANSPORTS))
        self.transport.setCurrentText(account.transport)
        self.display = QLineEdit(account.display_name)
        self.emergency = QCheckBox("This line has the emergency calling service")
        self.emergency.setChecked(account.emergency)
        self.location = QLineEdit(account.location)
        self.location.setPlaceholderText("the address recorded with the provider")
        self.country = QLineEdit(account.country)
        for label, w in (("Server", self.server), ("User", self.user),
                         ("Password", self.password), ("Transport", self.transport),
                         ("Display name", self.display), ("", self.emergency),
                         ("Recorded location", self.location), ("Country", self.country)):
            form.addRow(label, w)
        if secrets_warning:
            warn = QLabel(secrets_warning)
            warn.setObjectName("secretsWarning")
            warn.setWordWrap(True)
            form.addRow(warn)
        self.error = QLabel("")
        self.error.setObjectName("accountError")
        self.error.setStyleSheet("color: #b00020")
        form.addRow(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._check)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.result_account: AccountSettings | None = None

    def values(self) -> AccountSettings:
        return AccountSettings(server=self.server.text().strip(), user=self.user.text().strip(),
                               transport=self.transport.currentText(),
                               display_name=self.display.text().strip(),
                               emergency=self.emergency.isChecked(),
                               location=self.location.text().strip(),
                               country=self.country.text().strip().upper())

    def _check(self) -> None:
        try:
            self.result_account = self.values().check()
        except AccountError as exc:
            self.error.setText(str(exc))
            return
        self.accept()


class RingingDialog(QDialog):
    """The ringing window of an incoming call: who calls, Answer, Reject."""

    def __init__(self, parent: QWidget, peer: str) -> None:
        super().__init__(parent)
        self.setWindowTitle("Incoming call")
        self.setObjectName("ringingWindow")
        lay = QVBoxLayout(self)
        who = QLabel(f"Incoming call from\n{peer}")
        who.setObjectName("ringingPeer")
        who.setAlignment(Qt.AlignmentFlag.AlignCenter)
        font = who.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        who.setFont(font)
        lay.addWidget(who)
        row = QHBoxLayout()
        self.answer_button = QPushButton("Answer (Ctrl+Return)")
        self.answer_button.setObjectName("answerButton")
        self.reject_button = QPushButton("Reject (Esc)")
        self.reject_button.setObjectName("rejectButton")
        row.addWidget(self.answer_button)
        row.addWidget(self.reject_button)
        lay.addLayout(row)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.answer_button.click)


class EmergencyAckDialog(QDialog):
    """R-EMERG-5: the risk of emergency calls over IP, acknowledged once and stored."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setWindowTitle("Emergency calls: please read")
        self.setObjectName("emergencyAck")
        lay = QVBoxLayout(self)
        text = QLabel(EMERGENCY_RISK)
        text.setWordWrap(True)
        lay.addWidget(text)
        self.ok = QPushButton("I have read and understood")
        self.ok.setObjectName("ackButton")
        self.ok.clicked.connect(self.accept)
        lay.addWidget(self.ok)


class MainWindow(QMainWindow):
    def __init__(self, phone: DesktopPhone, secrets: Secrets, *, sound: str,
                 devices: Devices | None = None) -> None:
        """``sound``: what is missing about sound, in words; ``devices``: what PortAudio
        offers (scanned now when not given)."""
        super().__init__()
        self.phone = phone
        self.secrets = secrets
        self.sound = sound
        self.devices = scan() if devices is None else devices
        self.ringing: RingingDialog | None = None
        self.ack_dialog: EmergencyAckDialog | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self.setWindowTitle("softphone")
        phone.on_change = self._changed
        phone.on_incoming = self._incoming

        central = QWidget()
        root = QVBoxLayout(central)
        self.setCentralWidget(central)

        top = QHBoxLayout()
        self.reg_label = QLabel()
        self.reg_label.setObjectName("registrationState")
        self.reg_label.setWordWrap(True)
        top.addWidget(self.reg_label, 1)
        self.account_button = QPushButton("Account…")
        self.account_button.setObjectName("accountButton")
        self.account_button.clicked.connect(self.edit_account)
        top.addWidget(self.account_button)
        root.addLayout(top)

        self.banner = QLabel()
        self.banner.setObjectName("emergencyBanner")
        self.banner.setWordWrap(True)
        self.banner.setMargin(6)
        root.addWidget(self.banner)
        self.ack_label = QLabel()
        self.ack_label.setObjectName("emergencyAckState")
        self.ack_label.setWordWrap(True)
        root.addWidget(self.ack_label)
        self.missing = QLabel()
        self.missing.setObjectName("missingNotice")
        self.missing.setWordWrap(True)
        root.addWidget(self.missing)

        dial = QGroupBox("Call")
        dl = QVBoxLayout(dial)
        self.number = QLineEdit()
        self.number.setObjectName("numberField")
        self.number.setPlaceholderText("number or sip:name@host (paste works)")
        self.number.textChanged.connect(self._number_changed)
        self.number.returnPressed.connect(self.call_or_answer)
        self._last_number = ""
        dl.addWidget(self.number)
        pad = QGridLayout()
        self.pad_buttons: dict[str, QPushButton] = {}
        for i, key in enumerate(PAD):
            b = QPushButton(key)
            b.setObjectName(f"pad_{key}")
            b.clicked.connect(lambda _=False, k=key: self.pad(k))
            pad.addWidget(b, i // 3, i % 3)
            self.pad_buttons[key] = b
        dl.addLayout(pad)
        row = QHBoxLayout()
        self.call_button = QPushButton("Call")
        self.call_button.setObjectName("callButton")
        self.call_button.clicked.connect(self.call_or_answer)
        self.hangup_button = QPushButton("Hang up")
        self.hangup_button.setObjectName("hangupButton")
        self.hangup_button.clicked.connect(self.hangup_or_reject)
        self.mute_button = QPushButton("Mute")
        self.mute_button.setObjectName("muteButton")
        self.mute_button.setCheckable(True)
        self.mute_button.toggled.connect(self.phone.set_mute)
        self.hold_button = QPushButton("Hold")
        self.hold_button.setObjectName("holdButton")
        self.hold_button.setCheckable(True)
        self.hold_button.clicked.connect(self._hold_clicked)
        self.transfer_button = QPushButton("Transfer")
        self.transfer_button.setObjectName("transferButton")
        self.transfer_button.setToolTip("Blind transfer of the call to the number in the field "
                                        "(Ctrl+T)")
        self.transfer_button.clicked.connect(self.transfer)
        for b in (self.call_button, self.hangup_button, self.mute_button, self.hold_button,
                  self.transfer_button):
            row.addWidget(b)
        dl.addLayout(row)
        state_row = QHBoxLayout()
        self.call_state = QLabel("idle")
        self.call_state.setObjectName("callState")
        state_row.addWidget(self.call_state, 1)
        self.rec = QLabel("REC")
        self.rec.setObjectName("recIndicator")
        self.rec.setStyleSheet("color: white; background: #c62828; font-weight: bold; "
                               "padding: 2px 6px")
        state_row.addWidget(self.rec)
        self.mos = QLabel("")
        self.mos.setObjectName("mosIndicator")
        state_row.addWidget(self.mos)
        dl.addLayout(state_row)
        self.refusal = QLabel("")
        self.refusal.setObjectName("refusalLabel")
        self.refusal.setWordWrap(True)
        self.refusal.setStyleSheet("color: #b00020; font-weight: bold")
        dl.addWidget(self.refusal)
        self.rec_notice = QLabel("")
        self.rec_notice.setObjectName("recordingNotice")
        self.rec_notice.setWordWrap(True)
        dl.addWidget(self.rec_notice)
        root.addWidget(dial)
        root.addWidget(self._sound_box())

        hist = QGroupBox("History (double-click or Return to call back)")
        hl = QVBoxLayout(hist)
        self.search = QLineEdit()
        self.search.setObjectName("historySearch")
        self.search.setPlaceholderText("search the history")
        self.search.textChanged.connect(lambda _t: self.load_history())
        hl.addWidget(self.search)
        self.history = QTableWidget(0, 5)
        self.history.setObjectName("historyTable")
        self.history.setHorizontalHeaderLabels(["When", "", "Number", "Outcome", "Why / MOS"])
        self.history.horizontalHeader().setStretchLastSection(True)
        self.history.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.history.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        # double-click or Return on a row (Qt's "activated"): call back
        self.history.activated.connect(lambda index: self.call_back(index.row(), 2))
        hl.addWidget(self.history)
        root.addWidget(hist, 1)

        for keys, slot in (("Ctrl+Return", self.call_or_answer),
                           ("Escape", self.hangup_or_reject),
                           ("Ctrl+M", self.mute_button.toggle),
                           ("Ctrl+H", self.hold_button.click),
                           ("Ctrl+T", self.transfer),
                           ("Ctrl+F", self.search.setFocus),
                           ("Ctrl+L", self.number.setFocus),
                           ("Ctrl+,", self.edit_account)):
            QShortcut(QKeySequence(keys), self, slot)
        self.refresh()
        self.load_history()

    # -- sound devices and level meters ---------------------------------------------------------

    def _sound_box(self) -> QGroupBox:
        box = QGroupBox("Sound (applies to the next call)")
        form = QFormLayout(box)
        self.input_choice = QComboBox()
        self.input_choice.setObjectName("inputDevice")
        self.output_choice = QComboBox()
        self.output_choice.setObjectName("outputDevice")
        self.input_meter = QProgressBar()
        self.input_meter.setObjectName("inputLevel")
        self.output_meter = QProgressBar()
        self.output_meter.setObjectName("outputLevel")
        for meter in (self.input_meter, self.output_meter):
            meter.setRange(0, 100)
            meter.setValue(0)
            meter.setTextVisible(False)
        self.sound_note = QLabel(self.devices.note)
        self.sound_note.setObjectName("soundNote")
        self.sound_note.setWordWrap(True)
        form.addRow("Input", self.input_choice)
        form.addRow("Input level", self.input_meter)
        form.addRow("Output", self.output_choice)
        form.addRow("Output level", self.output_meter)
        form.addRow(self.sound_note)
        saved_in, saved_out = self.phone.store.sound_devices()
        for combo, devices, saved in ((self.input_choice, self.devices.inputs, saved_in),
                                      (self.output_choice, self.devices.outputs, saved_out)):
            combo.addItem(NONE_CHOICE, "")
            for d in devices:
                combo.addItem(f"{d.name} ({d.host_api})", d.name)
            combo.setEnabled(bool(devices))
            at = combo.findData(saved) if saved else 0
            if saved and at < 0:  # remembered, but not here now: said, not forgotten
                self.sound_note.setText(" ".join(filter(None, (
                    self.devices.note, f"The sound device {saved!r} chosen before is not "
                    "present: calls use the --audio setting until it is back or another is "
                    "chosen."))))
            combo.setCurrentIndex(max(at, 0))
        self._apply_devices(save=False)
        self.input_choice.currentIndexChanged.connect(lambda _i: self._apply_devices())
        self.output_choice.currentIndexChanged.connect(lambda _i: self._apply_devices())
        self.meter_timer = QTimer(self)
        self.meter_timer.setInterval(50)  # at most 20 updates a second
        self.meter_timer.timeout.connect(self._update_meters)
        self.meter_timer.start()
        return box

    def choose_devices(self, input_name: str, output_name: str) -> None:
        """Select devices by name ("" for none), as a person would in the two lists."""
        for combo, name in ((self.input_choice, input_name), (self.output_choice, output_name)):
            at = combo.findData(name)
            if at < 0:
                raise LookupError(f"no sound device {name!r} in the list")
            combo.setCurrentIndex(at)

    def _apply_devices(self, *, save: bool = True) -> None:
        in_name = str(self.input_choice.currentData() or "")
        out_name = str(self.output_choice.currentData() or "")
        self.phone.input_device = self.devices.find(in_name, output=False) if in_name else None
        self.phone.output_device = self.devices.find(out_name, output=True) if out_name \
            else None
        if save:
            self.phone.store.save_sound_devices(in_name, out_name)
            if bool(in_name) != bool(out_name):
                self.sound_note.setText("Choose both an input and an output device: until "
                                        "then calls use the --audio setting.")
            else:
                self.sound_note.setText(self.devices.note)

    def _update_meters(self) -> None:
        level_in, level_out = self.phone.levels()
        self.input_meter.setValue(meter_percent(level_in))
        self.output_meter.setValue(meter_percent(level_out))

    # -- async glue ------------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        fut = asyncio.ensure_future(coro)
        self._tasks.add(fut)
        fut.add_done_callback(self._tasks.discard)
        return fut

    def _changed(self, what: str) -> None:
        if what in ("history", "refused"):
            self.load_history()
            if self.ringing is not None and self.phone.current is None:
                self.ringing.close()
                self.ringing = None
        self.refresh()

    # -- R-EMERG-5 -------------------------------------------------------------------------------

    def ask_emergency_ack(self) -> None:
        """Shown once: until acknowledged, at every start."""
        if self.phone.store.emergency_ack() is not None:
            return
        dlg = EmergencyAckDialog(self)
        dlg.accepted.connect(self._acknowledged)
        self.ack_dialog = dlg
        dlg.open()

    def _acknowledged(self) -> None:
        self.phone.store.acknowledge_emergency()
        self.ack_dialog = None
        self.refresh()

    # -- drawing ---------------------------------------------------------------------------------

    def refresh(self) -> None:
        p = self.phone
        text = f"Registration: {p.reg_text}"
        if p.reg_warnings:
            text += "\nThe server says: " + " ".join(p.reg_warnings)
        self.reg_label.setText(text)
        available, banner = p.emergency_banner()
        self.banner.setText(banner)
        self.banner.setStyleSheet("background: #e8f5e9; color: #1b5e20" if available
                                  else "background: #fff3e0; color: #8a3b00; font-weight: bold")
        ack = p.store.emergency_ack()
        self.ack_label.setText(f"Emergency call risks acknowledged on {ack}." if ack else
                               "Emergency call risks not yet acknowledged.")
        missing = [self.sound]
        if self.secrets.warning:
            missing.append(self.secrets.warning)
        if p.ua is None:
            missing.append("No server connection: " + p.reg_text)
        self.missing.setText("\n".join(m for m in missing if m))
        cur = p.current
        if cur is None:
            self.call_state.setText("idle")
            self.call_button.setText("Call")
            self.rec.setVisible(False)
            self.rec_notice.setText("")
            self.mos.setText("")
            self.hold_button.setChecked(False)
        else:
            self.call_state.setText(self._describe(cur))
            self.call_button.setText("Answer" if self._unanswered(cur) else "Call")
            self.rec.setVisible(cur.recording)
            self.rec_notice.setText(cur.recording_note or (
                "Calls on this line are recorded after this notice to the other party: "
                f"“{p.recording_notice()}”" if p.audio.record is not None else ""))
            self.mos.setText(f"MOS {cur.mos:.1f}" if cur.mos is not None else "")
            self.hold_button.setChecked(cur.held)
        self.refusal.setText(p.refusal)

    @staticmethod
    def _unanswered(cur: CurrentCall) -> bool:
        return cur.call.direction == "incoming" and cur.call.state in (CallState.CALLING,
                                                                       CallState.RINGING)

    def _describe(self, cur: CurrentCall) -> str:
        state = cur.call.state
        if self._unanswered(cur):
            return f"ringing: {cur.display or cur.peer}"
        if state is CallState.ESTABLISHED:
            extra = " (on hold)" if cur.held else ""
            extra += " (muted)" if self.phone.muted else ""
            extra += f" ({cur.transfer_note})" if cur.transfer_note else ""
            neg = cur.call.negotiated
            codec = f" [{neg.codec.name}]" if neg is not None else ""
            return f"in call with {cur.peer}{codec}{extra}"
        if state is CallState.RINGING:
            return f"ringing at {cur.peer}…"
        return f"calling {cur.peer}…"

    def load_history(self) -> None:
        rows = self.phone.store.calls(self.search.text().strip())
        self.history.setRowCount(len(rows))
        for i, r in enumerate(rows):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started))
            arrow = "→" if r.direction == "outgoing" else "←"
            why = r.reason if r.outcome != "answered" else (
                f"{r.duration_s:.0f} s" + (f", MOS {r.mos:.1f}" if r.mos is not None else ""))
            for j, value in enumerate((when, arrow, r.peer, r.outcome, why)):
                item = QTableWidgetItem(value)
                if j == 2:
                    item.setData(Qt.ItemDataRole.UserRole, r.peer)
                self.history.setItem(i, j, item)
        self.history.resizeColumnsToContents()

    # -- actions ---------------------------------------------------------------------------------

    def _number_changed(self, text: str) -> None:
        """A paste (more than one character at once) is cleaned up at once."""
        before, self._last_number = self._last_number, text
        if len(text) - len(before) > 1:
            try:
                cleaned = dialable(text)
            except NumberError:
                return
            if cleaned != text:
                self._last_number = cleaned
                self.number.setText(cleaned)

    def pad(self, key: str) -> None:
        cur = self.phone.current
        if cur is not None and cur.call.state is CallState.ESTABLISHED:
            self.phone.dtmf(key)
            return
        self.number.insert(key)

    def call_or_answer(self) -> None:
        cur = self.phone.current
        if cur is not None and self._unanswered(cur):
            self.answer()
            return
        text = self.number.text()
        try:
            self.number.setText(dialable(text))
        except NumberError:
            pass  # the phone says why
        self.run(self.phone.dial(self.number.text()))

    def answer(self) -> None:
        self.phone.answer()
        if self.ringing is not None:
            self.ringing.close()
            self.ringing = None

    def hangup_or_reject(self) -> None:
        cur = self.phone.current
        if cur is not None and self._unanswered(cur):
            self.phone.reject()
        else:
            self.phone.hangup()
        if self.ringing is not None:
            self.ringing.close()
            self.ringing = None

    def transfer(self) -> None:
        self.run(self.phone.transfer(self.number.text()))

    def _hold_clicked(self, checked: bool) -> None:
        self.run(self.phone.set_hold(checked))

    def call_back(self, row: int, _col: int) -> None:
        item = self.history.item(row, 2)
        if item is None:
            return
        self.number.setText(str(item.data(Qt.ItemDataRole.UserRole)))
        self.call_or_answer()

    def _incoming(self, cur: CurrentCall) -> None:
        dlg = RingingDialog(self, cur.display or cur.peer)
        dlg.answer_button.clicked.connect(self.answer)
        dlg.reject_button.clicked.connect(self.hangup_or_reject)
        dlg.rejected.connect(self._ringing_dismissed)
        self.ringing = dlg
        dlg.show()
        dlg.raise_()
        QApplication.beep()

    def _ringing_dismissed(self) -> None:
        if self.ringing is not None:  # Escape on the ringing window: reject
            self.ringing = None
            cur = self.phone.current
            if cur is not None and self._unanswered(cur):
                self.phone.reject()

    def edit_account(self) -> None:
        a = self.phone.account
        dlg = AccountDialog(self, a, self.secrets.get(a.user) if a.user else "",
                            self.secrets.warning)
        dlg.accepted.connect(lambda: self._account_saved(dlg))
        dlg.open()

    def _account_saved(self, dlg: AccountDialog) -> None:
        account = dlg.result_account
        if account is None:
            return
        try:
            self.phone.store.save_account(account)
            self.secrets.set(account.user, dlg.password.text())
        except (AccountError, OSError) as exc:  # no modal box: it would re-enter the loop
            self.phone.refusal = f"Account not saved: {exc}"
            self.refresh()
            return
        self.run(self._restart(account, dlg.password.text()))

    async def _restart(self, account: AccountSettings, password: str) -> None:
        await self.phone.stop()
        self.phone.account = account
        self.phone.password = password
        self.phone.reg_text = "starting…"
        self.phone.reg_warnings = []
        await self.phone.start()
        self.refresh()
