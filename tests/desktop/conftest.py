"""The desktop app's tests: Qt offscreen (no display), qasync's loop inside Qt's, the lab's
real edge and sipp for the calls."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt is loaded: no display needed

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="the desktop extra (PySide6-Essentials) is "
                    "not installed")
qasync = pytest.importorskip("qasync")
pytest.importorskip("pytestqt")

from lab.conftest import Lab, SippFactory  # noqa: E402  (after the offscreen setting)


@pytest.fixture
def qloop(qapp: Any) -> Iterator[asyncio.AbstractEventLoop]:
    """qasync's asyncio loop running inside the test's QApplication."""
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SippFactory]:
    if shutil.which("sipp") is None:
        pytest.skip("sipp not installed (apt-get install sip-tester)")
    factory = SippFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture
def lab() -> Lab:
    return Lab()
