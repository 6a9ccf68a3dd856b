"""The data directory lock on its own: a second holder is refused with the file and the PID."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from softphone.edge.datalock import LOCK_NAME, DataDirBusy, lock_data_dir


def test_second_lock_is_refused_naming_file_and_pid_and_freed_on_close(tmp_path: Path) -> None:
    data = tmp_path / "new" / "edge"
    held = lock_data_dir(data)  # creates the directory
    assert (data / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    with pytest.raises(DataDirBusy) as exc:
        lock_data_dir(data)
    assert exc.value.pid == str(os.getpid())
    assert str(data / LOCK_NAME) in str(exc.value) and f"PID {os.getpid()}" in str(exc.value)
    assert (data / LOCK_NAME).read_text() == f"{os.getpid()}\n"  # the refusal wrote nothing
    held.close()
    lock_data_dir(data).close()  # a left-over file is no lock


def test_stale_pid_in_the_file_does_not_block(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("999999\n")
    with lock_data_dir(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
