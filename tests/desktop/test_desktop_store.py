"""The desktop app's own pieces without a network: the number field's clean-up, the account
check, the password's file when there is no keyring, the history search, the R-EMERG-5
acknowledgement with its date."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from softphone.desktop.numbers import NumberError, dialable
from softphone.desktop.store import AccountError, AccountSettings, DesktopStore, Secrets


@pytest.mark.parametrize(("typed", "number"), [
    ("+33 (0)1 23-45.67 89", "+33123456789"),
    ("0033 1 23 45 67 89", "+33123456789"),
    ("tel:+33 1 23 45 67 89", "+33123456789"),
    ("  600 ", "600"),
    ("*21#", "*21#"),
    ("sip:alice@example.com", "sip:alice@example.com"),
])
def test_typed_or_pasted_numbers_are_made_dialable(typed: str, number: str) -> None:
    assert dialable(typed) == number


@pytest.mark.parametrize("typed", ["", "call me", "06 12 34 56 7x"])
def test_text_that_is_not_a_number_is_refused(typed: str) -> None:
    with pytest.raises(NumberError):
        dialable(typed)


def test_a_bad_account_names_the_field_and_nothing_is_saved(tmp_path: Path) -> None:
    store = DesktopStore(tmp_path)
    good = AccountSettings(server="127.0.0.1:5060", user="1001")
    store.save_account(good)
    for bad, field in ((AccountSettings(server="", user="1001"), "server"),
                       (AccountSettings(server="h", user="a b"), "user"),
                       (AccountSettings(server="h", user="1", transport="sctp"), "transport")):
        with pytest.raises(AccountError, match=field):
            store.save_account(bad)
    assert store.account() == good
    assert good.registrar() == "sip:127.0.0.1:5060"
    assert AccountSettings(server="h:5061", user="1", transport="tls").registrar() == \
        "sips:h:5061"


def test_without_a_keyring_the_password_is_in_a_file_only_the_user_reads(
        tmp_path: Path) -> None:
    secrets = Secrets(tmp_path, use_keyring=False)
    assert secrets.where == "file" and "0600" in secrets.warning
    (tmp_path / "password").write_text("{}")
    (tmp_path / "password").chmod(0o644)  # an older, wider file is narrowed
    secrets.set("1001", "s3cret")
    mode = stat.S_IMODE((tmp_path / "password").stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert Secrets(tmp_path, use_keyring=False).get("1001") == "s3cret"
    store = DesktopStore(tmp_path)
    store.save_account(AccountSettings(server="h", user="1001"))
    assert b"s3cret" not in (tmp_path / "desktop.db").read_bytes()


def test_history_is_searchable_newest_first(tmp_path: Path) -> None:
    store = DesktopStore(tmp_path)
    store.add_call(started=1.0, direction="outgoing", peer="600", outcome="answered",
                   reason="local hangup", duration_s=3.0, mos=4.4)
    store.add_call(started=2.0, direction="outgoing", peer="1003", outcome="refused",
                   reason="The person you are calling is on another call.", duration_s=0,
                   mos=None)
    assert [c.peer for c in store.calls()] == ["1003", "600"]
    assert [c.peer for c in store.calls("another call")] == ["1003"]
    assert [c.peer for c in store.calls("60")] == ["600"]


def test_the_emergency_acknowledgement_is_kept_with_its_date(tmp_path: Path) -> None:
    store = DesktopStore(tmp_path)
    assert store.emergency_ack() is None
    store.acknowledge_emergency(1_800_000_000)
    store.close()
    assert DesktopStore(tmp_path).emergency_ack() == "2027-01-15T08:00:00Z"


def test_with_a_usable_keyring_the_password_goes_there_and_no_file_is_written(
        tmp_path: Path) -> None:
    keyring = pytest.importorskip("keyring")
    from keyring.backend import KeyringBackend

    class Memory(KeyringBackend):
        """A keyring backend of its own (keyring's plugin interface), in memory."""

        priority = 1  # type: ignore[assignment]

        def __init__(self) -> None:
            super().__init__()
            self.kept: dict[tuple[str, str], str] = {}

        def get_password(self, service: str, username: str) -> str | None:
            return self.kept.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.kept[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            self.kept.pop((service, username), None)

    before = keyring.get_keyring()
    memory = Memory()
    keyring.set_keyring(memory)
    try:
        secrets = Secrets(tmp_path)
        assert secrets.where == "keyring" and secrets.warning == ""
        secrets.set("1001", "s3cret")
        assert memory.kept == {("softphone-desktop", "1001"): "s3cret"}
        assert Secrets(tmp_path).get("1001") == "s3cret"
        assert not (tmp_path / "password").exists()
    finally:
        keyring.set_keyring(before)
