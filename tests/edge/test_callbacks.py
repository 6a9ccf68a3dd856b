"""The PSAP call-back window survives a restart: kept in the data directory by the wall clock,
pruned to the window, a broken file set aside (the edge still starts), a failed write kept in
memory (the emergency call is never held up)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from softphone.edge.app import Edge
from softphone.edge.callbacks import FILENAME, CallbackWindows
from softphone.edge.config import load_edge_config
from softphone.edge.lifecycle import reload

T0 = 1_768_989_600.0


class Wall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def test_the_window_opens_at_each_mark_and_closes_after_its_length(tmp_path: Path) -> None:
    wall = Wall()
    windows = CallbackWindows(tmp_path / FILENAME, 600, wall=wall)
    assert not windows.due("1001")
    windows.mark("1001")  # the emergency call starts
    wall.now += 300
    windows.mark("1001")  # ... and ends five minutes later: the window runs from there
    wall.now += 599
    assert windows.due("1001") and not windows.due("1002")
    wall.now += 2
    assert not windows.due("1001")


def test_a_new_process_reads_what_the_last_one_wrote_within_the_window(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wall = Wall()
    first = CallbackWindows(tmp_path / FILENAME, 600, wall=wall)
    first.mark("1001")
    wall.now += 500
    first.mark("1003")
    assert json.loads((tmp_path / FILENAME).read_text()) == {"1001": T0, "1003": T0 + 500}
    assert not (tmp_path / (FILENAME + ".tmp")).exists()
    wall.now += 200  # 1001's window has closed by now, 1003's has not
    with caplog.at_level(logging.INFO):
        second = CallbackWindows(tmp_path / FILENAME, 600, wall=wall)
    assert "still open for 1003" in caplog.text  # and for nobody else
    assert second.due("1003") and not second.due("1001")
    first.mark("1002")  # what is past the window is not written again
    assert set(json.loads((tmp_path / FILENAME).read_text())) == {"1002", "1003"}


@pytest.mark.parametrize("text", ["{not json", '["1001"]', '{"1001": "yesterday"}'])
def test_a_broken_file_is_set_aside_and_the_edge_starts_without_a_window(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str) -> None:
    (tmp_path / FILENAME).write_text(text)
    with caplog.at_level(logging.ERROR):
        windows = CallbackWindows(tmp_path / FILENAME, 600, wall=Wall())
    assert not windows.due("1001")
    assert (tmp_path / (FILENAME + ".bad")).read_text() == text
    assert FILENAME in caplog.text and "set aside" in caplog.text
    windows.mark("1001")
    assert windows.due("1001") and (tmp_path / FILENAME).exists()


def test_a_write_that_fails_keeps_the_window_in_memory(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    windows = CallbackWindows(tmp_path / FILENAME, 600, wall=Wall())
    (tmp_path / (FILENAME + ".tmp")).mkdir()  # the temporary file cannot be written
    with caplog.at_level(logging.ERROR):
        windows.mark("1001")
    assert windows.due("1001")
    assert "kept in memory only" in caplog.text and not (tmp_path / FILENAME).exists()


def test_without_a_file_it_is_kept_in_memory(tmp_path: Path) -> None:
    windows = CallbackWindows(None, 600, wall=Wall())
    windows.mark("1001")
    assert windows.due("1001") and list(tmp_path.iterdir()) == []


def test_sighup_applies_a_new_window_length() -> None:
    cfg = load_edge_config()
    windows = CallbackWindows(None, cfg.emergency_callback_s)
    edge = Edge(cfg=cfg, transport=None, core=None,  # type: ignore[arg-type]
                b2bua=SimpleNamespace(callbacks=windows),  # type: ignore[arg-type]
                allocator=None)  # type: ignore[arg-type]
    assert reload(edge, lambda: replace(cfg, emergency_callback_s=60))
    assert windows.window_s == 60 and edge.cfg.emergency_callback_s == 60
