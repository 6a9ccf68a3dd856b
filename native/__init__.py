"""The native media hot path (C99 through cffi API mode): G.711, mixer, jitter buffer, resampler.

The extension ``softphone.native._native`` is compiled by the package install from native/src.
"""

from __future__ import annotations

from typing import Any

from softphone.native._native import ffi, lib  # type: ignore[import-not-found]

__all__ = ["ffi", "lib", "abi"]


def abi() -> Any:
    return lib.sp_native_abi()
