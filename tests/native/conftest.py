"""Helpers for the native tests: the pure-Python references live beside the tests.

pytest runs with --import-mode=importlib, which does not put this folder on sys.path;
the references (g711_reference, mix_reference, resample_reference) are plain modules here,
so the folder is added once. SOFTPHONE_HYPOTHESIS_EXAMPLES scales the example counts down
for the sanitizer run (tests/native/test_sanitizers.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
