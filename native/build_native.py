"""cffi (API mode) build of the native media hot path.

Every ``native/src/*.c`` is compiled into one extension, ``softphone.native._native``.
The declarations cffi sees come from each ``native/src/*.h`` between the markers
``/* CDEF-BEGIN */`` and ``/* CDEF-END */`` (cffi cannot parse preprocessor lines), so a new
C module only adds its own .c/.h pair.

Environment knobs (read at build time):
  SOFTPHONE_NATIVE_CFLAGS   extra compiler flags (the sanitizer job passes -fsanitize=...)
  SOFTPHONE_PORTABLE=1      leave out -march=native (for binaries copied to other CPUs)
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from cffi import FFI

SRC = Path(__file__).resolve().parent / "src"
_CDEF = re.compile(r"/\*\s*CDEF-BEGIN\s*\*/(.*?)/\*\s*CDEF-END\s*\*/", re.S)


def _headers() -> list[Path]:
    return sorted(SRC.glob("*.h"))


def cdefs() -> str:
    parts: list[str] = []
    for header in _headers():
        parts.extend(m.group(1) for m in _CDEF.finditer(header.read_text()))
    return "\n".join(parts)


def compile_flags(extra: list[str] | None = None) -> list[str]:
    flags = ["-std=c99", "-O3", "-fno-strict-aliasing", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    if os.environ.get("SOFTPHONE_PORTABLE") != "1":
        flags.append("-march=native")
    flags += shlex.split(os.environ.get("SOFTPHONE_NATIVE_CFLAGS", ""))
    flags += extra or []
    return flags


def make_builder(module: str = "softphone.native._native", extra_cflags: list[str] | None = None,
                 extra_link: list[str] | None = None, absolute_sources: bool = False) -> FFI:
    """The cffi builder for ``module``. ``absolute_sources`` is for ``ffi.compile(tmpdir=...)``
    (the sanitizer build), which runs the compiler from inside tmpdir."""
    ffi = FFI()
    ffi.cdef(cdefs())
    includes = "\n".join(f'#include "{h.name}"' for h in _headers())
    sources = sorted(SRC.glob("*.c"))
    # Relative paths keep setuptools happy when it builds from the project root.
    rel = [str(s) for s in sources]
    if not absolute_sources:
        try:
            rel = [str(s.relative_to(Path.cwd())) for s in sources]
        except ValueError:
            pass
    ffi.set_source(
        module,
        includes,
        sources=rel,
        include_dirs=[str(SRC)],
        extra_compile_args=compile_flags(extra_cflags),
        extra_link_args=(extra_link or []) + shlex.split(os.environ.get("SOFTPHONE_NATIVE_LDFLAGS", "")),
        libraries=["m"],
    )
    return ffi


ffibuilder = make_builder()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
