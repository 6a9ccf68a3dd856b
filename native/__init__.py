"""The native media hot path (C99 through cffi API mode): G.711, mixer, jitter buffer, resampler.

The extension ``softphone.native._native`` is compiled by the package install from native/src.
When the environment variable ``SOFTPHONE_NATIVE_MODULE`` names a compiled extension file
(for example the ``-fsanitize=address,undefined`` build that tests/native/test_sanitizers.py
makes in a temporary directory), that file is loaded instead, so the same tests and wrappers
run against it unchanged.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["ffi", "lib", "abi", "module_path"]


def _load() -> ModuleType:
    override = os.environ.get("SOFTPHONE_NATIVE_MODULE")
    if not override:
        from softphone.native import _native  # type: ignore[attr-defined]

        return _native  # type: ignore[no-any-return]
    path = Path(override)
    if not path.is_file():
        raise ImportError(f"SOFTPHONE_NATIVE_MODULE={override!r} is not a file")
    # The init symbol is PyInit_<name>, and <name> is the file name up to the first dot.
    name = path.name.split(".", 1)[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a native module from {override!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_module = _load()
ffi: Any = _module.ffi
lib: Any = _module.lib


def abi() -> int:
    """The C side's interface version (sp_native_abi), checked against a stale build."""
    return int(lib.sp_native_abi())


def module_path() -> str:
    """Where the loaded extension lives (tests show it to say which build they ran on)."""
    return str(getattr(_module, "__file__", "?"))
